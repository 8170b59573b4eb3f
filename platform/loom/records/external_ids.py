"""External ids: which record of an entity stands for which id in another system.

A link is (system, entity, external id) <-> record id: ``erp`` order ``SO/2026/0042``
is sales_order 17. Each external id of a system names at most one record of an entity,
and each record has at most one id per system, so a write coming back from that system
finds its record again, and a write going out to it finds the id to send. With links,
an integration's writes become idempotent: ``upsert`` updates the linked record, or
creates one and links it, in one transaction.

The functions that take a connection (``link``, ``unlink``, ``record_for``,
``external_for``, ``links_of``) check the ids they are given but no permissions: they are
for platform code and plugins acting on a record they already hold. Given a connection,
they work in its transaction (a savepoint for writes); given the engine, in a
transaction of their own. The functions that take a record service (``upsert``,
``link_record``, ``unlink_record``, ``record_links``, ``find_record``) act for the
service's principal: reading links needs read access to the record, changing them
needs update access, exactly as changing the record would.

Every link and unlink is an audit entry (``external_id.link``, ``external_id.unlink``)
in the transaction that made it. Deleting a record deletes its links with it
(``RecordService.delete``), so an external id of a deleted record is free again and an
upsert of it creates a new record.

Concurrent upserts of one external id: on PostgreSQL they take turns on a transaction
lock named after (system, entity, external id), so the second one waits for the first
to commit, then finds its link and updates the record; on SQLite writers take turns
anyway. Either way there is one record and one link, and no caller sees a conflict.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.audit.log import AuditLog, timestamp
from loom.db import Base, BigId, open_write, reading, utcnow, write_transaction
from loom.errors import BadRequest, Conflict, NotFound, error_entry
from loom.principal import Principal

#: a system's name: lower-case letters, digits, ``_``, ``.`` and ``-``, starting with a letter or digit
SYSTEM_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")
MAX_SYSTEM = 100
MAX_EXTERNAL_ID = 200


class ExternalId(Base):
    """One link: the record ``record_id`` of ``entity`` is ``external_id`` in ``system``."""

    __tablename__ = "loom_external_ids"
    __table_args__ = (sa.UniqueConstraint("system", "entity", "external_id"),
                      sa.UniqueConstraint("system", "entity", "record_id"),
                      sa.Index("ix_loom_external_ids_entity_record_id", "entity", "record_id"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    system: Mapped[str] = mapped_column(sa.String(MAX_SYSTEM))
    entity: Mapped[str] = mapped_column(sa.String(100))
    external_id: Mapped[str] = mapped_column(sa.String(MAX_EXTERNAL_ID))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    #: who linked them (the principal's name when they did)
    created_by: Mapped[str] = mapped_column(sa.String(200))


external_ids: sa.Table = ExternalId.__table__  # type: ignore[assignment]


# -- checking what callers send ----------------------------------------------------------

def check_system(system: Any, field: str = "system") -> str:
    """``system`` if it is a system's name (``erp``, ``dialer.cn``); else 400 saying why."""
    if not isinstance(system, str) or not system:
        raise _bad(field, "missing", "name the other system, e.g. erp")
    if len(system) > MAX_SYSTEM:
        raise _bad(field, "too_long", f"a system's name has at most {MAX_SYSTEM} characters", max=MAX_SYSTEM)
    if not SYSTEM_PATTERN.match(system):
        raise _bad(field, "bad_system", "a system's name is lower-case letters, digits, _, . and -, "
                   "starting with a letter or digit")
    return system


def check_external_id(value: Any, field: str = "external_id") -> str:
    """``value`` if it can be an external id: text of 1 to 200 characters without control
    characters, whose ``/``-separated parts are none of ``.`` and ``..`` (a URL carrying
    them would be rewritten on its way); a whole number is taken as its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise _bad(field, "missing", "give the id the record has in the other system (text)")
    if len(value) > MAX_EXTERNAL_ID:
        raise _bad(field, "too_long", f"an external id has at most {MAX_EXTERNAL_ID} characters",
                   max=MAX_EXTERNAL_ID)
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in value):
        raise _bad(field, "control_character", "an external id cannot hold control characters or line breaks")
    if value != value.strip():
        raise _bad(field, "surrounding_space", "an external id cannot begin or end with a space")
    if any(part in (".", "..") for part in value.split("/")):
        raise _bad(field, "path_segment", "an external id cannot have . or .. between slashes")
    return value


def _bad(field: str, code: str, message: str, **params: Any) -> BadRequest:
    entry = (error_entry(field, "too_long", message, **params) if code == "too_long"
             else error_entry(field, "bad_parameter", message, parameter=field))
    return BadRequest(f"{field}: {message}", errors=[entry])


# -- links, without permissions ----------------------------------------------------------

@contextmanager
def _transaction(db: sa.Connection | sa.Engine) -> Iterator[sa.Connection]:
    """A savepoint in ``db``'s transaction when it is a connection; else one of its own."""
    if isinstance(db, sa.Connection):
        with write_transaction(db.engine, join=db) as conn:
            yield conn
    else:
        with write_transaction(db) as conn:
            yield conn


def _reading(db: sa.Connection | sa.Engine):
    """The connection reads run on: the one given, else the write this thread has open on
    the engine (so a hook reads what its change wrote), else a reading one."""
    if isinstance(db, sa.Connection):
        return _Joined(db)
    joined = open_write(db)
    return _Joined(joined) if joined is not None else reading(db)


class _Joined:
    """A connection used as it is, whose transaction is its owner's to end."""

    def __init__(self, conn: sa.Connection):
        self.conn = conn

    def __enter__(self) -> sa.Connection:
        return self.conn

    def __exit__(self, *exc: Any) -> None:
        return None


def _audit_of(db: sa.Connection | sa.Engine, audit: AuditLog | None) -> AuditLog:
    return audit if audit is not None else AuditLog(db.engine if isinstance(db, sa.Connection) else db)


def _actor(actor: Principal | str) -> dict[str, Any]:
    return {"principal": actor} if isinstance(actor, Principal) else {"actor": actor}


def _actor_name(actor: Principal | str) -> str:
    return (actor.name if isinstance(actor, Principal) else str(actor))[:200]


def record_for(db: sa.Connection | sa.Engine, system: str, entity: str, external_id: Any) -> int | None:
    """The id of the record of ``entity`` linked to ``external_id`` in ``system``, or None."""
    system, external_id = check_system(system), check_external_id(external_id)
    t = external_ids.c
    with _reading(db) as conn:
        return conn.execute(sa.select(t.record_id).where(t.system == system, t.entity == entity,
                                                         t.external_id == external_id)).scalar()


def external_for(db: sa.Connection | sa.Engine, system: str, entity: str, record_id: int) -> str | None:
    """The id ``system`` knows record ``record_id`` of ``entity`` by, or None."""
    system = check_system(system)
    t = external_ids.c
    with _reading(db) as conn:
        return conn.execute(sa.select(t.external_id).where(t.system == system, t.entity == entity,
                                                           t.record_id == record_id)).scalar()


def links_of(db: sa.Connection | sa.Engine, entity: str, record_id: int) -> list[dict[str, Any]]:
    """Every link of one record, by system: ``{system, external_id, created_at, created_by}``."""
    t = external_ids.c
    query = (sa.select(t.system, t.external_id, t.created_at, t.created_by)
             .where(t.entity == entity, t.record_id == record_id).order_by(t.system))
    with _reading(db) as conn:
        return [{"system": row.system, "external_id": row.external_id, "created_at": timestamp(row.created_at),
                 "created_by": row.created_by} for row in conn.execute(query)]


def link(db: sa.Connection | sa.Engine, system: str, entity: str, external_id: Any, record_id: int,
         actor: Principal | str, *, audit: AuditLog | None = None) -> bool:
    """Link record ``record_id`` of ``entity`` to ``external_id`` in ``system``. Linking
    a pair that is already linked changes nothing (False); a new link is stored with an
    audit entry (True). A link that would clash with another one (the external id is
    another record's, or the record has another id in that system) is a Conflict (409)
    naming both."""
    system, external_id = check_system(system), check_external_id(external_id)
    t = external_ids.c
    with _transaction(db) as conn:
        _take_turn(conn, system, entity, external_id, record_id)
        rows = conn.execute(sa.select(t.external_id, t.record_id).where(
            t.system == system, t.entity == entity,
            sa.or_(t.external_id == external_id, t.record_id == record_id))).all()
        for row in rows:
            if row.external_id == external_id and row.record_id == record_id:
                return False
        for row in rows:
            if row.external_id == external_id:
                raise Conflict(
                    f"{system} id '{external_id}' is already linked to {entity} {row.record_id}; it cannot "
                    f"be linked to {entity} {record_id} too: unlink it first", code="external_id_taken",
                    params={"system": system, "entity": entity, "external_id": external_id,
                            "record_id": record_id, "linked_record_id": row.record_id})
            raise Conflict(
                f"{entity} {record_id} is already linked to {system} id '{row.external_id}'; it cannot be "
                f"linked to {system} id '{external_id}' too: unlink it first", code="record_already_linked",
                params={"system": system, "entity": entity, "external_id": external_id, "record_id": record_id,
                        "linked_external_id": row.external_id})
        try:
            conn.execute(external_ids.insert().values(system=system, entity=entity, external_id=external_id,
                                                      record_id=record_id, created_at=utcnow(),
                                                      created_by=_actor_name(actor)))
        except sa.exc.IntegrityError as clash:
            # a link made by work that took no turn (another version of Loom during an upgrade)
            raise Conflict(f"{system} id '{external_id}' or {entity} {record_id} was linked by another change "
                           "at the same moment; nothing was linked: look again", code="external_id_taken",
                           params={"system": system, "entity": entity, "external_id": external_id,
                                   "record_id": record_id}) from clash
        _audit_of(conn, audit).add(conn, "external_id.link", **_actor(actor), entity=entity, record_id=record_id,
                                   detail={"system": system, "external_id": external_id})
    return True


def unlink(db: sa.Connection | sa.Engine, system: str, entity: str, record_id: int, actor: Principal | str, *,
           audit: AuditLog | None = None) -> str | None:
    """Remove the link of record ``record_id`` of ``entity`` in ``system``; the external id
    it had (audited), or None when it had none."""
    system = check_system(system)
    t = external_ids.c
    with _transaction(db) as conn:
        external_id = conn.execute(external_ids.delete().where(
            t.system == system, t.entity == entity, t.record_id == record_id).returning(t.external_id)).scalar()
        if external_id is not None:
            _audit_of(conn, audit).add(conn, "external_id.unlink", **_actor(actor), entity=entity,
                                       record_id=record_id, detail={"system": system, "external_id": external_id})
    return external_id


def forget_record(conn: sa.Connection, entity: str, record_id: int, actor: Principal | str,
                  audit: AuditLog) -> None:
    """Remove every link of a record being deleted, in its delete's transaction, each with
    an audit entry saying so."""
    t = external_ids.c
    removed = conn.execute(external_ids.delete().where(t.entity == entity, t.record_id == record_id)
                           .returning(t.system, t.external_id)).all()
    for row in removed:
        audit.add(conn, "external_id.unlink", **_actor(actor), entity=entity, record_id=record_id,
                  detail={"system": row.system, "external_id": row.external_id, "reason": "record deleted"})


def _take_turn(conn: sa.Connection, system: str, entity: str, external_id: str,
               record_id: int | None = None) -> None:
    """On PostgreSQL, wait for any other transaction working on the same external id (and
    on the same record's id in ``system``) to end: transaction-level advisory locks, taken
    in one order so that two transactions never wait for each other. SQLite's writers
    take turns anyway."""
    if conn.dialect.name != "postgresql":
        return
    names = [f"external_id\0{system}\0{entity}\0{external_id}"]
    if record_id is not None:
        names.append(f"record\0{system}\0{entity}\0{record_id}")
    keys = sorted(int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "big", signed=True)
                  for n in names)
    for key in keys:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


# -- links, as a record service's principal -----------------------------------------------

def _service_transaction(service: Any):
    return write_transaction(service.context.engine, join=service.context.connection)


def upsert(service: Any, system: str, external_id: Any, values: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create or update the record of ``service``'s entity that ``external_id`` names in
    ``system``, as the service's principal, in one transaction: update the linked record
    with ``values`` when there is one, else create one and link it. Returns (the record as
    the principal may read it, whether it was created). A retried call finds the record
    the first one made; two at once make one record (see the module's docstring)."""
    system, external_id = check_system(system), check_external_id(external_id)
    entity = service.entity.name
    with _service_transaction(service) as conn:
        _take_turn(conn, system, entity, external_id)
        record_id = record_for(conn, system, entity, external_id)
        if record_id is not None:
            try:
                return service.update(record_id, values), False
            except NotFound:
                # outside what the principal may update: say so without naming the record
                raise NotFound(f"the {entity} linked to {system} id '{external_id}' is not one you may change"
                               ) from None
        record = service.create(values)
        link(conn, system, entity, external_id, record["id"], service.principal, audit=service.audit)
    return record, True


def record_links(service: Any, record_id: int) -> list[dict[str, Any]]:
    """The links of a record the service's principal may read (else the record's 404)."""
    service.require_readable(record_id)
    return links_of(service.context.connection or service.context.engine, service.entity.name, record_id)


def find_record(service: Any, system: str, external_id: Any, fields: list[str] | None = None) -> dict[str, Any]:
    """The record ``external_id`` names in ``system``, as the principal may read it. The
    same 404 whether no record is linked or the principal may not read the one that is."""
    system, external_id = check_system(system), check_external_id(external_id)
    service.require("read")
    record_id = record_for(service.context.connection or service.context.engine, system, service.entity.name,
                           external_id)
    missing = NotFound(f"no {service.entity.name} is linked to {system} id '{external_id}'")
    if record_id is None:
        raise missing
    try:
        return service.get(record_id, fields)
    except NotFound:
        raise missing from None


def link_record(service: Any, record_id: int, system: str, external_id: Any) -> bool:
    """Link a record the principal may update to ``external_id`` in ``system`` (see
    ``link``); a clash with a record the principal may not read does not name that record."""
    system, external_id = check_system(system), check_external_id(external_id)
    service.require("update", record_id)  # 403, audited; a read-only token too
    try:
        with _service_transaction(service) as conn:
            service._fetch_row(conn, record_id, action="update", lock=True)
            return link(conn, system, service.entity.name, external_id, record_id, service.principal,
                        audit=service.audit)
    except Conflict as clash:
        other = clash.params.get("linked_record_id")
        if other is None or _may_read(service, other):
            raise
        raise Conflict(f"{system} id '{external_id}' is already linked to another {service.entity.name}",
                       code="external_id_taken", params={"system": system, "entity": service.entity.name,
                                                         "external_id": external_id, "record_id": record_id}) from None


def unlink_record(service: Any, record_id: int, system: str) -> str | None:
    """Remove the link in ``system`` of a record the principal may update; the external
    id it had, or None when it had none."""
    system = check_system(system)
    service.require("update", record_id)  # 403, audited; a read-only token too
    with _service_transaction(service) as conn:
        service._fetch_row(conn, record_id, action="update", lock=True)
        return unlink(conn, system, service.entity.name, record_id, service.principal, audit=service.audit)


def _may_read(service: Any, record_id: int) -> bool:
    """Whether the principal may read the record, found without auditing a refusal."""
    if not service.allowed("read"):
        return False
    try:
        with service._reading() as conn:
            service._fetch_row(conn, record_id)
    except NotFound:
        return False
    return True


__all__ = ["ExternalId", "check_external_id", "check_system", "external_for", "external_ids", "find_record",
           "forget_record", "link", "link_record", "links_of", "record_for", "record_links", "unlink",
           "unlink_record", "upsert"]
