"""The audit entries of record operations. Part of the record service: changes, refusals,
reads of entities declared ``audit_reads``, and exports."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loom.audit.log import MASK, AuditLog, mask_secrets
from loom.errors import LoomError
from loom.metadata.model import AppModel, Entity
from loom.principal import Principal
from loom.records.history import record_changes

#: standard fields the entry itself records (its actor and time) or that only count edits
_NOT_LOGGED = frozenset({"id", "version", "created_at", "created_by", "updated_at", "updated_by"})


def _value(value: Any) -> Any:
    """A link is logged by its id alone: titles change, and may name what a reader cannot see."""
    # (what ``set(value) == {"id", "title"}`` says, without a set made for every value)
    if isinstance(value, dict) and len(value) == 2 and "id" in value and "title" in value:
        return value["id"]
    return value


def _empty(value: Any) -> bool:
    """None, "" or [] (what ``value in (None, [], "")`` says, without comparing every value
    of a thousand records with a list and a string)."""
    return value is None or (isinstance(value, (str, list)) and not value)


def created_changes(record: Mapping[str, Any]) -> dict[str, list]:
    """A new record's values as changes from nothing; empty values are left out."""
    return {name: [None, value] for name, value in record.items()
            if not _empty(value) and name not in _NOT_LOGGED}


def deleted_changes(record: Mapping[str, Any]) -> dict[str, list]:
    """A deleted record's last values as changes to nothing."""
    return {name: [value, None] for name, value in record.items()
            if not _empty(value) and name not in _NOT_LOGGED}


def describe_query(query: Any) -> dict[str, Any]:
    """A list query as the audit log records it: filters, search, sort and fields."""
    return {"filters": [[c.name, c.op, c.value] for c in query.conditions],
            "search": query.search, "sort": [str(k) for k in query.sort], "fields": query.fields}


class RecordAudit:
    """Audit entries for ``RecordService`` (which sets the attributes used here)."""

    audit: AuditLog
    entity: Entity
    model: AppModel
    principal: Principal
    context: Any
    get: Any
    readable: Any

    def _masked(self, changes: Mapping[str, list]) -> dict[str, list]:
        """Changes as the audit entry of a change holds them: secret values masked, links by id."""
        plan = self.context.live.derive(f"audit_plan:{self.entity.name}", self._audit_plan)
        masked = {}
        for name, pair in changes.items():
            how = plan.get(name, "")
            if how is None:
                continue
            pair = [_value(v) for v in pair]
            if how == "secret":
                pair = [MASK if v is not None else None for v in pair]
            elif isinstance(how, list):
                pair = [None if rows is None else [mask_secrets({k: _value(v) for k, v in r.items()}, how)
                                                   for r in rows] for rows in pair]
            masked[name] = pair
        return masked

    def _masked_created(self, record: Mapping[str, Any]) -> dict[str, list]:
        """``_masked(created_changes(record))`` in one pass over the record: a bulk create
        logs a thousand records."""
        plan = self.context.live.derive(f"audit_plan:{self.entity.name}", self._audit_plan)
        masked = {}
        for name, value in record.items():
            how = plan.get(name, "")
            # ``_empty`` and ``_value`` written out: a function call per value is most of the cost
            if how is None or value is None or (not value and isinstance(value, (str, list))):
                continue
            if isinstance(value, dict) and len(value) == 2 and "id" in value and "title" in value:
                value = value["id"]
            if how == "secret":
                value = MASK if value is not None else None
            elif isinstance(how, list) and value is not None:
                value = [mask_secrets({k: _value(v) for k, v in r.items()}, how) for r in value]
            masked[name] = [None, value]
        return masked

    def _audit_plan(self) -> dict[str, Any]:
        """How each field's changes are logged: None (not at all: the entry's own columns
        say it), "secret" (masked), a list (a table field: its rows' secret fields), or ""
        (as it is); worked out once per entity and metadata version."""
        plan: dict[str, Any] = {}
        for name, f in self.entity.all_fields.items():
            if f.secret:
                plan[name] = "secret"
            elif f.type == "table":
                plan[name] = [c.name for c in self.model.entity(f.target).fields if c.secret]
            else:
                plan[name] = ""
        plan.update(dict.fromkeys(_NOT_LOGGED))
        return plan

    def _secret_names(self, entity: Entity) -> list[str]:
        return [f.name for f in entity.fields if f.secret]

    def _event_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A record as outbox events carry it: secret values masked as in the audit log,
        those of child rows included (events leave Loom, to integrations)."""
        secret = self._secret_names(self.entity)
        masked = mask_secrets(record, secret) if secret else dict(record)
        for f in self.entity.table_fields:
            if masked.get(f.name):
                masked[f.name] = self._event_rows(f.target, masked[f.name])
        return masked

    def _event_rows(self, child: str, rows: list[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
        secret = self._secret_names(self.model.entity(child))
        return None if rows is None else [mask_secrets(row, secret) for row in rows]

    def _event_changes(self, changes: Mapping[str, list]) -> dict[str, list]:
        """``{field: [old, new]}`` with secret values masked, as ``_event_record`` does."""
        masked = {}
        for name, pair in changes.items():
            f = self.entity.all_fields.get(name)
            if f is not None and f.secret:
                pair = [MASK if v is not None else None for v in pair]
            elif f is not None and f.type == "table":
                pair = [self._event_rows(f.target, rows) for rows in pair]
            masked[name] = pair
        return masked

    def _log_refusal(self, action: str, exc: LoomError, record_id: int | None = None) -> None:
        """A refused attempt is logged in a transaction of its own, since nothing else commits."""
        if getattr(exc, "audited", False):
            return
        exc.audited = True
        self.audit.add_alone(f"record.{action}", principal=self.principal, entity=self.entity.name,
                             record_id=record_id, outcome="denied", detail={"reason": exc.detail},
                             joined=self.context.connection)

    def history(self, record_id: int, *, checked: bool = False) -> list[dict[str, Any]]:
        """The changes of one record, oldest first, as the caller may see them: only when
        they may read the record, and only the fields they may read. Reading them is a read
        of the record (logged for ``audit_reads`` entities); ``checked`` says the caller has
        just read it through this service (the record page), which did both."""
        if not checked:
            self.get(record_id, ["id"])
        readable = self.readable()
        child_readable = {f.name: self.readable(f.target) for f in self.entity.table_fields if f.name in readable}
        return record_changes(self.context.engine, self.context.live, self.entity.name, record_id, readable,
                              child_readable, self.context.connection)

    def _log_read(self, record_id: int) -> None:
        if self.entity.audit_reads:
            self.audit.add_alone("record.read", principal=self.principal, entity=self.entity.name,
                                 record_id=record_id, joined=self.context.connection)

    def _log_export(self, query: Any, rows: int, outcome: str = "ok") -> None:
        self.audit.add_alone("record.export", principal=self.principal, entity=self.entity.name, rows=rows,
                             outcome=outcome, detail={"query": describe_query(query)}, joined=self.context.connection)
