"""The record service: the one door to entity data.

Every read and write of entity records (API, screens, import, flows, plugins) goes
through ``RecordService``, so validation, hooks, events (and, as they arrive,
permissions and audit) cannot be bypassed. Writes run in one transaction together with
their outbox events; ``after_record_commit`` hooks run once it committed. The checks a
write passes before commit are in ``guards``, the commit hooks in ``committing``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
import sqlalchemy as sa

from loom.audit.log import AuditLog
from loom.db import after_commit, utcnow
from loom.errors import Conflict, NotFound, PreconditionFailed, ValidationError, error_entry
from loom.metadata.model import Entity, Field
from loom.permissions import EntityAccess, Forbidden, Policy
from loom.principal import Principal
from loom.records.comments import Discussion
from loom.records.committing import CommitHooks
from loom.records.derived import recompute_derived
from loom.records.external_ids import forget_record
from loom.records.files import check_attachments, claim_uploads
from loom.records.guards import OutOfScope, WriteGuards
from loom.records.linking import LinkChecks
from loom.records.loading import RowLoader
from loom.records.logic import WriteLogic, computed_refusal
from loom.records.memory import Memory, note_write
from loom.records.numbering import numbering
from loom.records.ownership import Ownership
from loom.records.preview import Previews
from loom.records.query import Cursors
from loom.records.reading import RecordReader
from loom.records.schemas import UNKNOWN_FIELD, build_schemas, flatten_errors
from loom.records.storing import RowWrites
from loom.schema.service import LiveVersion
from loom.schema.statistics import rows_written

STATE_LOCKED = "is read-only in the record's current state"
#: ``[3].amount`` -> ("[3].", "amount"): the row of a bulk write an error is about
_BULK_ROW = re.compile(r"^(\[\d+\]\.)?(.*)$", re.DOTALL)
#: SQLSTATEs of a transaction the database ended to let another one through: a deadlock
#: broken, a serialization failure
WRITE_CONFLICTS = ("40P01", "40001")


def whole_version(value: Any) -> int:
    """A record version given by a client, which must be the whole number it read: 1.5,
    "1" or true are refused rather than taken as some version."""
    if type(value) is not int or not 0 <= value < 2**63:
        raise ValidationError("version must be the whole number of the version you last read",
                              errors=[error_entry("version", "not_whole", "expected a whole number")])
    return value


def form_version(text: str) -> int | str | None:
    """A version as a form sends it: None when empty, the number when the text is one; any
    other text is passed on for ``whole_version`` to refuse, never read as some version."""
    text = text.strip()
    if not text:
        return None
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else text


@dataclass
class Context:
    """What a record operation runs with: the database, the live metadata, who acts,
    the plugin hooks and the list settings."""

    engine: sa.Engine
    live: LiveVersion
    principal: Principal
    hooks: Any
    cursors: Cursors
    page_size: int = 50
    max_page_size: int = 500
    #: the live version's permissions; None only where no roles apply (system work)
    policy: Policy | None = None
    #: where operations are logged; by default the database's log, without alert rules
    audit: AuditLog | None = None
    #: a transaction to work in (writes are savepoints in it), instead of one of its own
    connection: sa.Connection | None = None
    #: the app's time zone (LOOM_TIMEZONE): the date autonumbers are made with
    time_zone: str = "UTC"


class RecordService(Ownership, WriteGuards, CommitHooks, Discussion, LinkChecks, RowWrites, Previews,
                    RecordReader):
    """Records of one entity, as seen by ``context.principal``: only the actions, rows and
    fields its roles allow."""

    def __init__(self, context: Context, entity_name: str):
        model = context.live.model
        entity = model.entities.get(entity_name)
        if entity is None or entity.child:
            raise NotFound(f"there is no entity named '{entity_name}'", code="no_such_entity",
                           params={"entity": entity_name})
        self.context = context
        self.model = model
        self.entity: Entity = entity
        self.table: sa.Table = context.live.tables[entity_name]
        self.hooks = context.hooks
        self.principal = context.principal
        self.dialect = context.engine.dialect.name
        self._accesses: dict[str, EntityAccess] = {}
        self._fields: dict[tuple[str, str], tuple[set[str], set[str]]] = {}
        self.access = self.access_for(entity)
        self.audit = context.audit or AuditLog(context.engine)

    def other(self, entity_name: str) -> RecordService:
        """The service of another entity, for the same caller and in the same transaction."""
        return RecordService(self.context, entity_name)

    # -- helpers ------------------------------------------------------------------------

    def access_for(self, entity: Entity) -> EntityAccess:
        """What the caller may do with ``entity``: this service's own, or (for a child
        entity) that of its rows, which follow their parent."""
        if entity.name not in self._accesses:
            parent = self.access_for(self.model.parents[entity.name][0]) if entity.child else None
            self._accesses[entity.name] = EntityAccess(self.context.policy, self.principal, entity, parent)
        return self._accesses[entity.name]

    def _computed_refusal(self, entity: Entity, field: str, f: Field) -> dict[str, Any]:
        """The refusal of a value sent for a computed or rolled-up field, saying how it is
        worked out only where the caller may read every field that reads (else "…")."""
        rollup = f.rollup
        if rollup is not None:
            source = self.model.entities.get(rollup.entity or "")
            paths = [p for p in (rollup.field, *(rollup.where_expr.paths if rollup.where_expr is not None else ()))
                     if p]
        else:
            source, paths = entity, list(f.compute_expr.paths) if f.compute_expr is not None else []
        if source is None or all(self.unreadable_at(source, path) is None for path in paths):
            return computed_refusal(field, f)
        return error_entry(field, "computed", "is computed from …; it cannot be set", expression="…")

    def unreadable_at(self, entity: Entity, path: str) -> int | None:
        """Where along ``path`` (``part.cost``, read from ``entity`` through its links) the
        first field the caller may not read is (its index), or None when they may read
        every one (a user's property, or no field at all, is nothing of a record)."""
        current: Entity | None = entity
        for i, name in enumerate(path.split(".")):
            f = current.all_fields.get(name) if current is not None else None
            if f is None:
                return None
            access = self.access_for(current)
            if not access.allowed("read") or name not in access.readable():
                return i
            current = self.model.entities.get(f.target) if f.target else None
        return None

    def _sort_out(self, access: EntityAccess, data: dict[str, Any], action: str, prefix: str = "") -> list[dict]:
        """Remove from ``data`` what the caller may not write. Fields they cannot read are
        unknown to them (422); fields they can read but not change are refused (403)."""
        errors, denied = [], []
        readable, writable = self._field_sets(access, action)
        entity = access.entity
        for name in list(data):
            f = entity.all_fields.get(name)
            if f is None or name == "id" and entity.child:
                continue
            if name not in readable:
                errors.append(error_entry(prefix + name, "unknown_field", UNKNOWN_FIELD, name=name))
            elif f.compute or f.rollup:
                errors.append(self._computed_refusal(entity, prefix + name, f))
            elif (f.read_only or (f.system and name != "owner")) and not self.principal.is_system:
                errors.append(error_entry(prefix + name, "read_only", "is read-only"))
            elif name not in writable:
                denied.append(prefix + name)
            else:
                continue
            del data[name]
        if denied:
            raise Forbidden(f"you may not change {', '.join(denied)}", code="forbidden_fields", params={"fields": denied},
                            errors=[error_entry(n, "forbidden_field", "you may read this field but not change it")
                                    for n in denied])
        return errors

    def _field_sets(self, access: EntityAccess, action: str) -> tuple[set[str], set[str]]:
        """(readable, writable for ``action``) of ``access``'s entity, worked out once per
        service: a bulk create sorts out a thousand rows with the same two sets."""
        key = (access.entity.name, action)
        sets = self._fields.get(key)
        if sets is None:
            sets = self._fields[key] = (access.readable(), access.writable(action))
        return sets

    def _locked(self, conn: sa.Connection, record_id: int) -> set[str]:
        """Fields the stored record's state makes read-only: those whose ``read_only_when``
        it meets (checked in SQL, so the condition means what it means in a row scope)."""
        fields = self.entity.state_locked_fields
        if not fields or self.principal.is_system:
            return set()
        checks = [sa.case((self._lock_condition(f), 1), else_=0).label(f.name) for f in fields]
        row = conn.execute(sa.select(*checks).where(self.table.c.id == record_id)).mappings().first()
        return {name for name, locked in (row or {}).items() if locked}

    def _fetch_for_update(self, conn: sa.Connection, record_id: int, *,
                          lock: bool = True) -> tuple[dict[str, Any], set[str]]:
        """The row an update changes (within the caller's update scope; locked on
        PostgreSQL) and the fields its state makes read-only, read with one query."""
        fields = [] if self.principal.is_system else self.entity.state_locked_fields
        labels = {f"{f.name}:locked": f.name for f in fields}
        checks = [sa.case((self._lock_condition(f), 1), else_=0).label(label)
                  for label, f in zip(labels, fields, strict=True)]
        row = self._fetch_row(conn, record_id, action="update", lock=lock, extra=checks)
        locked = {name for label, name in labels.items() if row[label]}
        return {c.name: row[c.name] for c in self.table.c}, locked

    def locked_fields(self, record_id: int) -> set[str]:
        """The fields of a record nobody may change in its current state (``read_only_when``)."""
        if not self.entity.state_locked_fields:
            return set()
        with self._reading() as conn:
            return self._locked(conn, record_id)

    def _schemas(self, entity: Entity) -> dict[str, ma.Schema]:
        return self.context.live.derive(f"schemas:{entity.name}", lambda: build_schemas(entity, self.model))

    def _loader(self, entity: Entity, mode: str) -> RowLoader:
        """What validates a row of ``entity`` in ``mode`` (create, update, partial)."""
        schema = self._schemas(entity)[mode]  # outside: derive() holds its lock while it builds
        return self.context.live.derive(f"loader:{entity.name}:{mode}", lambda: RowLoader(schema))

    def _load(self, data: Any, mode: str) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        """Validate input: (typed values of stored fields, typed child rows per table field)."""
        if not isinstance(data, Mapping):
            raise ValidationError("the body must be a JSON object of field values",
                                  errors=[error_entry("", "not_an_object", "expected a JSON object")])
        data = dict(data)
        data.pop("version", None)
        action = "create" if mode == "create" else "update"
        errors = self._sort_out(self.access, data, action)
        try:
            values = self._loader(self.entity, mode).load(data)
        except ma.ValidationError as exc:
            errors.extend(flatten_errors(exc.messages))
            values = {}
        children: dict[str, list[dict[str, Any]]] = {}
        for f in self.entity.table_fields:
            if f.name not in values:
                continue
            rows, child_errors = self._load_children(f, values.pop(f.name), action)
            children[f.name] = rows
            errors.extend(child_errors)
        if errors:
            raise ValidationError(f"{len(errors)} invalid value(s)", errors=errors)
        return values, children

    def _load_children(self, f: Field, rows: list, action: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        child = self.model.entity(f.target)
        schema = self._loader(child, "create")
        loaded, errors = [], []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                errors.append(error_entry(f"{f.name}[{i}]", "not_an_object", "expected a JSON object"))
                continue
            row = dict(row)
            errors.extend(self._sort_out(self.access_for(child), row, action, f"{f.name}[{i}]."))
            try:
                loaded.append(schema.load(row))
            except ma.ValidationError as exc:
                errors.extend(flatten_errors(exc.messages, f"{f.name}[{i}]"))
        return loaded, errors

    # -- writing ------------------------------------------------------------------------

    def _refresh_statistics(self, conn: sa.Connection, created: int,
                            loaded: Sequence[tuple[dict, Mapping[str, list]]]) -> None:
        """Once a bulk create committed, count its rows towards fresh planner statistics of
        the tables it wrote (``loom.schema.statistics``: a large load gets them at once)."""
        counts = {self.table.name: created}
        for f in self.entity.table_fields:
            counts[self.context.live.tables[f.target].name] = sum(len(c.get(f.name, ())) for _v, c in loaded)
        engine = self.context.engine
        after_commit(conn, lambda: rows_written(engine, {table: n for table, n in counts.items() if n}))

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """The transaction of one write operation, with a memory of what it reads, so that
        it reads nothing twice (``loom.records.memory``). A transaction the database ended
        because it met another one head-on (PostgreSQL's deadlock or serialization failure)
        is refused as a conflict to send again: it was rolled back whole."""
        outer, self._memory = self._memory, Memory()
        try:
            with self._writing() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) not in WRITE_CONFLICTS:
                raise
            raise Conflict(f"another change to the same {self.entity.name} records was being saved at the same "
                           "moment; nothing was saved: send it again", code="write_conflict",
                           params={"entity": self.entity.name}) from exc
        finally:
            self._memory = outer

    def _check_files(self, conn: sa.Connection, loaded: Sequence[tuple[dict, dict]], *, indexed: bool = False,
                     record: Mapping[str, Any] | None = None) -> list[list[str]]:
        """Attachment values must name the caller's own uploads for that field (see
        ``loom.records.files``); returns the upload keys each item claims once stored."""
        prefixes = [f"[{i}]." if indexed else "" for i in range(len(loaded))]
        return check_attachments(conn, self.principal, self.entity, self.model, self.context.live.tables,
                                 loaded, prefixes, record)

    def _numbering(self, rows: list[dict[str, Any]], now: Any):
        """The autonumbers of new rows (``loom.records.numbering``): those that are not
        gap-free taken now, ahead of the write; None when the entity numbers nothing."""
        return numbering(self.context.engine, self.entity, rows, now, time_zone=self.context.time_zone,
                         joined=self.context.connection is not None)

    def _apply_logic(self, conn: sa.Connection, loaded: Sequence[tuple[dict, Mapping[str, list]]], now: Any, *,
                     indexed: bool = False, record: Mapping[str, Any] | None = None,
                     logic: WriteLogic | None = None) -> None:
        """Computed defaults, computed fields, ``required_when`` and rules of each record
        and its child rows (``loom.records.logic``), at ``now``, the instant the write
        stores as its time; 422 with every problem found. A preview passes its own
        ``logic``, to see what it saw."""
        entity = self.entity
        if not entity.has_logic and not any(self.model.entity(f.target).has_logic for f in entity.table_fields):
            return
        logic = logic or WriteLogic(conn, self.model, self.context.live.tables, self.principal, now)
        logic.prefetch(entity, [values if record is None else {**record, **values} for values, _c in loaded])
        logic.prefetch_children(entity, [children for _values, children in loaded])
        standard = {**self._standard_values(logic.now), "owner": self.principal.user_id}
        errors = []
        for i, (values, children) in enumerate(loaded):
            prefix = f"[{i}]." if indexed else ""
            errors.extend(logic.apply_children(entity, children, prefix))  # first: roll-ups read the rows
            errors.extend(logic.apply(entity, values, record=record, creating=record is None, prefix=prefix,
                                      standard=standard, children=children))
        if errors:
            raise ValidationError(f"{len(errors)} invalid value(s)", errors=self._unnamed_hidden(errors))

    def _unnamed_hidden(self, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The errors of a write's logic as the writer may read them: one about a field they
        may not read (a rule naming it, its ``required_when``) is about the record as a
        whole, as a preview says it (``_readable_errors``); a bulk row keeps its ``[i]``."""
        readable, result = self.access.readable(), []
        for error in errors:
            row, rest = _BULK_ROW.match(error["field"]).groups()
            shown = self._readable_errors([{**error, "field": rest}], readable)[0]
            result.append({**shown, "field": (row or "") + shown["field"] if shown["field"] else (row or "")[:-1]})
        return result

    def create(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create one record (with its child rows); returns it as stored, as far as the
        caller may read it."""
        try:
            self.access.require("create")
            values, children = self._load(data, "create")
        except Forbidden as exc:
            self._log_refusal("create", exc)
            raise
        row: dict[str, Any] | None = None
        now = utcnow()
        numbers = self._numbering([values], now)
        try:
            with self._write() as conn:
                if numbers is not None:
                    numbers.within(conn)
                self.hooks.before_record_create(entity=self.entity, values=values, principal=self.principal,
                                                connection=conn)
                self._apply_logic(conn, [(values, children)], now)
                self._follow_owner(values)
                self._validate_links(conn, [(values, children)])
                claims = self._check_files(conn, [(values, children)])
                row = {**values, **self._standard_values(now)}
                row.setdefault("owner", self.principal.user_id)
                stored = self._insert(conn, [row])[0]
                record_id = stored["id"]
                claim_uploads(conn, claims[0], record_id)
                self._refuse_out_of_scope(conn, "create", [record_id], [values])
                self._insert_children(conn, [(record_id, children)])
                record = self._serialize(conn, [stored], full=True)[0]
                reply = record if self._reply_is_full() else self._serialize(conn, [stored])[0]
                self._committed(conn, "create", [record])
                recompute_derived(self, conn, None, [stored], records=(None, [record]))
        except OutOfScope as exc:
            self._log_refusal("create", exc)
            raise
        except sa.exc.IntegrityError as exc:
            raise self._integrity(exc, row) from None
        return reply

    def bulk_create(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create many records in one transaction: all of them, or none when any is invalid
        (every invalid row is reported, as ``[i].field``). Each record passes the same
        checks, hooks, event and audit entry as one made by ``create``; what can be done
        once for all of them is (the statements, the permission sets, the link checks)."""
        loaded, errors = [], []
        try:
            self.access.require("create")
            for i, data in enumerate(rows):
                try:
                    loaded.append(self._load(data, "create"))
                except ValidationError as exc:
                    errors.extend({**e, "field": f"[{i}].{e['field']}".rstrip(".")} for e in exc.errors)
        except Forbidden as exc:
            self._log_refusal("create", exc)
            raise
        if errors:
            raise ValidationError(f"{len(errors)} invalid value(s) in {len(rows)} rows", errors=errors)
        if not loaded:
            return []
        now = utcnow()
        numbers = self._numbering([values for values, _children in loaded], now)
        try:
            with self._write() as conn:
                if numbers is not None:
                    numbers.within(conn)
                hook = self.hooks.before_record_create
                for values, _children in loaded:
                    hook(entity=self.entity, values=values, principal=self.principal, connection=conn)
                self._apply_logic(conn, loaded, now, indexed=True)
                for values, _children in loaded:
                    self._follow_owner(values)
                self._validate_links(conn, loaded, indexed=True)
                claims = self._check_files(conn, loaded, indexed=True)
                standard = self._standard_values(now)
                # every row with every column (one statement takes them all), None where unset
                columns = set(standard).union(*(values for values, _children in loaded), ["owner"])
                payload = []
                for values, _children in loaded:
                    row = dict.fromkeys(columns)
                    row.update(values)
                    row.update(standard)
                    if "owner" not in values:
                        row["owner"] = self.principal.user_id
                    payload.append(row)
                stored = self._insert(conn, payload)
                ids = [row["id"] for row in stored]
                self._refuse_out_of_scope(conn, "create", ids, [values for values, _ in loaded], indexed=True)
                for record_id, claim in zip(ids, claims, strict=True):
                    claim_uploads(conn, claim, record_id)
                self._insert_children(conn, zip(ids, (children for _values, children in loaded), strict=True))
                records = self._serialize(conn, stored, full=True)
                self._committed(conn, "create", records)
                recompute_derived(self, conn, None, stored, records=(None, records))
                self._refresh_statistics(conn, len(ids), loaded)
        except OutOfScope as exc:
            self._log_refusal("create", exc)
            raise
        except sa.exc.IntegrityError as exc:
            raise self._integrity(exc) from None
        return ids

    def update(self, record_id: int, data: Mapping[str, Any], *, expected_version: int | None = None,
               mode: str = "partial") -> dict[str, Any]:
        """Change a record. With ``expected_version`` (from If-Match or the body's
        ``version``) a change made by someone else in the meantime is refused with 412."""
        if expected_version is not None:
            expected_version = whole_version(expected_version)
        if isinstance(data, Mapping) and data.get("version") is not None:
            body_version = whole_version(data["version"])
            expected_version = body_version if expected_version is None else expected_version
        try:
            self.access.require("update")
            values, children = self._load(data, mode)
        except Forbidden as exc:
            self._log_refusal("update", exc, record_id)
            raise
        attempted: dict[str, Any] | None = None
        try:
            with self._write() as conn:
                row, locked = self._fetch_for_update(conn, record_id)
                if expected_version is not None and row["version"] != expected_version:
                    raise PreconditionFailed(
                        f"this {self.entity.name} was changed by someone else (now version {row['version']}, "
                        f"you had {expected_version}); reload it and apply your change again")
                before = self._serialize(conn, [row], full=True)[0]
                self.hooks.before_record_update(entity=self.entity, record=before, changes=values,
                                                principal=self.principal, connection=conn)
                now = utcnow()
                self._apply_logic(conn, [(values, children)], now, record=row)
                self._follow_owner(values, row)
                self._validate_links(conn, [(values, children)])
                claims = self._check_files(conn, [(values, children)], record=row)
                values = {k: v for k, v in values.items() if row[k] != v}
                if not values and not children:
                    raise _NoChange(self._serialize(conn, [row])[0])
                attempted = {**row, **values}
                stored = self._update(conn, row, values, now)
                if stored is None:
                    raise PreconditionFailed(f"this {self.entity.name} was changed by someone else; reload it")
                self._refuse_out_of_scope(conn, "update", [record_id], [values])
                self._replace_children(conn, record_id, children)
                claim_uploads(conn, claims[0], record_id)
                after = self._serialize(conn, [stored], full=True)[0]
                changes = {name: [before[name], after[name]] for name in after
                           if before[name] != after[name] and name not in ("version", "updated_at")}
                if not changes:
                    raise _NoChange(self._serialize(conn, [row])[0])
                if locked & changes.keys():
                    refused = sorted(locked & changes.keys())
                    raise ValidationError(f"{', '.join(refused)} cannot change while the record is in this state",
                                          errors=[error_entry(n, "state_locked", STATE_LOCKED) for n in refused])
                reply = after if self._reply_is_full() else self._serialize(conn, [stored])[0]
                self._committed(conn, "update", [after], [changes])
                recompute_derived(self, conn, [row], [stored], records=([before], [after]))
        except _NoChange as unchanged:
            return unchanged.record
        except OutOfScope as exc:
            self._log_refusal("update", exc, record_id)
            raise
        except sa.exc.IntegrityError as exc:
            raise self._integrity(exc, attempted) from None
        return reply

    def delete(self, record_id: int, *, expected_version: int | None = None) -> dict[str, Any]:
        """Delete a record and its child rows; returns its last values. Refused (409) while
        other records link to it."""
        if expected_version is not None:
            expected_version = whole_version(expected_version)
        try:
            self.access.require("delete")
        except Forbidden as exc:
            self._log_refusal("delete", exc, record_id)
            raise
        try:
            with self._write() as conn:
                row = self._fetch_row(conn, record_id, action="delete", lock=True)
                if expected_version is not None and row["version"] != expected_version:
                    raise PreconditionFailed(
                        f"this {self.entity.name} was changed by someone else (now version {row['version']}); "
                        "reload it before deleting")
                record = self._serialize(conn, [row], full=True)[0]
                reply = record if self._reply_is_full() else self._serialize(conn, [row])[0]
                self.hooks.before_record_delete(entity=self.entity, record=record, principal=self.principal,
                                                connection=conn)
                self._refuse_if_linked(conn, record_id)
                for f in self.entity.table_fields:
                    child = self.context.live.tables[f.target]
                    conn.execute(child.delete().where(child.c.parent_id == record_id))
                    note_write(conn, f.target)
                conn.execute(self.table.delete().where(self.table.c.id == record_id))
                note_write(conn, self.entity.name)
                forget_record(conn, self.entity.name, record_id, self.principal, self.audit)
                self._committed(conn, "delete", [record])
                recompute_derived(self, conn, [row], None, records=([record], None))
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"other records still link to this {self.entity.name}; it cannot be deleted "
                           "while they do", code="still_linked_unseen", params={"entity": self.entity.name}) from exc
        return reply


class _NoChange(Exception):
    """An update that turned out to change nothing: roll back, return the record as it was."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
