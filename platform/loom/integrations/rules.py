"""A compiled integration rule (``kind: rule``): what triggers it, on which condition,
which action it runs with which mapping, as whom, and how its deliveries are retried.
Compiled by ``loom.integrations.rule_kind``; read by ``loom.integrations.triggers``
(which writes the deliveries) and the worker (which runs them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from loom.expressions import Expression

#: record events a rule can be triggered by
RECORD_EVENTS = ("created", "updated", "deleted")


@dataclass(frozen=True)
class Trigger:
    """``on:`` of a rule: exactly one of a record event, a flow state, a schedule or a webhook."""

    #: created, updated, deleted, state_entered, schedule or webhook
    event: str
    entity: str | None = None
    #: updated only: the rule fires only when one of these fields changed (empty: any)
    changed: tuple[str, ...] = ()
    #: state_entered: the state
    state: str | None = None
    #: schedule: a cron expression read in LOOM_TIMEZONE
    cron: str | None = None
    #: webhook: "<plugin>/<name>"
    webhook: str | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    trigger: Trigger
    #: the condition (``when``) over the triggering record, or over each record a
    #: schedule selects (its saved filter); None: always
    when: Expression | None
    action: str
    #: ``with``: the mapping; its strings are sandboxed templates rendered as ``run_as``
    arguments: Mapping[str, Any]
    #: the username the action runs as
    run_as: str
    max_attempts: int = 8
    #: exponential (with jitter) or fixed
    backoff: str = "exponential"
    #: the wait after the first failure
    backoff_seconds: int = 30
    #: how many rule deliveries may lead, one from another, to a delivery of this rule
    #: (0: only changes people and schedules make trigger it)
    max_depth: int = 3
    enabled: bool = True
    label: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    description: str = ""
    #: where it was declared, for messages
    file: str = ""
    line: int = 0
    #: the line of its ``run_as`` (a publish refuses a user who is missing or deactivated there)
    run_as_line: int = 0

    def fires_on(self, event: str, entity: str, changed: set[str] | None = None) -> bool:
        """Whether a record ``event`` (created, updated, deleted) of ``entity`` triggers it,
        before its condition: for an update, ``changed`` are the fields that changed."""
        t = self.trigger
        if not self.enabled or t.event != event or t.entity != entity:
            return False
        return event != "updated" or not t.changed or bool(changed and changed.intersection(t.changed))
