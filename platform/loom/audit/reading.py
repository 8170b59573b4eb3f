"""Reading the audit log: filtered pages for auditors, streamed exports, and the history
of one record as its readers may see it."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from loom.audit.log import OUTCOMES, timestamp
from loom.audit.models import audit_log
from loom.db import newest_first, reading
from loom.errors import BadRequest, error_entry

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTERS = ("actor", "entity", "record_id", "action", "outcome", "since", "until", "ip")
#: the columns of an entry, in the order the API and exports show them
COLUMNS = ("id", "at", "actor", "actor_id", "ip", "user_agent", "request_id", "action", "entity", "record_id",
           "changes", "detail", "rows", "outcome", "hash", "prev_hash")


def entry_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry as the API shows it: ``id`` is its place in the chain."""
    return {"id": row["seq"], "at": timestamp(row["at"]), "actor": row["actor"], "actor_id": row["actor_id"],
            "ip": row["ip"], "user_agent": row["user_agent"], "request_id": row["request_id"],
            "action": row["action"], "entity": row["entity"], "record_id": row["record_id"],
            "changes": json.loads(row["changes"]) if row["changes"] else {},
            "detail": json.loads(row["detail"]) if row["detail"] else {},
            "rows": row["rows"], "outcome": row["outcome"], "hash": row["hash"], "prev_hash": row["prev_hash"]}


def _bad(name: str, message: str) -> BadRequest:
    return BadRequest(f"{name}: {message}", errors=[error_entry(name, "bad_parameter", message, parameter=name)])


def _when(name: str, raw: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(name, "expected a date (2026-11-23) or a time (2026-11-23T08:30:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _whole(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, "expected a whole number") from None
    if not 0 <= value < 2**63:
        raise _bad(name, "out of range")
    return value


@dataclass
class AuditQuery:
    conditions: list[sa.ColumnElement[bool]]
    limit: int = DEFAULT_LIMIT
    #: entries older than this seq (the cursor)
    before: int | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> AuditQuery:
        """Filters from query arguments; every bad one is named in a 400."""
        unknown = [k for k in args if k not in (*FILTERS, "cursor", "limit", "format")]
        if unknown:
            raise _bad(unknown[0], f"unknown parameter; use {', '.join(FILTERS)}, cursor or limit")
        t = audit_log.c
        conditions: list[sa.ColumnElement[bool]] = []
        for name in ("actor", "entity", "ip"):
            if args.get(name):
                conditions.append(t[name] == args[name])
        if args.get("action"):
            action = args["action"]
            conditions.append(t.action.startswith(action[:-1], autoescape=True) if action.endswith("*")
                              else t.action == action)
        if args.get("outcome"):
            if args["outcome"] not in OUTCOMES:
                raise _bad("outcome", f"expected one of {', '.join(OUTCOMES)}")
            conditions.append(t.outcome == args["outcome"])
        if args.get("record_id"):
            conditions.append(t.record_id == _whole("record_id", args["record_id"]))
        if args.get("since"):
            conditions.append(t.at >= _when("since", args["since"]))
        if args.get("until"):
            conditions.append(t.at < _when("until", args["until"]))
        limit = _whole("limit", args["limit"]) if args.get("limit") else DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise _bad("limit", f"between 1 and {MAX_LIMIT}")
        before = _whole("cursor", args["cursor"]) if args.get("cursor") else None
        return cls(conditions, limit, before)


def search(engine: sa.Engine, query: AuditQuery) -> tuple[list[dict[str, Any]], str | None]:
    """A page of entries, newest first, and the cursor of the next (older) page."""
    rows, cursor = newest_first(engine, audit_log, audit_log.c.seq, query.conditions, query.before, query.limit)
    return [entry_json(r) for r in rows], cursor


def get(engine: sa.Engine, seq: int) -> dict[str, Any] | None:
    with reading(engine) as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).mappings().first()
    return None if row is None else entry_json(row)


def pin(engine: sa.Engine, query: AuditQuery) -> int:
    """Limit ``query`` to the entries there are now (an export's own entry, written next,
    is not among them) and count how many match."""
    with reading(engine) as conn:
        newest = conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar() or 0
        query.before = min(query.before, newest + 1) if query.before is not None else newest + 1
        return conn.execute(sa.select(sa.func.count()).select_from(audit_log)
                            .where(*query.conditions, audit_log.c.seq < query.before)).scalar_one()


def stream(engine: sa.Engine, query: AuditQuery, batch: int = 2000) -> Iterator[dict[str, Any]]:
    """Every matching entry, oldest first, fetched in keyset pages: memory stays flat
    however many there are, and no transaction is held open while the client reads."""
    after = 0
    while True:
        stmt = (sa.select(audit_log).where(*query.conditions, audit_log.c.seq > after)
                .order_by(audit_log.c.seq).limit(batch))
        if query.before is not None:
            stmt = stmt.where(audit_log.c.seq < query.before)
        with reading(engine) as conn:
            rows = conn.execute(stmt).mappings().all()
        for row in rows:
            yield entry_json(row)
        if len(rows) < batch:
            return
        after = rows[-1]["seq"]


def history_query(entity: str, record_id: Any, names: Sequence[Any] = ()) -> sa.Select:
    """The changes of one record, oldest first (``record_id`` may be a bind parameter).
    ``names``: the entity's names and when it had them (``loom.schema.names.NameSpan``),
    so that its history follows it through renames and never includes what another entity
    wrote under one of them."""
    t = audit_log.c
    entity_is = t.entity == entity
    if names:
        entity_is = sa.or_(*(sa.and_(t.entity == span.name,
                                     *([t.at >= span.since] if span.since is not None else []),
                                     *([t.at < span.until] if span.until is not None else []))
                             for span in names))
    return (sa.select(audit_log)
            .where(entity_is, t.record_id == record_id, t.action.startswith("record."), t.outcome == "ok",
                   t.action != "record.read", t.action != "record.export")
            .order_by(t.seq))
