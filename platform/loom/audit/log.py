"""Writing the audit log.

Every operation becomes one entry, written in the same transaction as the operation
itself: entries are queued on the connection and written as the transaction's last
statements, so no change commits without its entry and no entry survives a rollback.
Refusals are written in a transaction of their own (``add_alone``), so they are logged
although the operation was not done.

Each entry carries the SHA-256 of its canonical content together with the previous
entry's hash. Writers take the chain head's row lock (on SQLite the database write lock
they already hold) just before they write, so entries from any number of processes form
one chain without forks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any

import orjson
import sqlalchemy as sa

from loom.audit.models import audit_head, audit_log
from loom.db import after_end, before_commit, insert_many, utcnow, write_transaction
from loom.events import emit
from loom.metadata.model import Alert
from loom.principal import Principal

log = logging.getLogger("loom.audit")

GENESIS = "0" * 64
#: how a hidden value is written in the log
MASK = "***"
OUTCOMES = ("ok", "denied", "error")
#: the columns, in order, that an entry's hash covers
HASHED = ("seq", "at", "actor", "actor_id", "ip", "user_agent", "request_id", "action", "entity", "record_id",
          "changes", "detail", "rows", "outcome", "prev_hash")


# Built once: statements made anew for every entry cost more than the SQL they run.
_READ_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash, audit_head.c.at).where(audit_head.c.id == 1)
_LOCK_HEAD = _READ_HEAD.with_for_update()
_INSERT = audit_log.insert()
_MOVE_HEAD = audit_head.update().where(audit_head.c.id == 1).values(
    seq=sa.bindparam("new_seq"), hash=sa.bindparam("new_hash"), at=sa.bindparam("new_at"))


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} cannot be written to the audit log")


#: characters no database text column takes: NUL (PostgreSQL), and UTF-16 surrogates with no
#: partner, which cannot be encoded as UTF-8 at all
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: the widths of the entry's bounded columns (``loom.audit.models``)
WIDTHS = {"actor": 200, "ip": 64, "user_agent": 400, "request_id": 64, "action": 64, "entity": 100}
#: longest text kept of one string in an entry's ``detail`` (a filter, a reason, a name)
DETAIL_TEXT = 1000


def clean_text(value: str | None, width: int | None = None) -> str | None:
    """``value`` as it can be stored: unstorable characters replaced by U+FFFD, cut to
    ``width`` characters. Whatever a request sends, its entry can be written."""
    if value is None:
        return None
    value = _UNSTORABLE.sub("\ufffd", str(value))
    if width is not None and len(value) > width:
        value = value[:width - 1] + "\u2026"
    return value


def _clean_detail(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value, DETAIL_TEXT)
    if isinstance(value, Mapping):
        return {clean_text(str(k), DETAIL_TEXT): _clean_detail(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean_detail(v) for v in value]
    return value


def canonical_json(value: Any) -> str | None:
    """The one text form of a JSON value: sorted keys, no spaces, UTF-8 kept (a surrogate
    without its partner, which UTF-8 cannot hold, becomes U+FFFD).

    The form is the standard library's (the chain's hashes cover it); orjson writes the
    same bytes several times faster for the values it writes exactly alike, which are
    nearly all: those ``_orjson_alike`` finds (no float: orjson writes 1e-05 as 0.00001)
    and orjson then takes (no lone surrogate, no integer beyond 64 bits). Anything else
    is written by the standard library, as before."""
    if value is None:
        return None
    if _orjson_alike(value):
        try:
            return orjson.dumps(value, default=_default, option=_ORJSON_CANONICAL).decode()
        except orjson.JSONEncodeError:
            pass
    return _UNSTORABLE.sub("\ufffd", _canonical(value))


#: built once: ``json.dumps`` with these options makes a new encoder for every entry
_canonical = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default).encode
#: times and subclasses go to ``_default`` (or are refused by it), as with the standard library
_ORJSON_CANONICAL = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
                     | orjson.OPT_PASSTHROUGH_DATACLASS)
#: values both write alike: orjson itself, or through ``_default``
_ALIKE_ATOMS = frozenset({str, int, bool, type(None), decimal.Decimal, dt.datetime, dt.date, dt.time})
_ALIKE_LISTS = frozenset({list, tuple, set, frozenset})
_ALIKE = _ALIKE_ATOMS | _ALIKE_LISTS | {dict}


def _orjson_alike(value: Any) -> bool:
    """Whether orjson writes ``value`` as the standard library does: built of exactly the
    types both write alike (a subclass, a float, a UUID or an enum may differ), every
    dictionary keyed by strings. Walked without recursion, however deep it is, and a
    level at a time (the types of a record's changes, ``{field: [old, new]}``, are two
    sets made in C): a walk value by value in Python costs more than the text it saves."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not _STR_KEYS.issuperset(map(type, item)):
                return False
            children: Any = item.values()
        elif kind in _ALIKE_LISTS:
            children = item
        elif kind in _ALIKE_ATOMS:
            continue
        else:
            return False
        kinds = set(map(type, children))
        if kinds <= _ALIKE_ATOMS:
            continue
        if not kinds <= _ALIKE:
            return False
        if kinds <= _ALIKE_LISTS and _ALIKE_ATOMS.issuperset(map(type, chain.from_iterable(children))):
            continue
        stack.extend(children)
    return True


_STR_KEYS = frozenset({str})


def timestamp(value: dt.datetime) -> str:
    """An entry time as hashed and shown: UTC, milliseconds, ``Z``."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def entry_hash(row: Mapping[str, Any], at_text: str | None = None) -> str:
    """The hash of a stored entry: over its hashed columns, the time as ``timestamp``
    (``at_text``, when the caller already has it: the entries of one write share a time)."""
    values = [row[c] for c in HASHED]
    values[1] = at_text or timestamp(values[1])
    return hashlib.sha256(_compact_bytes(values)).hexdigest()


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_HASHED_ATOMS = frozenset({str, int, type(None)})


def _compact_bytes(values: list[Any]) -> bytes:
    """The hashed columns as compact JSON in UTF-8: by orjson, which writes strings,
    integers and None exactly as the standard library does, when the values are just
    those (always, for an entry as stored); else by the standard library."""
    if all(type(v) in _HASHED_ATOMS for v in values):
        try:
            return orjson.dumps(values)
        except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits
            pass
    return _compact(values).encode()


def mask_secrets(values: Mapping[str, Any], secret: Iterable[str]) -> dict[str, Any]:
    secret = set(secret)
    return {k: (MASK if k in secret and v is not None else v) for k, v in values.items()}


@dataclasses.dataclass
class Entry:
    """One operation, before it has its place in the chain."""

    action: str
    actor: str
    actor_id: int | None = None
    entity: str | None = None
    record_id: int | None = None
    #: {field: [old, new]}
    changes: Mapping[str, Any] | None = None
    detail: Mapping[str, Any] | None = None
    rows: int | None = None
    outcome: str = "ok"
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


def request_context() -> dict[str, str | None]:
    """Address, user agent and request id of the HTTP request being served, if any."""
    from flask import g, has_request_context, request

    if not has_request_context():
        return {"ip": None, "user_agent": None, "request_id": None}
    return {"ip": request.remote_addr, "user_agent": request.user_agent.string or None,
            "request_id": g.get("request_id")}


class AuditLog:
    """The writer of one database's audit log. ``alerts`` gives the alert rules in force
    (the live metadata's); without it no alerts are checked."""

    def __init__(self, engine: sa.Engine, alerts: Callable[[], Mapping[str, Alert]] | None = None):
        self.engine = engine
        self.alerts = alerts or (lambda: {})
        self._months: set[tuple[int, int]] = set()
        self._postgres = engine.dialect.name == "postgresql"

    # -- adding entries -------------------------------------------------------------

    def entry(self, action: str, *, principal: Principal | None = None, actor: str | None = None,
              actor_id: int | None = None, **values: Any) -> Entry:
        if principal is not None:
            actor, actor_id = principal.name, principal.user_id
        if not actor:
            raise ValueError("an audit entry needs an actor")
        context = request_context()
        for key, value in context.items():
            values.setdefault(key, value)
        # every text from a request is cleaned and bounded here, the one place entries are made,
        # so that no header, name or filter can make the entry (and so the operation) fail
        for key in ("ip", "user_agent", "request_id", "entity"):
            values[key] = clean_text(values.get(key), WIDTHS[key])
        if values.get("detail") is not None:
            values["detail"] = _clean_detail(values["detail"])
        record_id = values.get("record_id")
        if record_id is not None and not (isinstance(record_id, int) and -2**63 <= record_id < 2**63):
            # an id no record can have (a URL's digits): kept in the detail, where it fits
            values["record_id"] = None
            values["detail"] = {**(values.get("detail") or {}), "record_id": clean_text(str(record_id), 40)}
        return Entry(action=clean_text(action, WIDTHS["action"]), actor=clean_text(actor, WIDTHS["actor"]),
                     actor_id=actor_id, **values)

    def entry_maker(self, action: str, *, principal: Principal, entity: str) -> Callable[[int, Mapping[str, Any]], Entry]:
        """A maker of the entries of one operation on many records (a bulk create of 1,000):
        who acts, the request and the entity are taken and cleaned once, so each entry
        costs only its own record id and changes."""
        template = vars(self.entry(action, principal=principal, entity=entity))

        def make(record_id: int, changes: Mapping[str, Any]) -> Entry:
            if not (isinstance(record_id, int) and -2**63 <= record_id < 2**63):
                return self.entry(action, principal=principal, entity=entity, record_id=record_id, changes=changes)
            # what ``dataclasses.replace`` makes, at a fraction of its cost
            return Entry(**{**template, "record_id": record_id, "changes": changes})
        return make

    def add(self, conn: sa.Connection, action: str, **values: Any) -> None:
        """Log an operation done in ``conn``'s transaction: written just before it commits."""
        self.add_entry(conn, self.entry(action, **values))

    def add_entry(self, conn: sa.Connection, entry: Entry) -> None:
        pending = before_commit(conn)
        if pending is None:
            self._write(conn, [entry])
            return
        if "audit" not in pending:
            pending["audit"] = _Pending(self)
        pending["audit"].entries.append(entry)

    def add_alone(self, action: str, *, joined: sa.Connection | None = None, **values: Any) -> None:
        """Log in a transaction of its own: for refusals and reads, which change nothing.
        Met inside a write this thread has open (a plugin's nested write refused), the entry
        is written once that write has ended, so that its rollback does not take the entry
        with it; so is one met by work ``joined`` to a caller's transaction."""
        entry = self.entry(action, **values)

        def write() -> None:
            try:
                with write_transaction(self.engine) as conn:
                    self.add_entry(conn, entry)
            except sa.exc.DBAPIError:
                log.exception("could not write the audit entry for %s by %s", entry.action, entry.actor)
                raise

        if not after_end(self.engine, write, joined):
            write()

    # -- writing --------------------------------------------------------------------

    def _write(self, conn: sa.Connection, entries: list[Entry]) -> None:
        now = utcnow()
        if self._postgres:
            self._ensure_partitions(now)
        head = conn.execute(_LOCK_HEAD if self._postgres else _READ_HEAD).one()
        seq, prev_hash = head.seq, head.hash
        last_at = head.at
        if last_at is not None and last_at.tzinfo is None:
            last_at = last_at.replace(tzinfo=dt.UTC)
        # times never go backwards along the chain, so ordering by seq is ordering by time
        at = now.replace(microsecond=now.microsecond // 1000 * 1000)
        if last_at is not None and at < last_at:
            at = last_at
        rows = []
        at_text = timestamp(at)
        for entry in entries:
            seq += 1
            row = self._row(entry, seq, at, prev_hash, at_text)
            prev_hash = row["hash"]
            rows.append(row)
        # one statement for the whole transaction's entries, however many records it wrote
        insert_many(conn, audit_log, rows, _INSERT)
        rules = [rule for rule in self.alerts().values() if any(rule.matches(e.action, e.entity, e.outcome)
                                                               for e in entries)]
        if rules:
            alerts = self._check_alerts(conn, rules, entries, at)
            for entry in alerts:
                seq += 1
                row = self._row(entry, seq, at, prev_hash)
                prev_hash = row["hash"]
                conn.execute(_INSERT, [row])
                emit(conn, topic="audit.alert", actor=entry.actor, payload={**entry.detail, "seq": seq})
        conn.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": prev_hash, "new_at": at})

    @staticmethod
    def _row(entry: Entry, seq: int, at: dt.datetime, prev_hash: str, at_text: str | None = None) -> dict[str, Any]:
        """The stored form of ``entry`` at ``seq``, hashed; ``at_text`` is ``timestamp(at)``,
        given when many entries share one time."""
        if entry.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
        row = {"seq": seq, "at": at, "actor": entry.actor, "actor_id": entry.actor_id, "ip": entry.ip,
               "user_agent": entry.user_agent, "request_id": entry.request_id, "action": entry.action,
               "entity": entry.entity, "record_id": entry.record_id,
               "changes": canonical_json(entry.changes), "detail": canonical_json(entry.detail),
               "rows": entry.rows, "outcome": entry.outcome, "prev_hash": prev_hash}
        row["hash"] = entry_hash(row, at_text)
        return row

    def _check_alerts(self, conn: sa.Connection, rules: list[Alert], entries: list[Entry],
                      at: dt.datetime) -> list[Entry]:
        """Alert entries for the rules whose measure went over the threshold with these entries."""
        raised = []
        for rule in rules:
            keys = {self._key(rule, e) for e in entries if rule.matches(e.action, e.entity, e.outcome)}
            for key in keys:
                if key is None:
                    continue
                added = sum((e.rows or 0) if rule.measure == "rows" else 1 for e in entries
                            if rule.matches(e.action, e.entity, e.outcome) and self._key(rule, e) == key)
                total = self._measure(conn, rule, key, at)
                if total > rule.threshold >= total - added:
                    raised.append(Entry(
                        action="alert", actor=f"system:alert:{rule.name}", entity=rule.entity,
                        record_id=key[1] if rule.per == "record" else None, outcome="ok",
                        detail={"alert": rule.name, "severity": rule.severity, "per": rule.per,
                                "who": key if rule.per != "record" else None, "measure": rule.measure,
                                "total": total, "threshold": rule.threshold, "window_seconds": rule.window_seconds,
                                "label": rule.title()}))
        return raised

    @staticmethod
    def _key(rule: Alert, entry: Entry) -> Any:
        if rule.per == "ip":
            return entry.ip
        if rule.per == "record":
            return (entry.entity, entry.record_id) if entry.record_id is not None else None
        return entry.actor

    @staticmethod
    def _measure(conn: sa.Connection, rule: Alert, key: Any, at: dt.datetime) -> int:
        t = audit_log.c
        measure = sa.func.coalesce(sa.func.sum(t.rows), 0) if rule.measure == "rows" else sa.func.count()
        where = [t.at > at - dt.timedelta(seconds=rule.window_seconds)]
        where.append(t.action == rule.action if rule.action is not None else t.action != "alert")
        if rule.entity is not None:
            where.append(t.entity == rule.entity)
        if rule.outcome is not None:
            where.append(t.outcome == rule.outcome)
        if rule.per == "ip":
            where.append(t.ip == key)
        elif rule.per == "record":
            where += [t.entity == key[0], t.record_id == key[1]]
        else:
            where.append(t.actor == key)
        return int(conn.execute(sa.select(measure).where(*where)).scalar_one())

    # -- PostgreSQL partitions ------------------------------------------------------

    def _ensure_partitions(self, now: dt.datetime) -> None:
        """This month's and next month's partitions exist (created once per process)."""
        month = (now.year, now.month)
        if month in self._months:
            return
        ensure_partitions(self.engine, now, months=2)
        self._months.add(month)


class _Pending:
    """Entries queued on a transaction, written when it is about to commit."""

    def __init__(self, log: AuditLog):
        self.log = log
        self.entries: list[Entry] = []

    def __call__(self, conn: sa.Connection) -> None:
        self.log._write(conn, self.entries)


def month_start(year: int, month: int) -> dt.date:
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    return dt.date(year, month, 1)


def partition_name(year: int, month: int) -> str:
    return f"loom_audit_y{year:04d}m{month:02d}"


def partitions(conn: sa.Connection) -> list[str]:
    """The monthly (and default) partitions of the audit log in the current schema (PostgreSQL)."""
    return list(conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'loom_audit' "
        "AND p.relnamespace = to_regnamespace(current_schema())::oid ORDER BY c.relname")).scalars())


def ensure_partitions(engine: sa.Engine, start: dt.datetime | dt.date, months: int = 2) -> list[str]:
    """Create the monthly partitions of the audit log from ``start``'s month on, as far
    as they are missing (PostgreSQL). A partition that cannot be made now (its rows are
    already in the default partition, or a lock is not granted within seconds) is left
    for later; entries then go to the default partition and are still in the chain."""
    created = []
    with engine.connect() as conn:
        existing = set(partitions(conn))
    for offset in range(months):
        lower = month_start(start.year, start.month + offset)
        upper = month_start(lower.year, lower.month + 1)
        name = partition_name(lower.year, lower.month)
        if name in existing:
            continue
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF loom_audit "
                                     f"FOR VALUES FROM ('{lower.isoformat()}') TO ('{upper.isoformat()}')")
                conn.exec_driver_sql(f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name} "
                                     "FOR EACH STATEMENT EXECUTE FUNCTION loom_audit_append_only()")
            created.append(name)
        except sa.exc.DBAPIError as exc:
            log.warning("audit partition %s not created now: %s", name, exc.orig)
    return created
