"""Attachment files: every upload is recorded (key, uploader, entity, field, size, type),
checked against its field's limits, and can be attached to one record only, by the person
who uploaded it, in the field it was uploaded for. A file no record holds any more is
removed after a grace period (``remove_orphans``).

The record service calls ``check_attachments`` and ``claim_uploads`` on every write, so
the rules hold on every path (API, bulk, forms, import, plugins). The stored value of an
attachment field is always the upload's own ``{key, name, size, content_type}``: what a
client sends beyond the key is ignored, so a name or size cannot be forged.
"""

from __future__ import annotations

import datetime as dt
import json
import mimetypes
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, BigId, reading, utcnow, write_transaction
from loom.errors import Conflict, InvalidValue, ValidationError, error_entry
from loom.metadata.model import AppModel, Entity, Field
from loom.principal import Principal

#: how long an upload may stay unattached (a form being filled in, an API client between
#: its upload and its write) before ``remove_orphans`` takes it away
GRACE = dt.timedelta(hours=24)
KEY = re.compile(r"^[A-Za-z0-9_-]{20,40}$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
NO_SUCH_UPLOAD = "there is no upload of yours with this key for this field; upload the file first"
HELD_ELSEWHERE = "this file is attached to another record; upload it again to attach it here"


class Upload(Base):
    """One uploaded file: who uploaded it for which field, and the record that holds it
    (``record_id``, the parent's id for a table row's field) once it is attached."""

    __tablename__ = "loom_uploads"
    __table_args__ = (sa.Index("ix_loom_uploads_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id", ondelete="SET NULL"))
    entity: Mapped[str] = mapped_column(sa.String(100))
    field: Mapped[str] = mapped_column(sa.String(100))
    name: Mapped[str] = mapped_column(sa.String(255))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    record_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


uploads: sa.Table = Upload.__table__  # type: ignore[assignment]


def display_name(filename: str) -> str:
    """The last part of an uploaded name, without control or line-breaking characters:
    safe to show and to offer as a download name (no header injection)."""
    name = _UNPRINTABLE.sub("", PurePath(str(filename).replace("\\", "/")).name).strip()
    return name[:200] or "file"


def accepts(f: Field, name: str, content_type: str) -> bool:
    """Whether the field's ``accept`` list (extensions like ``.pdf``, types like
    ``image/png`` or ``image/*``) admits the file; no list admits anything."""
    if not f.accept:
        return True
    suffix = PurePath(name).suffix.lower()
    guessed = mimetypes.guess_type(name)[0] or ""
    for rule in (a.strip().lower() for a in f.accept):
        if rule.startswith(".") and suffix == rule:
            return True
        if rule.endswith("/*") and guessed.startswith(rule[:-1]) and content_type.startswith(rule[:-1]):
            return True
        if "/" in rule and not rule.endswith("/*") and guessed == rule:
            return True
    return False


def limit_problem(f: Field, name: str, size: int, content_type: str) -> InvalidValue | None:
    """Why the field refuses this file (its type or its size), or None: the one check,
    made when a file is uploaded and again when it is attached."""
    if not accepts(f, name, content_type):
        return InvalidValue("file_type", f"file type not accepted; use {', '.join(f.accept)}", types=list(f.accept))
    if f.max_size and size > f.max_size:
        kb = max(1, f.max_size // 1024)
        return InvalidValue("file_too_large", f"the file is larger than {kb} KB", kb=kb)
    return None


@dataclass(frozen=True)
class FileStore:
    """Uploaded files in a folder (``<instance>/attachments``), under random keys."""

    engine: sa.Engine
    folder: Path

    def path(self, key: str) -> Path | None:
        """Where the file of ``key`` is kept; None for something that is not a key."""
        if not isinstance(key, str) or not KEY.match(key):
            return None
        return self.folder / key[:2] / key

    def save(self, principal: Principal, entity: Entity, f: Field, filename: str, content_type: str,
             stream: IO[bytes], path: str | None = None) -> dict[str, Any]:
        """Keep an uploaded file for field ``f`` of ``entity``, uploaded by ``principal``;
        refuses (422, naming ``path``) a file the field's type or size limit refuses.
        Returns the value to put in the field."""
        name = display_name(filename)
        content_type = _clean_type(content_type)
        data = stream.read(f.max_size + 1 if f.max_size else -1)
        problem = limit_problem(f, name, len(data), content_type)
        if problem:
            raise ValidationError(problem.message, code=problem.code, params=problem.params,
                                  errors=[problem.entry(path or f.name)])
        key = secrets.token_urlsafe(24)
        target = self.path(key)
        assert target is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        value = {"key": key, "name": name, "size": len(data), "content_type": content_type}
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(uploads.insert().values(**value, user_id=principal.user_id, entity=entity.name,
                                                     field=f.name, created_at=utcnow()))
        except Exception:
            target.unlink(missing_ok=True)
            raise
        return value

    def discard(self, keys: Iterable[str]) -> None:
        """Remove uploads no record took (a form whose save failed): rows and files."""
        keys = [k for k in keys if self.path(k) is not None]
        if not keys:
            return
        with write_transaction(self.engine) as conn:
            gone = list(conn.execute(sa.delete(uploads).where(uploads.c.key.in_(keys), uploads.c.record_id.is_(None))
                                     .returning(uploads.c.key)).scalars())
        for key in gone:
            self._unlink(key)

    def held_by(self, key: str, entity: str, field: str, record_id: int) -> bool:
        """Whether the upload ``key`` was attached to ``record_id`` through ``entity.field``
        (an old file kept before uploads were recorded counts as held by the record holding it)."""
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(uploads.c.entity, uploads.c.field, uploads.c.record_id)
                               .where(uploads.c.key == key)).first()
        return row is None or (row.entity == entity and row.field == field and row.record_id == record_id)

    def remove_orphans(self, model: AppModel, tables: Mapping[str, sa.Table], *, grace: dt.timedelta = GRACE,
                       now: dt.datetime | None = None) -> int:
        """Remove every upload older than ``grace`` that no record holds: never attached,
        or its record deleted or its field cleared or replaced. Files of a field the live
        metadata no longer has (set aside, restorable by rollback) are kept. Returns how
        many were removed."""
        cutoff = (now or utcnow()) - grace
        with reading(self.engine) as conn:
            candidates = conn.execute(sa.select(uploads.c.key, uploads.c.entity, uploads.c.field, uploads.c.record_id)
                                      .where(uploads.c.created_at < cutoff)).all()
            orphans = [row.key for row in candidates if not _still_held(conn, model, tables, row)]
        removed = 0
        for start in range(0, len(orphans), 500):
            batch = orphans[start:start + 500]
            with write_transaction(self.engine) as conn:
                gone = list(conn.execute(sa.delete(uploads).where(uploads.c.key.in_(batch), uploads.c.created_at < cutoff)
                                         .returning(uploads.c.key)).scalars())
            for key in gone:
                self._unlink(key)
            removed += len(gone)
        return removed

    def _unlink(self, key: str) -> None:
        target = self.path(key)
        if target is not None:
            target.unlink(missing_ok=True)


def _clean_type(content_type: str | None) -> str:
    text = _UNPRINTABLE.sub("", content_type or "").strip()
    return text[:100] or "application/octet-stream"


def _key_of(value: Any) -> str | None:
    if isinstance(value, str):  # a JSON column read back as text
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value.get("key") if isinstance(value, dict) else None


def _still_held(conn: sa.Connection, model: AppModel, tables: Mapping[str, sa.Table], row: Any) -> bool:
    """Whether the record the upload was attached to still has it in that field; an upload
    whose entity or field the live metadata lacks counts as held (its data is set aside)."""
    if row.record_id is None:
        return False
    entity = model.entities.get(row.entity)
    f = entity.all_fields.get(row.field) if entity is not None else None
    table = tables.get(row.entity)
    if f is None or f.type != "attachment" or table is None or row.field not in table.c:
        return True
    key_column = "parent_id" if entity.child else "id"
    values = conn.execute(sa.select(table.c[row.field]).where(table.c[key_column] == row.record_id)).scalars()
    return any(_key_of(value) == row.key for value in values)


# -- the record service's checks ------------------------------------------------------------------

@dataclass
class _Value:
    path: str
    entity: Entity
    field: Field
    holder: dict[str, Any]
    key: str | None


def _attachment_values(entity: Entity, model: AppModel, values: dict[str, Any], children: Mapping[str, list],
                       prefix: str) -> list[_Value]:
    found = [_Value(prefix + f.name, entity, f, values, _key_of(values[f.name]))
             for f in entity.fields if f.type == "attachment" and values.get(f.name) is not None]
    for table_field in entity.table_fields:
        child = model.entity(table_field.target)
        for i, row in enumerate(children.get(table_field.name, ())):
            found += [_Value(f"{prefix}{table_field.name}[{i}].{f.name}", child, f, row, _key_of(row[f.name]))
                      for f in child.fields if f.type == "attachment" and row.get(f.name) is not None]
    return found


def _has_attachments(entity: Entity, model: AppModel) -> bool:
    """Whether ``entity`` or one of its child entities has an attachment field: when none
    has, a write (of one record or of a thousand) has no value to check."""
    entities = [entity, *(model.entity(f.target) for f in entity.table_fields)]
    return any(f.type == "attachment" for e in entities for f in e.fields)


def _held(conn: sa.Connection, entity: Entity, model: AppModel, tables: Mapping[str, sa.Table],
          record: Mapping[str, Any] | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """What the stored record holds now: ``(entity, field, key) -> value``."""
    if record is None:
        return {}
    held = {}
    for f in entity.fields:
        if f.type == "attachment" and _key_of(record.get(f.name)):
            value = record[f.name]
            held[(entity.name, f.name, _key_of(value))] = json.loads(value) if isinstance(value, str) else value
    for table_field in entity.table_fields:
        child = model.entity(table_field.target)
        names = [f.name for f in child.fields if f.type == "attachment"]
        if not names:
            continue
        table = tables[child.name]
        for row in conn.execute(sa.select(*(table.c[n] for n in names)).where(table.c.parent_id == record["id"])):
            for name, value in zip(names, row, strict=True):
                if _key_of(value):
                    held[(child.name, name, _key_of(value))] = json.loads(value) if isinstance(value, str) else value
    return held


def check_attachments(conn: sa.Connection, principal: Principal, entity: Entity, model: AppModel,
                      tables: Mapping[str, sa.Table], loaded: Sequence[tuple[dict, Mapping[str, list]]],
                      prefixes: Sequence[str], record: Mapping[str, Any] | None = None) -> list[list[str]]:
    """Check every attachment value of a write and put the upload's own value in its place.

    A value must name an upload the caller made for that field of that entity, not held by
    another record, within the field's current limits; a value the stored ``record``
    already holds stays as it is. Raises 422 naming each bad value; returns the keys each
    item of ``loaded`` is to claim (``claim_uploads``, once the record has its id)."""
    if not _has_attachments(entity, model):
        return [[] for _ in loaded]
    found = [[*_attachment_values(entity, model, values, children, prefix)]
             for prefix, (values, children) in zip(prefixes, loaded, strict=True)]
    if not any(found):
        return [[] for _ in loaded]
    held = _held(conn, entity, model, tables, record)
    keys = {v.key for item in found for v in item if v.key}
    rows = {row.key: row for row in conn.execute(sa.select(uploads).where(uploads.c.key.in_(keys)))} if keys else {}
    errors, claims, seen = [], [], set()
    record_id = record["id"] if record is not None else None
    for item in found:
        claim = []
        for v in item:
            kept = held.get((v.entity.name, v.field.name, v.key)) if v.key else None
            if kept is not None:
                v.holder[v.field.name] = kept
                continue
            row = rows.get(v.key) if v.key else None
            mine = row is not None and (principal.is_system or row.user_id == principal.user_id)
            if not mine or row.entity != v.entity.name or row.field != v.field.name:
                errors.append(error_entry(v.path, "no_such_upload", NO_SUCH_UPLOAD))
                continue
            if (row.record_id is not None and row.record_id != record_id) or v.key in seen:
                errors.append(error_entry(v.path, "upload_held_elsewhere", HELD_ELSEWHERE))
                continue
            problem = limit_problem(v.field, row.name, row.size, row.content_type)
            if problem:
                errors.append(problem.entry(v.path))
                continue
            seen.add(v.key)
            v.holder[v.field.name] = {"key": row.key, "name": row.name, "size": row.size,
                                      "content_type": row.content_type}
            claim.append(row.key)
        claims.append(claim)
    if errors:
        raise ValidationError(f"{len(errors)} invalid value(s)", errors=errors)
    return claims


def claim_uploads(conn: sa.Connection, keys: Sequence[str], record_id: int) -> None:
    """Mark uploads as held by ``record_id``, in the write's transaction; refuses (409) when
    another write took one of them in the meantime."""
    if not keys:
        return
    taken = conn.execute(sa.update(uploads).where(
        uploads.c.key.in_(keys), sa.or_(uploads.c.record_id.is_(None), uploads.c.record_id == record_id))
        .values(record_id=record_id)).rowcount
    if taken != len(set(keys)):
        raise Conflict(HELD_ELSEWHERE, code="upload_held_elsewhere")


def app_files(app: Any = None) -> FileStore:
    """The file store of the app (the current one by default): ``<instance>/attachments``."""
    from flask import current_app

    app = app or current_app
    return FileStore(app.extensions["loom"].engine, Path(app.instance_path) / "attachments")
