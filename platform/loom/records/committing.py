"""The committed-change step every record write ends in, and ``after_record_commit``.

Each change, once written, passes through one step in its transaction: its secret values
masked, an outbox event, the plugins' ``after_record_*`` hook, the audit entry; then,
once the outermost transaction committed, ``after_record_commit``, each plugin on its
own, so that a failing plugin neither fails the committed change nor silences the others.
Part of the record service."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from loom.audit.log import AuditLog
from loom.db import after_commit, utcnow
from loom.events import emit_many
from loom.integrations import triggers
from loom.integrations.context import wake_workers
from loom.metadata.model import Entity
from loom.principal import Principal
from loom.records.auditing import deleted_changes
from loom.records.logic import WriteLogic

#: each record action: (outbox topic and after_record_commit action, audit action)
_PAST = {"create": "created", "update": "updated", "delete": "deleted"}

log = logging.getLogger("loom.records.service")


class CommitHooks:
    """The commit hooks of ``RecordService`` (which sets the attributes used here)."""

    audit: AuditLog
    context: Any
    entity: Entity
    model: Any
    hooks: Any
    principal: Principal
    _event_record: Any
    _event_changes: Any
    _masked: Any

    def _committed(self, conn: sa.Connection, action: str, records: Sequence[dict[str, Any]],
                   changes: Sequence[Mapping[str, list]] | None = None,
                   derived: Mapping[str, Any] | None = None) -> None:
        """The one step after a record write (``action``: create, update or delete), in its
        transaction: mask secrets -> outbox events -> per record ``after_record_<action>``
        hook -> audit entry; then ``after_record_commit`` once the change committed.
        ``records`` are full JSON forms (the last values, for a delete); ``changes`` the
        ``{field: [old, new]}`` of each updated record. The events of all ``records`` are
        written in one statement before the first hook runs, and their audit entries in one
        statement as the transaction's last (``AuditLog``): a bulk create of 1,000 records
        costs two statements here, not 2,000. ``derived`` marks a change Loom made because
        other records changed (a roll-up, ``loom.records.derived``): it goes into each event
        and audit entry as ``recomputed_because``."""
        past = _PAST[action]
        hook = getattr(self.hooks, f"after_record_{action}")
        events = []
        for i, record in enumerate(records):
            payload: dict[str, Any] = {"record": self._event_record(record)}
            if action == "update":
                assert changes is not None
                payload["changes"] = self._event_changes(changes[i])
            if derived is not None:
                payload["recomputed_because"] = dict(derived)
            events.append((record["id"], payload))
        emit_many(conn, topic=f"record.{past}", actor=self.principal.name, entity=self.entity.name, events=events)
        self._trigger_rules(conn, past, events)
        entry = self.audit.entry_maker(f"record.{action}", principal=self.principal, entity=self.entity.name)
        for i, record in enumerate(records):
            kwargs: dict[str, Any] = {"entity": self.entity, "record": record, "principal": self.principal,
                                      "connection": conn}
            if action == "update":
                assert changes is not None
                kwargs["changes"] = logged = changes[i]
            elif action == "create":
                logged = dict(record)  # the values it was created with, masked below
            else:
                logged = deleted_changes(record)
            hook(**kwargs)
            # made once the hook ran: an update's entry holds its changes as the hook left them
            made = entry(record["id"], self._masked_created(logged) if action == "create" else self._masked(logged))
            if derived is not None:
                made = dataclasses.replace(made, detail={"recomputed_because": dict(derived)})
            self.audit.add_entry(conn, made)
        self._after_commit(conn, past, records)

    def _trigger_rules(self, conn: sa.Connection, event: str, events: Sequence[tuple[Any, dict[str, Any]]]) -> None:
        """Write the deliveries the integration rules on this entity declare for the change
        (``loom.integrations.triggers``), in its transaction; audit a rule stopped by its
        depth and a condition that could not be worked out."""
        found = self.context.live.derive("integration_triggers", lambda: triggers.RecordTriggers(self.model))
        if not found.rules(self.entity.name, event):
            return
        now = utcnow()
        logic: list[Any] = []

        def lookup(entity_name: str, record_id: Any) -> Any:
            if not logic:
                logic.append(WriteLogic(conn, self.model, self.context.live.tables, self.principal, now))
            return logic[0].lookup(entity_name, record_id)

        made = found.deliveries(self.entity, event, [payload["record"] for _id, payload in events],
                                [payload.get("changes") or {} for _id, payload in events] if event == "updated" else None,
                                principal=self.principal, now=now, lookup=lookup)
        triggers.write(conn, made.rows)
        for stop in made.stopped:
            log.warning("rule %s not run: the writes leading to it are %s deep (%s)", stop.rule, stop.depth,
                        " -> ".join(stop.chain))
            self.audit.add(conn, "rule.loop_stopped", principal=self.principal, entity=self.entity.name,
                           outcome="denied", detail={"rule": stop.rule, "depth": stop.depth, "chain": list(stop.chain)})
        for failure in made.failed:
            self.audit.add(conn, "rule.condition_failed", principal=self.principal, entity=self.entity.name,
                           record_id=failure.record_id, outcome="error",
                           detail={"rule": failure.rule, "error": failure.error[:500]})
        if made.rows:
            after_commit(conn, wake_workers)

    def _after_commit(self, conn: sa.Connection, action: str, records: Sequence[dict[str, Any]]) -> None:
        """Call the ``after_record_commit`` hooks once ``conn``'s transaction committed
        (the outermost one, for a write joined to another). The change has happened by
        then: a hook that fails is logged and audited, and never turns it into an error."""
        def notify() -> None:
            hooks = self._commit_hooks()
            for record in records:
                kwargs = {"entity": self.entity, "action": action, "record": record, "principal": self.principal}
                for name, call in hooks:
                    try:
                        call(kwargs)
                    except Exception as exc:
                        self._hook_failed(name, action, record, exc)
        after_commit(conn, notify)

    def _commit_hooks(self) -> list[tuple[str, Any]]:
        """Each ``after_record_commit`` implementation as (plugin name, call), in pluggy's
        order, so that one failing plugin does not keep the others from hearing of a commit."""
        caller = self.hooks.after_record_commit
        impls = caller.get_hookimpls()
        if any(impl.hookwrapper or getattr(impl, "wrapper", False) for impl in impls):
            return [("after_record_commit", lambda kwargs: caller(**kwargs))]
        return [(impl.plugin_name, lambda kwargs, impl=impl: impl.function(*(kwargs[a] for a in impl.argnames)))
                for impl in reversed(impls)]

    def _hook_failed(self, plugin: str, action: str, record: Mapping[str, Any], exc: Exception) -> None:
        """Log a failed commit hook with its traceback, and audit it (naming the exception's
        type only: its text may quote record values)."""
        log.exception("after_record_commit of %s failed for %s %s %s", plugin, action, self.entity.name,
                      record.get("id"))
        try:
            self.audit.add_alone("record.commit_hook", principal=self.principal, entity=self.entity.name,
                                 record_id=record.get("id"), outcome="error",
                                 detail={"action": action, "plugin": plugin, "error": type(exc).__name__})
        except Exception:
            log.exception("could not log the failure of after_record_commit of %s", plugin)
