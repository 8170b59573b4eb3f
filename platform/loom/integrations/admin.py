"""Looking after deliveries: find them, read one with its attempts, retry those that
failed, and replay a time range of finished ones. The API (``loom.integrations.api``) and
the screens call these; who may do so is ``may_manage_deliveries``.

Deliveries hold the record data a rule's mapping is rendered from and the errors remote
systems answered, so only a superuser (or a system principal) or a role with the
``integrations`` admin right sees or touches them.

Retry. A dead delivery, or a pending one that has already failed, goes back to
``pending``, due now, with a fresh round of attempts: ``max_attempts`` becomes the
attempts made so far plus its rule's ``retry.max_attempts`` (8 when the rule is no longer
in the metadata). Its attempts so far stay counted and recorded. A delivery that is
running, succeeded, or pending without a failure yet is left as it is and reported as
skipped.

Replay. A delivery that succeeded or died, created in a time range, is delivered again
as a new delivery: same rule, action, context, principal and depth, with the idempotency
key ``<original key>:replay:<n>`` (n counts the replays of that original), so the other
end sees a new request rather than a retry it may ignore. At most ``MAX_REPLAY``
deliveries are replayed by one call; a larger range is refused, to be split.

Every retry and replay call writes one audit entry, in the transaction of its change.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from loom.audit.log import timestamp
from loom.db import newest_first, reading, utcnow, write_transaction
from loom.errors import BadRequest, NotFound, ValidationError, error_entry
from loom.integrations.context import wake_workers
from loom.integrations.models import STATUSES, attempts, deliveries
from loom.permissions import live_policy
from loom.principal import Principal

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
#: the most deliveries one retry call names
MAX_RETRY = 1000
#: the most deliveries one replay call re-delivers
MAX_REPLAY = 10_000
#: attempts a retried or replayed delivery gets when its rule is no longer in the metadata
DEFAULT_ROUND = 8
#: the list's status filter: the stored statuses, and ``failed`` (pending after a failure)
STATUS_FILTERS = (*STATUSES, "failed")
#: what a list can be filtered by, as query parameters
FILTERS = ("status", "rule", "plugin", "action", "entity", "record_id", "since", "until")
#: filters a replay can narrow its range by
REPLAY_FILTERS = ("rule", "plugin", "action", "entity", "record_id")
#: the statuses a replay re-delivers
REPLAYABLE = ("succeeded", "dead")

_REPLAY_SUFFIX = re.compile(r":replay:\d+$")
_BIGGEST_ID = 2**63


def may_manage_deliveries(principal: Principal | None) -> bool:
    """Whether ``principal`` may see deliveries and retry or replay them: a superuser, a
    system principal, or a role with ``admin: [integrations]``."""
    if principal is None:
        return False
    from flask import current_app

    return live_policy(current_app.extensions["loom"].metadata.live()).grants_admin(principal, "integrations")


# -- reading ---------------------------------------------------------------------------------

def _bad(name: str, message: str) -> BadRequest:
    return BadRequest(f"{name}: {message}", errors=[error_entry(name, "bad_parameter", message, parameter=name)])


def parse_time(name: str, raw: Any) -> dt.datetime:
    """A date (midnight UTC) or a time with or without an offset (UTC when none), else a
    400 naming ``name``."""
    if isinstance(raw, dt.datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=dt.UTC)
    if not isinstance(raw, str):
        raise _bad(name, "expected a date (2026-11-23) or a time (2026-11-23T08:30:00Z)")
    try:
        value = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(name, "expected a date (2026-11-23) or a time (2026-11-23T08:30:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_whole(name: str, raw: Any) -> int:
    """A whole number from 0 below 2^63 (text of digits or a JSON number), else a 400."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise _bad(name, "expected a whole number")
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, "expected a whole number") from None
    if not 0 <= value < _BIGGEST_ID:
        raise _bad(name, "out of range")
    return value


def _text(name: str, raw: Any) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 300:
        raise _bad(name, "expected a name of 1 to 300 characters")
    return raw


@dataclass
class DeliveryQuery:
    """What a list of deliveries is filtered by, parsed and checked."""

    status: str | None = None
    rule: str | None = None
    plugin: str | None = None
    action: str | None = None
    entity: str | None = None
    record_id: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    limit: int = DEFAULT_LIMIT
    #: deliveries older than this id (the cursor)
    before: int | None = None
    #: the filters as given, for links that keep them
    given: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, args: Mapping[str, Any], *, allowed: Iterable[str] = (*FILTERS, "limit", "cursor")) -> DeliveryQuery:
        """Filters from query arguments (empty ones ignored); every bad one is a 400
        naming it."""
        allowed = tuple(allowed)
        unknown = [k for k in args if k not in allowed]
        if unknown:
            raise _bad(unknown[0], f"unknown parameter; use {', '.join(allowed)}")
        values = {k: v for k, v in args.items() if v not in (None, "")}
        query = cls(given={k: str(v) for k, v in values.items() if k in FILTERS})
        if "status" in values:
            if values["status"] not in STATUS_FILTERS:
                raise _bad("status", f"expected one of {', '.join(STATUS_FILTERS)}")
            query.status = values["status"]
        for name in ("rule", "plugin", "action", "entity"):
            if name in values:
                setattr(query, name, _text(name, values[name]))
        if "record_id" in values:
            query.record_id = parse_whole("record_id", values["record_id"])
        if "since" in values:
            query.since = parse_time("since", values["since"])
        if "until" in values:
            query.until = parse_time("until", values["until"])
        if "limit" in values:
            query.limit = parse_whole("limit", values["limit"])
            if not 1 <= query.limit <= MAX_LIMIT:
                raise _bad("limit", f"between 1 and {MAX_LIMIT}")
        if "cursor" in values:
            query.before = parse_whole("cursor", values["cursor"])
        return query

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        t = deliveries.c
        found: list[sa.ColumnElement[bool]] = []
        if self.status == "failed":
            found += [t.status == "pending", t.attempts > 0]
        elif self.status is not None:
            found.append(t.status == self.status)
        for name in ("rule", "plugin", "action", "entity"):
            if getattr(self, name) is not None:
                found.append(t[name] == getattr(self, name))
        if self.record_id is not None:
            found.append(t.record_id == self.record_id)
        if self.since is not None:
            found.append(t.created_at >= self.since)
        if self.until is not None:
            found.append(t.created_at < self.until)
        return found


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else timestamp(value)


def delivery_json(row: Mapping[str, Any], *, context: bool = False) -> dict[str, Any]:
    """A delivery as the API shows it; its ``context`` (record data) only when asked for."""
    data = {
        "id": row["id"], "created_at": _when(row["created_at"]), "rule": row["rule"], "trigger": row["trigger"],
        "action": row["action"], "plugin": row["plugin"], "entity": row["entity"], "record_id": row["record_id"],
        "run_as": row["run_as"], "depth": row["depth"], "idempotency_key": row["idempotency_key"],
        "status": row["status"], "failed": row["status"] == "pending" and row["attempts"] > 0,
        "attempts": row["attempts"], "max_attempts": row["max_attempts"], "backoff": row["backoff"],
        "backoff_seconds": row["backoff_seconds"], "available_at": _when(row["available_at"]),
        "lease_owner": row["lease_owner"], "lease_until": _when(row["lease_until"]),
        "last_error": row["last_error"], "finished_at": _when(row["finished_at"]),
    }
    if context:
        data["context"] = row["context"]
        data["result"] = row["result"]
    return data


def attempt_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"attempt": row["attempt"], "worker": row["worker"], "started_at": _when(row["started_at"]),
            "finished_at": _when(row["finished_at"]), "outcome": row["outcome"], "error": row["error"],
            "duration_ms": row["duration_ms"]}


def list_deliveries(engine: sa.Engine, query: DeliveryQuery) -> tuple[list[dict[str, Any]], str | None]:
    """A page of deliveries, newest first, and the cursor of the next (older) page."""
    rows, cursor = newest_first(engine, deliveries, deliveries.c.id, query.conditions(), query.before, query.limit)
    return [delivery_json(r) for r in rows], cursor


def delivery(engine: sa.Engine, delivery_id: int) -> dict[str, Any]:
    """One delivery with its context, result and attempts (first first); 404 if none."""
    if not 0 < delivery_id < _BIGGEST_ID:
        raise _missing(delivery_id)
    with reading(engine) as conn:
        row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).mappings().first()
        if row is None:
            raise _missing(delivery_id)
        tries = conn.execute(sa.select(attempts).where(attempts.c.delivery_id == delivery_id)
                             .order_by(attempts.c.attempt, attempts.c.id)).mappings().all()
    return {**delivery_json(row, context=True), "attempts_made": [attempt_json(a) for a in tries]}


def record_deliveries(engine: sa.Engine, entity: str, record_id: int, *, limit: int = 20
                      ) -> tuple[list[dict[str, Any]], bool]:
    """The newest deliveries made for one record, and whether there are more."""
    found, cursor = list_deliveries(engine, DeliveryQuery(entity=entity, record_id=record_id, limit=limit))
    return found, cursor is not None


def _missing(delivery_id: int) -> NotFound:
    return NotFound(f"there is no delivery {delivery_id}", code="no_such_delivery", params={"id": delivery_id})


# -- retry -----------------------------------------------------------------------------------

@dataclass
class RetryResult:
    #: the ids put back to pending
    retried: list[int]
    #: (id, status) of those left as they were
    skipped: list[tuple[int, str]]

    def as_dict(self) -> dict[str, Any]:
        return {"retried": self.retried, "skipped": [{"id": i, "status": s} for i, s in self.skipped]}


def _round(budgets: Mapping[str, int] | None, rule: str) -> int:
    return (budgets or {}).get(rule) or DEFAULT_ROUND


def parse_ids(raw: Any, name: str = "ids") -> list[int]:
    """A list of 1 to ``MAX_RETRY`` delivery ids, each named once, else a 400."""
    if not isinstance(raw, list) or not raw:
        raise _bad(name, "expected a list of delivery ids")
    if len(raw) > MAX_RETRY:
        raise _bad(name, f"at most {MAX_RETRY} ids at once")
    ids = []
    for value in raw:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < _BIGGEST_ID:
            raise _bad(name, "expected a list of delivery ids (whole numbers)")
        if value not in ids:
            ids.append(value)
    return ids


def retry(engine: sa.Engine, audit, ids: list[int], *, principal: Principal,
          budgets: Mapping[str, int] | None = None) -> RetryResult:
    """Put the dead deliveries among ``ids``, and the pending ones that failed, back to
    pending, due now, each with a fresh round of its rule's ``max_attempts`` (``budgets``:
    rule name -> max_attempts). An id of no delivery is a 404 and nothing changes."""
    t = deliveries.c
    now = utcnow()
    result = RetryResult([], [])
    with write_transaction(engine) as conn:
        rows = {r["id"]: r for r in conn.execute(
            sa.select(t.id, t.rule, t.status, t.attempts).where(t.id.in_(ids))).mappings()}
        absent = [i for i in ids if i not in rows]
        if absent:
            raise _missing(absent[0])
        for delivery_id in ids:
            row = rows[delivery_id]
            retriable = row["status"] == "dead" or (row["status"] == "pending" and row["attempts"] > 0)
            changed = retriable and conn.execute(
                deliveries.update()
                .where(t.id == delivery_id, t.status == row["status"], t.attempts == row["attempts"])
                .values(status="pending", available_at=now, finished_at=None, lease_owner=None, lease_until=None,
                        max_attempts=row["attempts"] + _round(budgets, row["rule"]))).rowcount == 1
            if changed:
                result.retried.append(delivery_id)
            else:
                # a worker may have taken it since it was read: say what it is now
                status = row["status"] if not retriable else conn.execute(
                    sa.select(t.status).where(t.id == delivery_id)).scalar_one()
                result.skipped.append((delivery_id, status))
        audit.add(conn, "delivery.retry", principal=principal, rows=len(result.retried),
                  detail={"retried": result.retried, "skipped": [i for i, _ in result.skipped]})
    if result.retried:
        wake_workers()      # this process's waiting workers look at once, not at their next poll
    return result


# -- replay ----------------------------------------------------------------------------------

@dataclass
class ReplayRange:
    """Finished deliveries created from ``since`` to before ``until``, narrowed by filters."""

    since: dt.datetime
    until: dt.datetime
    filters: DeliveryQuery

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> ReplayRange:
        """From a JSON body or a form: ``since`` and ``until`` are required, the filters
        of ``REPLAY_FILTERS`` optional; every bad member is a 400 naming it."""
        for name in ("since", "until"):
            if values.get(name) in (None, ""):
                raise _bad(name, "required: the replay covers deliveries created from since to before until")
        filters = DeliveryQuery.parse({k: v for k, v in values.items() if k not in ("since", "until")},
                                      allowed=REPLAY_FILTERS)
        since, until = parse_time("since", values["since"]), parse_time("until", values["until"])
        if until <= since:
            raise _bad("until", "must be later than since")
        return cls(since, until, filters)

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        t = deliveries.c
        return [*self.filters.conditions(), t.created_at >= self.since, t.created_at < self.until,
                t.status.in_(REPLAYABLE)]

    def described(self) -> dict[str, Any]:
        return {"since": timestamp(self.since), "until": timestamp(self.until), **self.filters.given}


def count_replay(engine: sa.Engine, span: ReplayRange) -> int:
    """How many deliveries a replay of ``span`` would deliver again."""
    with reading(engine) as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                            .where(*span.conditions())).scalar_one()


def _too_many(count: int) -> ValidationError:
    return ValidationError(
        f"the range holds {count} deliveries to replay; at most {MAX_REPLAY} are replayed at once: narrow it",
        errors=[error_entry("until", "replay_too_large", f"at most {MAX_REPLAY} deliveries at once",
                            count=count, max=MAX_REPLAY)])


def replay(engine: sa.Engine, audit, span: ReplayRange, *, principal: Principal,
           budgets: Mapping[str, int] | None = None) -> list[int]:
    """Deliver again, as new deliveries, every one that succeeded or died in ``span``
    (oldest first); returns the new deliveries' ids. More than ``MAX_REPLAY`` is a 422
    and nothing is replayed."""
    t = deliveries.c
    now = utcnow()
    new_ids: list[int] = []
    with write_transaction(engine) as conn:
        originals = conn.execute(sa.select(deliveries).where(*span.conditions())
                                 .order_by(t.id).limit(MAX_REPLAY + 1)).mappings().all()
        if len(originals) > MAX_REPLAY:
            raise _too_many(conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                                         .where(*span.conditions())).scalar_one())
        taken: dict[str, int] = {}
        for row in originals:
            root = _REPLAY_SUFFIX.sub("", row["idempotency_key"])
            if root not in taken:
                keys = conn.execute(sa.select(t.idempotency_key).where(
                    t.idempotency_key.startswith(root + ":replay:", autoescape=True))).scalars()
                taken[root] = max((int(k.rsplit(":", 1)[1]) for k in keys
                                   if _REPLAY_SUFFIX.sub("", k) == root), default=0)
            taken[root] += 1
            new_ids.append(conn.execute(deliveries.insert().values(
                created_at=now, rule=row["rule"], trigger=row["trigger"], action=row["action"],
                plugin=row["plugin"], entity=row["entity"], record_id=row["record_id"], context=row["context"],
                run_as=row["run_as"], depth=row["depth"], idempotency_key=f"{root}:replay:{taken[root]}",
                status="pending", attempts=0, max_attempts=_round(budgets, row["rule"]), backoff=row["backoff"],
                backoff_seconds=row["backoff_seconds"], available_at=now)).inserted_primary_key[0])
        audit.add(conn, "delivery.replay", principal=principal, rows=len(new_ids),
                  detail={**span.described(), "replayed": len(new_ids),
                          "from": [r["id"] for r in originals][:100]})
    if new_ids:
        wake_workers()
    return new_ids


__all__ = ["DEFAULT_LIMIT", "FILTERS", "MAX_LIMIT", "MAX_REPLAY", "MAX_RETRY", "REPLAY_FILTERS", "STATUS_FILTERS",
           "DeliveryQuery", "ReplayRange", "RetryResult", "count_replay", "delivery", "delivery_json",
           "list_deliveries", "may_manage_deliveries", "parse_ids", "record_deliveries", "replay", "retry"]
