"""The ``record.create`` and ``record.update`` actions: a rule writes a record of any
entity, as its principal (the rule's ``run_as``), through the record service, so the
principal's permissions, validation, business logic, the audit log and the outbox all
apply as they do to a person saving the same values.

Both take ``external_id: {system, id}`` (``loom.records.external_ids``): ``record.create``
with it is an upsert, updating the record linked to that id in that system or creating
one and linking it, so a delivery tried again never creates a second record;
``record.update`` with it finds its record by that id instead of ``id``.

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
from loom.records import external_ids
from loom.records.door import record_service


def create(call: ActionCall) -> dict[str, Any]:
    """Create a record of ``entity`` with ``values``; its ``{"id", "version"}``. With
    ``external_id``, update the record linked to it instead when there is one (and say
    ``"created": false``), else create one and link it."""
    entity, values = _entity(call), _values(call)
    linked = _external_id(call)
    if linked is None:
        record = _write(lambda: record_service(entity, call.principal, app=call.app).create(values),
                        f"record.create of {entity}")
        return {"id": record["id"], "version": record.get("version")}
    system, external_id = linked
    record, created = _write(lambda: external_ids.upsert(record_service(entity, call.principal, app=call.app),
                                                         system, external_id, values),
                             f"record.create of {entity} ({system} id '{external_id}')")
    return {"id": record["id"], "version": record.get("version"), "created": created}


def update(call: ActionCall) -> dict[str, Any]:
    """Change record ``id`` of ``entity`` (or the one linked to ``external_id``) with
    ``values`` (only the fields given); its ``{"id", "version"}`` afterwards."""
    entity, values = _entity(call), _values(call)
    linked = _external_id(call)
    if linked is not None and call.arguments.get("id") is not None:
        raise PermanentFailure("record.update takes either id or external_id, not both")
    service = record_service(entity, call.principal, app=call.app)
    if linked is None and call.arguments.get("id") is None:
        raise PermanentFailure("id must be a record id, or external_id must name the record by its id in "
                               "another system ({system, id})")
    if linked is None:
        record_id = _record_id(call.arguments.get("id"))
        what = f"record.update of {entity} {record_id}"
    else:
        system, external_id = linked
        what = f"record.update of {entity} ({system} id '{external_id}')"
        found = _write(lambda: external_ids.find_record(service, system, external_id, ["id"]), what)
        record_id = found["id"]
    record = _write(lambda: service.update(record_id, values), what)
    return {"id": record["id"], "version": record.get("version")}


def _external_id(call: ActionCall) -> tuple[str, str] | None:
    """(system, external id) of the ``external_id`` argument, or None without one."""
    value = call.arguments.get("external_id")
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"system", "id"}:
        raise PermanentFailure("external_id must be {system: <the other system, e.g. erp>, id: <the record's id "
                               "there>}")
    try:
        return (external_ids.check_system(value["system"], "external_id.system"),
                external_ids.check_external_id(value["id"], "external_id.id"))
    except LoomError as error:
        raise _refusal(error, "external_id") from None


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
