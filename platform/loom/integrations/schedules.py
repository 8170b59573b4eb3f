"""Scheduled rules (``on: {schedule: "0 8 * * *", entity, filter}``): at each time its cron
expression names (read in the app's time zone), a rule gets one delivery per record its
filter selects, as far as its ``run_as`` user may read them. The worker's scheduler calls
``fire`` with the scheduled time, not the time it got round to it, and the idempotency key
names that time: a run repeated after a crash adds only the deliveries still missing."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from loom.db import write_transaction
from loom.errors import LoomError
from loom.integrations.actions import PermanentFailure
from loom.integrations.execute import rule_principal
from loom.integrations.rules import Rule
from loom.integrations.triggers import delivery_row, plain_data, write_once
from loom.records.door import record_service

log = logging.getLogger(__name__)

#: deliveries written per transaction
BATCH = 500


def scheduled_rules(model: Any) -> list[Rule]:
    """The enabled rules of ``model`` that run on a schedule."""
    return [rule for rule in model.of_kind("rule").values() if rule.enabled and rule.trigger.event == "schedule"]


def fire(app: Any, rule: Rule, at: dt.datetime) -> int:
    """Write the deliveries of ``rule`` for its run scheduled at ``at``; how many were new.
    A ``run_as`` user who is gone or deactivated, or may not read the entity, fires
    nothing: the run is audited with the reason."""
    loom = app.extensions["loom"]
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
    try:
        principal = rule_principal(loom, rule.run_as)
        records = record_service(rule.trigger.entity, principal, app=app).each_matching(rule.when, now=at,
                                                                                        batch=BATCH)
        written = 0
        batch: list[dict[str, Any]] = []
        for record in records:
            key = f"{rule.name}:{stamp}:{record['id']}"
            batch.append(delivery_row(rule, "schedule", record["id"], {"record": record,
                                      "with": plain_data(rule.arguments), "chain": [], "scheduled_at": stamp}, key, at))
            if len(batch) == BATCH:
                written += _write(loom.engine, batch)
                batch = []
        written += _write(loom.engine, batch)
    except (LoomError, PermanentFailure) as error:
        reason = error.detail if isinstance(error, LoomError) else str(error)
        log.warning("scheduled rule %s did not run at %s: %s", rule.name, stamp, reason)
        loom.audit.add_alone("rule.schedule", actor=f"system:rule:{rule.name}", outcome="error",
                             entity=rule.trigger.entity, detail={"rule": rule.name, "at": stamp, "error": reason})
        return 0
    loom.audit.add_alone("rule.schedule", actor=f"system:rule:{rule.name}", outcome="ok", entity=rule.trigger.entity,
                         detail={"rule": rule.name, "at": stamp, "deliveries": written})
    return written


def _write(engine: Any, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    with write_transaction(engine) as conn:
        return write_once(conn, rows)
