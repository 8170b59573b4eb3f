"""From a record change to the deliveries its rules declare, in the change's transaction.

The record service calls ``RecordTriggers.deliveries`` in the committed-change step of
every write (API, screens, import, bulk, flows, plugins, rules' own writes): each rule on
the entity and event whose ``changed`` fields and condition hold for a record gives one
delivery row, written with the change, so a change and the work it triggers commit or
roll back together. The delivery keeps the record as the change left it (secrets masked),
and its idempotency key names the rule, record and version, so one change never makes two
deliveries of one rule.

A write made by a running delivery's action (``loom.integrations.context``) is one level
deeper than that delivery: a rule fires only up to its ``max_depth``; past it, the rule is
not run, and the stop is returned for the audit log (a loop, reported, never run forever).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loom.db import insert_many
from loom.integrations import rule_kind  # noqa: F401  (registers the rule document kind)
from loom.integrations.actions import action as registered_action
from loom.integrations.context import running
from loom.integrations.models import deliveries
from loom.integrations.rules import Rule
from loom.metadata.model import AppModel, Entity
from loom.principal import Principal

log = logging.getLogger(__name__)

_INSERT = deliveries.insert()

Lookup = Callable[[str, Any], Mapping[str, Any] | None]


@dataclass(frozen=True)
class Stopped:
    """A rule not run because the writes leading to it were already ``depth`` deep."""

    rule: str
    depth: int
    chain: tuple[str, ...]


@dataclass(frozen=True)
class ConditionFailed:
    """A rule whose condition could not be worked out for a record (the change stands)."""

    rule: str
    record_id: Any
    error: str


@dataclass
class Triggered:
    """What the rules of one write made: delivery rows, and what to report."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    stopped: list[Stopped] = field(default_factory=list)
    failed: list[ConditionFailed] = field(default_factory=list)


class RecordTriggers:
    """The record-event rules of one metadata version, by entity and event."""

    def __init__(self, model: AppModel):
        self.by_event: dict[tuple[str, str], tuple[Rule, ...]] = {}
        for rule in model.of_kind("rule").values():
            t = rule.trigger
            if rule.enabled and t.entity is not None and t.event in ("created", "updated", "deleted"):
                key = (t.entity, t.event)
                self.by_event[key] = (*self.by_event.get(key, ()), rule)

    def __bool__(self) -> bool:
        return bool(self.by_event)

    def rules(self, entity: str, event: str) -> tuple[Rule, ...]:
        return self.by_event.get((entity, event), ())

    def deliveries(self, entity: Entity, event: str, records: Sequence[Mapping[str, Any]],
                   changes: Sequence[Mapping[str, Any]] | None, *, principal: Principal, now: dt.datetime,
                   lookup: Lookup | None = None) -> Triggered:
        """The deliveries ``records`` (as events carry them) of ``entity`` trigger for a
        record ``event`` (created, updated, deleted); ``changes`` each updated record's
        ``{field: [old, new]}``, as events carry them."""
        made = Triggered()
        rules = self.rules(entity.name, event)
        if not rules:
            return made
        current = running()
        depth = 0 if current is None else current.depth + 1
        chain = () if current is None else current.chain
        for rule in rules:
            if depth > rule.max_depth:
                made.stopped.append(Stopped(rule.name, depth, chain))
                continue
            provider = registered_action(rule.action)
            for i, record in enumerate(records):
                changed = changes[i] if changes is not None else None
                if event == "updated" and not rule.fires_on(event, entity.name, set(changed or ())):
                    continue
                if rule.when is not None and not self._holds(rule, entity, record, principal, now, lookup, made):
                    continue
                context: dict[str, Any] = {"record": dict(record), "with": plain_data(rule.arguments),
                                           "chain": list(chain)}
                if changed is not None:
                    context["changes"] = dict(changed)
                key = f"{rule.name}:{entity.name}:{record.get('id')}:{event}:{record.get('version')}"
                made.rows.append(delivery_row(rule, f"record.{event}", record.get("id"), context, key, now,
                                              depth=depth, plugin=provider.plugin if provider is not None else ""))
        return made

    @staticmethod
    def _holds(rule: Rule, entity: Entity, record: Mapping[str, Any], principal: Principal, now: dt.datetime,
               lookup: Lookup | None, made: Triggered) -> bool:
        assert rule.when is not None
        try:
            return bool(rule.when.evaluate(stored_values(entity, record), user=principal, now=now, lookup=lookup))
        except (ArithmeticError, ValueError, TypeError, KeyError) as exc:
            made.failed.append(ConditionFailed(rule.name, record.get("id"), f"{type(exc).__name__}: {exc}"))
            return False


def delivery_row(rule: Rule, trigger: str, record_id: Any, context: dict[str, Any], key: str, now: dt.datetime, *,
                 depth: int = 0, plugin: str | None = None) -> dict[str, Any]:
    """The ``loom_deliveries`` row of one delivery of ``rule``, due at once."""
    if plugin is None:
        provider = registered_action(rule.action)
        plugin = provider.plugin if provider is not None else ""
    return {"created_at": now, "rule": rule.name, "trigger": trigger, "action": rule.action, "plugin": plugin,
            "entity": rule.trigger.entity, "record_id": record_id, "context": context, "run_as": rule.run_as,
            "depth": depth, "idempotency_key": key, "status": "pending", "attempts": 0,
            "max_attempts": rule.max_attempts, "backoff": rule.backoff, "backoff_seconds": rule.backoff_seconds,
            "available_at": now, "lease_owner": None, "lease_until": None, "last_error": None, "result": None,
            "finished_at": None}


def write_once(conn: sa.Connection, rows: list[dict[str, Any]]) -> int:
    """Write delivery rows whose idempotency key is not taken yet (a schedule run again
    after a crash); how many were new."""
    if not rows:
        return 0
    insert = (sqlite_insert if conn.dialect.name == "sqlite" else pg_insert)(deliveries)
    statement = insert.on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(deliveries.c.id)
    return len(conn.execute(statement, rows).all())


def write(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Write the delivery rows of one change in its transaction, with one statement."""
    if rows:
        insert_many(conn, deliveries, rows, _INSERT)


def stored_values(entity: Entity, record: Mapping[str, Any]) -> dict[str, Any]:
    """A record as events carry it (JSON form) back in the form the record service stores,
    which expressions read: numbers as numbers, dates as dates, links as ids."""
    values: dict[str, Any] = dict(record)
    for name, value in record.items():
        f = entity.all_fields.get(name)
        if f is None or value is None or f.type == "table" or not f.kind.stored:
            continue
        if isinstance(value, Mapping) and f.type == "link":
            values[name] = value.get("id")
            continue
        try:
            values[name] = f.kind.coerce(value, f)
        except (ValueError, TypeError):
            values[name] = value
    return values


def plain_data(value: Any) -> Any:
    """A mapping of the compiled model as plain JSON data (dicts and lists)."""
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_data(v) for v in value]
    return value
