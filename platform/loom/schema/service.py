"""The metadata service: the one door through which the live metadata, and with it the
database schema, changes. The CLI and (later) the browser studio both call it.

A publish diffs the new model against the live one, checks the change against the data,
migrates the schema and records the new version, all in one transaction: on SQLite and
PostgreSQL alike, either all of it happens or none of it does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from loom.db import deferring, reading, run_before_commit, utcnow, write_turn
from loom.errors import BadRequest, Conflict, MetadataError, NotFound, error_entry
from loom.events import emit
from loom.metadata.compiler import compile_documents
from loom.metadata.diff import ModelDiff, diff_models
from loom.metadata.loader import Document, check_document, load_and_compile
from loom.metadata.model import EMPTY_MODEL, Alert, AppModel
from loom.principal import Principal
from loom.schema.changes import DocumentEdits, changes_between
from loom.schema.filling import fill_rollups
from loom.schema.ids import ensure_ids_never_reused
from loom.schema.migrate import Migration
from loom.schema.models import MetadataVersion
from loom.schema.statistics import analyze
from loom.schema.tables import build_tables

versions = MetadataVersion.__table__
#: the live version's number, as a scalar subquery (one object: see ``version_query``)
_LIVE_NUMBER = sa.select(sa.func.max(versions.c.number)).scalar_subquery()
#: PostgreSQL advisory lock key that serialises publishes across processes
PUBLISH_LOCK = 0x4C4F4F4D
#: the live version number the current request has read, per metadata service (``pin``)
_pinned: ContextVar[tuple[MetadataService, int] | None] = ContextVar("loom_pinned_metadata", default=None)


@dataclass
class LiveVersion:
    """A published version, compiled, with whatever was derived from it (tables, schemas,
    OpenAPI), cached for as long as the version is live."""

    number: int
    model: AppModel
    tables: Any = None
    _derived: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.tables is None:
            self.tables = build_tables(self.model)

    def derive(self, key: str, factory: Callable[[], Any]) -> Any:
        """``factory()`` computed once per version and key."""
        try:
            return self._derived[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._derived:
                self._derived[key] = factory()
            return self._derived[key]


@dataclass(frozen=True)
class Plan:
    """What a publish would do (or did)."""

    from_version: int
    to_version: int
    diff: ModelDiff
    summary: tuple[str, ...]
    problems: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self.diff.is_empty


@dataclass(frozen=True)
class VersionInfo:
    number: int
    created_at: Any
    author: str
    source: str
    summary: tuple[str, ...]


#: checks a publish makes of the new model against the database, beside the schema change's
#: own: ``check(conn, model) -> [problem, ...]``. Domains above this one add theirs (the
#: integration rules: each rule's ``run_as`` is an active user), since this one cannot import them.
PUBLISH_CHECKS: list[Callable[[sa.Connection, AppModel], list[Any]]] = []


def add_publish_check(check: Callable[[sa.Connection, AppModel], list[Any]]) -> None:
    """Make every publish (and its preview, ``plan``) run ``check``; adding it again does nothing."""
    if check not in PUBLISH_CHECKS:
        PUBLISH_CHECKS.append(check)


def publish_problems(conn: sa.Connection, model: AppModel) -> list[Any]:
    """What the publish checks find wrong with ``model`` against the database."""
    return [problem for check in PUBLISH_CHECKS for problem in check(conn, model)]


def model_from_documents(documents: Iterable[dict[str, Any]], origin: str = "<stored>") -> AppModel:
    docs = []
    problems = []
    for data in documents:
        doc = Document(data, origin)
        problems.extend(check_document(doc))
        docs.append(doc)
    if problems:
        raise MetadataError(problems)
    return compile_documents(docs)


class MetadataService:
    def __init__(self, engine: sa.Engine, check_interval: float = 0.0):
        from loom.audit.log import AuditLog

        self.engine = engine
        self.check_interval = check_interval
        self._live: LiveVersion | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()
        #: the audit log, checking the live version's alert rules
        self.audit = AuditLog(engine, alerts=self.alerts)
        #: loads and compiles a directory of metadata files; the app factory sets one that
        #: adds the documents plugins ship (``loom.plugins.metadata``)
        self.directory_loader: Callable[[str | Path], AppModel] = load_and_compile

    def alerts(self) -> Mapping[str, Alert]:
        """The alert rules of the live version as last seen (no database round trip)."""
        live = self._live if self._live is not None else self.live()
        return live.model.alerts

    # -- reading ----------------------------------------------------------------------

    def version_query(self) -> sa.ScalarSelect:
        """The live version's number, as a scalar subquery: a request reads it in the one
        statement that also reads the identity version, then ``pin``s it."""
        return _LIVE_NUMBER

    def pin(self, number: int | None) -> Token:
        """Let ``live()`` trust ``number``, the live version just read, for the rest of the
        current request (or task) instead of asking the database again; ``unpin`` with
        the token returned when the request ends."""
        return _pinned.set((self, number or 0))

    @staticmethod
    def unpin(token: Token) -> None:
        try:
            _pinned.reset(token)
        except ValueError:  # pinned in another context (a response streamed elsewhere)
            _pinned.set(None)

    def live(self) -> LiveVersion:
        """The live version, compiled; other processes' publishes are seen on the next call
        (or after ``check_interval`` seconds). In a request that has ``pin``ned the number
        it read, that number is trusted (a newer version this process published meanwhile
        is kept)."""
        now = time.monotonic()
        cached = self._live
        pinned = _pinned.get()
        if cached is not None:
            if pinned is not None and pinned[0] is self:
                if cached.number >= pinned[1]:
                    return cached
            elif now - self._checked_at < self.check_interval:
                return cached
        with reading(self.engine) as conn:
            number = conn.execute(sa.select(sa.func.max(versions.c.number))).scalar() or 0
            if cached is not None and cached.number == number:
                self._checked_at = now
                return cached
            with self._lock:
                if self._live is None or self._live.number != number:
                    self._live = self._load(conn, number)
                self._checked_at = now
                return self._live

    def _load(self, conn: sa.Connection, number: int) -> LiveVersion:
        if number == 0:
            return LiveVersion(0, EMPTY_MODEL)
        documents = conn.execute(sa.select(versions.c.documents).where(versions.c.number == number)).scalar_one()
        return LiveVersion(number, model_from_documents(documents, f"<version {number}>"))

    def load_directory(self, directory: str | Path) -> AppModel:
        """Load, check and compile a directory of metadata files (with the documents
        plugins ship, in an app)."""
        return self.directory_loader(directory)

    def history(self) -> list[VersionInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(versions.c.number, versions.c.created_at, versions.c.author,
                                          versions.c.source, versions.c.summary)
                                .order_by(versions.c.number.desc())).all()
        return [VersionInfo(r.number, r.created_at, r.author, r.source, tuple(r.summary)) for r in rows]

    def documents_of(self, number: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            documents = conn.execute(sa.select(versions.c.documents).where(versions.c.number == number)).scalar()
        if documents is None:
            raise NotFound(f"there is no metadata version {number}; see 'loom metadata history'")
        return documents

    def export(self, directory: str | Path, number: int | None = None) -> list[Path]:
        """Write the metadata of version ``number`` (default: the live one) as files, one per
        document; applying them back changes nothing."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        written = []
        if number is None:
            documents = self.live().model.documents
        else:
            documents = self.documents_of(number) if number else []
        for doc in documents:
            folder = target / doc["kind"]
            folder.mkdir(exist_ok=True)
            path = folder / f"{doc['name']}.yaml"
            path.write_text(yaml.safe_dump(dict(doc), allow_unicode=True, sort_keys=False), encoding="utf-8")
            written.append(path)
        return written

    # -- changing ---------------------------------------------------------------------

    @contextmanager
    def _publishing(self) -> Iterator[sa.Connection]:
        """One connection and transaction for a publish, locked against concurrent ones.
        On SQLite it waits for its turn among the process's writers (``loom.db.write_turn``)
        like any write, instead of in SQLite's busy handler."""
        with write_turn(self.engine), self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # Table rebuilds must not fire foreign-key actions; checked before commit.
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = OFF")
                conn.info["write_lock"] = True
            try:
                with deferring(conn), conn.begin():
                    if not sqlite:
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PUBLISH_LOCK})
                    yield conn
                    run_before_commit(conn)
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            raise MetadataError([f"the change would break {len(broken)} links between records "
                                                 f"(first in table {broken[0][0]})"])
            finally:
                if sqlite:
                    conn.info.pop("write_lock", None)
                    conn.connection.dbapi_connection.execute("PRAGMA foreign_keys = ON")

    def _live_in(self, conn: sa.Connection) -> tuple[int, AppModel]:
        number = conn.execute(sa.select(sa.func.max(versions.c.number))).scalar() or 0
        if self._live is not None and self._live.number == number:
            return number, self._live.model
        return number, self._load(conn, number).model

    def plan(self, model: AppModel) -> Plan:
        """What publishing ``model`` would change, and why it would be refused; changes nothing."""
        with self.engine.connect() as conn, conn.begin():
            number, live = self._live_in(conn)
            diff = diff_models(live, model)
            migration = Migration(conn, live, model, diff, number + 1)
            problems = migration.problems() + [str(p) for p in publish_problems(conn, model)]
            summary = diff.summary() + [f"  restores {what}" for what in migration.restorations()]
            conn.rollback()
        return Plan(number, number + 1, diff, tuple(summary), tuple(problems))

    def database_problems(self, model: AppModel) -> list[Any]:
        """What a publish of ``model`` would be refused for by the publish checks (users a
        rule runs as, ...), without diffing or migrating; changes nothing."""
        with self.engine.connect() as conn:
            return publish_problems(conn, model)

    def apply(self, model: AppModel, *, author: str, source: str = "apply",
              principal: Principal | None = None, base_version: int | None = None) -> Plan:
        """Publish ``model`` as the new live version. Raises ``MetadataError`` (and changes
        nothing) when the change cannot be made without losing or corrupting data.

        With ``base_version`` (the version ``model`` was made from) it is a compare-and-set:
        ``Conflict`` (409), naming what changed meanwhile, unless that version is still live
        (or another version with the very same documents is), checked under the publish lock."""
        base_version = _version_number(base_version)
        try:
            with self._publishing() as conn:
                number, live = self._live_in(conn)
                if base_version is not None and base_version != number:
                    self._refuse_if_changed_since(conn, base_version, number, model)
                diff = diff_models(live, model)
                if diff.is_empty:
                    self._ensure_ids_never_reused(conn, live, author, principal)
                    return Plan(number, number, diff, ())
                migration = Migration(conn, live, model, diff, number + 1)
                problems = migration.problems() + publish_problems(conn, model)
                if problems:
                    raise MetadataError(problems)
                migration.run()
                tables = migration.new_tables
                summary = diff.summary() + migration.notes + fill_rollups(conn, live, model, tables)
                conn.execute(versions.insert().values(
                    number=number + 1, created_at=utcnow(), author=author, source=source,
                    summary=summary, documents=[dict(d) for d in model.documents],
                    fingerprint=model.fingerprint))
                emit(conn, topic="metadata.published", actor=author,
                     payload={"version": number + 1, "source": source, "summary": summary})
                action = "metadata.rollback" if source.startswith("rollback") else "metadata.publish"
                self.audit.add(conn, action, actor=author, principal=principal,
                               detail={"version": number + 1, "source": source, "summary": summary})
        except sa.exc.DBAPIError as exc:
            raise MetadataError([f"the database refused the change, nothing was applied: {exc.orig}"]) from exc
        self._live = LiveVersion(number + 1, model, tables)
        self._checked_at = time.monotonic()
        # tables made or rebuilt have no statistics yet (a rebuilt SQLite table loses its own)
        analyze(self.engine, [e.new.table_name for e in diff.entities if e.new is not None and e.needs_ddl])
        return Plan(number, number + 1, diff, tuple(summary))

    def ensure_ids_never_reused(self, *, author: str = "loom", principal: Principal | None = None) -> list[str]:
        """Bring the live entities' tables up to date so that no record id is ever handed
        out twice (run at start-up and by every publish); returns the entities converted."""
        with self._publishing() as conn:
            _number, live = self._live_in(conn)
            return self._ensure_ids_never_reused(conn, live, author, principal)

    def _ensure_ids_never_reused(self, conn: sa.Connection, live: AppModel, author: str,
                                 principal: Principal | None) -> list[str]:
        rebuilt = ensure_ids_never_reused(conn, {e.name: e.table_name for e in live.entities.values()})
        if rebuilt:
            self.audit.add(conn, "metadata.storage", actor=author, principal=principal,
                           detail={"summary": [f"  {name}: table rebuilt so that no record id is ever used twice"
                                               for name in rebuilt]})
        return rebuilt

    def change(self, edits: DocumentEdits | Mapping[str, Any], base_version: int, *, author: str,
               source: str = "change", principal: Principal | None = None) -> Plan:
        """Publish ``edits`` (``{"put": [documents], "remove": [[kind, name]]}``, see
        ``DocumentEdits``) made on top of the metadata of version ``base_version``.

        Compare-and-set: when another version has been published since ``base_version``,
        the change is refused with ``Conflict`` (409) whose message and ``errors`` name every
        document added, changed or removed meanwhile, and nothing is published. The check
        and the publish happen under one lock in one transaction, so of two changes made on
        the same version exactly one goes through, on every database.

        A stale edit is refused even when the documents it touches were left alone
        meanwhile: documents depend on one another (a role that lets its users write every
        field of an entity also grants a field someone else has just added to it), so only
        the editor, looking at the new version, can tell whether their change still means
        what they meant. The one exception is a live version whose documents are exactly
        those of ``base_version`` (say, a publish undone by a rollback): nothing changed."""
        model = self.changed_model(edits, base_version)
        return self.apply(model, author=author, source=source, principal=principal, base_version=base_version)

    def changed_model(self, edits: DocumentEdits | Mapping[str, Any], base_version: int) -> AppModel:
        """The model ``change`` would publish: version ``base_version``'s documents with
        ``edits`` made, checked and compiled; publishes nothing. For a caller that must
        look at the result before it is published (who may publish these roles?)."""
        parsed = DocumentEdits.parse(edits)
        base_version = _version_number(base_version)
        if base_version is None:
            raise BadRequest("base_version is required: the version the change was made on",
                             errors=[error_entry("base_version", "required", "is required")])
        documents = [] if base_version == 0 else self.documents_of(base_version)
        return parsed.model_on(documents, base_version)

    def _refuse_if_changed_since(self, conn: sa.Connection, base_version: int, live_number: int,
                                 model: AppModel) -> None:
        """Raise ``Conflict`` naming what versions after ``base_version`` changed, unless
        the live documents are still exactly those of ``base_version``."""
        if base_version > live_number:
            raise NotFound(f"there is no metadata version {base_version}; version {live_number} is the latest")
        stored = dict(conn.execute(sa.select(versions.c.number, versions.c.documents)
                                   .where(versions.c.number.in_([base_version, live_number]))).all())
        base_documents = stored.get(base_version, [])
        meanwhile = changes_between(base_documents, stored.get(live_number, []))
        if not meanwhile:
            return
        authors = conn.execute(sa.select(versions.c.author).distinct()
                               .where(versions.c.number > base_version, versions.c.number <= live_number)
                               .order_by(versions.c.author)).scalars().all()
        edited = {(c.kind, c.name) for c in changes_between(base_documents, model.documents)}
        raise Conflict(
            f"the metadata changed since version {base_version}: version {live_number} is live now "
            f"(published by {', '.join(authors)}); meanwhile {', '.join(str(c) for c in meanwhile)}. "
            f"Nothing was published: make the change again on version {live_number}.",
            errors=[{**error_entry(f"{c.kind}.{c.name}", "metadata_changed", f"{c} since version {base_version}",
                                   kind=c.kind, name=c.name, change=c.change),
                     "kind": c.kind, "name": c.name, "change": c.change,
                     "in_your_change": (c.kind, c.name) in edited} for c in meanwhile])

    def rollback(self, number: int, *, author: str, principal: Principal | None = None) -> Plan:
        """Publish the metadata of version ``number`` again as a new version; data set aside
        since then comes back."""
        model = model_from_documents(self.documents_of(number), f"<version {number}>")
        return self.apply(model, author=author, source=f"rollback to {number}", principal=principal)


def _version_number(value: Any) -> int | None:
    """``value`` when it can name a version (a whole number, 0 or more) or is None; 400 otherwise."""
    if value is None or (type(value) is int and value >= 0):
        return value
    raise BadRequest(f"base_version must be a version number (0 or more), not {value!r}",
                     errors=[error_entry("base_version", "bad_parameter", "must be a version number", parameter="base_version")])


__all__ = ["DocumentEdits", "LiveVersion", "MetadataService", "Plan", "VersionInfo", "model_from_documents"]
