"""The ``record.create`` and ``record.update`` actions: a rule writes a record of any
entity, as its principal (the rule's ``run_as``), through the record service, so the
principal's permissions, validation, business logic, the audit log and the outbox all
apply as they do to a person saving the same values.

A refusal (no permission, invalid values, no such record) cannot be mended by trying
again, so it is a permanent failure naming the reason and every field's problem; a write
that met another one head-on (PostgreSQL's ``write_conflict``) and any failure of the
database are tried again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loom.errors import LoomError
from loom.integrations.actions import ActionCall, PermanentFailure
from loom.records.door import record_service


def create(call: ActionCall) -> dict[str, Any]:
    """Create a record of ``entity`` with ``values``; its ``{"id", "version"}``."""
    entity, values = _entity(call), _values(call)
    record = _write(lambda: record_service(entity, call.principal, app=call.app).create(values),
                    f"record.create of {entity}")
    return {"id": record["id"], "version": record.get("version")}


def update(call: ActionCall) -> dict[str, Any]:
    """Change record ``id`` of ``entity`` with ``values`` (only the fields given); its
    ``{"id", "version"}`` afterwards."""
    entity, values = _entity(call), _values(call)
    record_id = _record_id(call.arguments.get("id"))
    record = _write(lambda: record_service(entity, call.principal, app=call.app).update(record_id, values),
                    f"record.update of {entity} {record_id}")
    return {"id": record["id"], "version": record.get("version")}


def _entity(call: ActionCall) -> str:
    entity = call.arguments.get("entity")
    if not isinstance(entity, str) or not entity:
        raise PermanentFailure("entity must name the entity to write, e.g. entity: sales_order")
    return entity


def _values(call: ActionCall) -> Mapping[str, Any]:
    values = call.arguments.get("values")
    if not isinstance(values, Mapping):
        raise PermanentFailure("values must map field names to values, e.g. values: {status: approved}")
    return values


def _record_id(value: Any) -> int:
    """The record's id; a template renders it as text, which is taken when it is a whole number."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PermanentFailure(f"id must be a record id (a whole number), not {value!r}")
    return value


def _write(write, what: str) -> dict[str, Any]:
    try:
        return write()
    except LoomError as error:
        if error.status >= 500 or error.code == "write_conflict":
            raise
        raise _refusal(error, what) from None


def _refusal(error: LoomError, what: str) -> PermanentFailure:
    """The refusal as a permanent failure: its detail and each field's problem, which the
    failure also keeps (``errors``) for the deliveries screen."""
    problems = [f"{entry['field']}: {entry['message']}" if entry.get("field") else entry["message"]
                for entry in error.errors]
    message = f"{what} was refused ({error.status} {error.code}): {error.detail}"
    if problems:
        message += " [" + "; ".join(problems) + "]"
    failure = PermanentFailure(message)
    failure.errors = error.errors  # type: ignore[attr-defined]
    failure.status = error.status  # type: ignore[attr-defined]
    return failure
