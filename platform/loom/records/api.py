"""The generated REST API: ``/api/v1/{entity}`` for every entity in the live metadata.

Views are thin: parse the request, call the record service, shape the reply.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import (
    Blueprint,
    current_app,
    jsonify,
    request,
    stream_with_context,
    url_for,
)

from loom.csvfile import csv_lines
from loom.downloads import download
from loom.errors import BadRequest, NotFound, PreconditionFailed, error_entry
from loom.principal import Principal
from loom.records import external_ids
from loom.records.door import record_context
from loom.records.openapi import build_openapi
from loom.records.query import parse_fields
from loom.records.service import Context, RecordService
from loom.records.transfers import owned_counts, transfer_everything

api = Blueprint("api", __name__, url_prefix="/api")
#: a version fits in 64 bits: longer digits are no ETag Loom sent (and int() of thousands of them fails)
_ETAG = re.compile(r'^(?:W/)?"?(\d{1,18})"?$')


def _loom():
    return current_app.extensions["loom"]


def record_service(entity: str) -> RecordService:
    """The record service of ``entity`` for this request's principal."""
    return RecordService(record_context(), entity)


def _json_body() -> Any:
    if not request.get_data(cache=True):
        raise BadRequest("the request has no body; send the record as a JSON object")
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise BadRequest("the body is not valid JSON")
    return body


def _expected_version() -> int | None:
    header = request.headers.get("If-Match")
    if not header or header.strip() == "*":
        return None
    match = _ETAG.match(header.strip())
    if not match:
        raise PreconditionFailed("If-Match must be the ETag of the record you last read")
    return int(match.group(1))


def _with_etag(response, record: dict[str, Any]):
    if "version" in record:
        response.headers["ETag"] = f'"{record["version"]}"'
    return response


def _caller_key(principal: Principal) -> str:
    """Principals with the same roles and flags see the same API description."""
    return f"{','.join(principal.roles)}|{principal.is_superuser}|{principal.is_system}|{principal.read_only}"


@api.get("/openapi.json")
def openapi():
    context = record_context()
    live = context.live
    service = _access_source(context)
    return jsonify(live.derive(f"openapi:{_caller_key(context.principal)}",
                               lambda: build_openapi(live.model, live.number, service,
                                                     max_limit=context.max_page_size,
                                                     default_limit=context.page_size)))


def _access_source(context: Context):
    """``entity -> EntityAccess`` for the request's principal."""
    from loom.permissions import EntityAccess

    def access_for(entity):
        parent = access_for(context.live.model.parents[entity.name][0]) if entity.child else None
        return EntityAccess(context.policy, context.principal, entity, parent)
    return access_for


@api.get("/v1/_meta/entities")
def entities():
    context = record_context()
    live = context.live
    access_for = _access_source(context)
    visible = {}
    for e in live.model.entities.values():
        access = access_for(e)
        if not e.child and access.allowed("read"):
            visible[e.name] = access
    return jsonify({"version": live.number, "data": [
        {
            "name": e.name,
            "label": dict(e.label),
            "app": e.app,
            "title_field": e.title_field,
            "url": url_for("api.list_records", entity=e.name),
            "fields": [
                {"name": f.name, "type": f.type, "label": dict(f.label), "required": f.required,
                 "read_only": f.read_only or (f.system and f.name != "owner"), "system": f.system,
                 **({"target": f.target} if f.target else {}),
                 **({"options": [{"value": o.value, "label": dict(o.label)} for o in f.options]} if f.options else {})}
                for f in e.all_fields.values() if f.name in visible[e.name].readable()
            ],
            "actions": [a for a in ("read", "create", "update", "delete", "export", "import")
                        if visible[e.name].allowed(a)],
        }
        for e in live.model.entities.values() if e.name in visible
    ]})


@api.get("/v1/<entity>")
def list_records(entity: str):
    service = record_service(entity)
    page = service.list(service.parse_query(request.args))
    body: dict[str, Any] = {"data": page.data, "next_cursor": page.next_cursor}
    if page.count is not None:
        body["count"] = page.count
    return jsonify(body)


@api.get("/v1/<entity>/_export")
def export_records(entity: str):
    """The list's records as CSV (default) or JSON Lines, streamed."""
    service = record_service(entity)
    args = request.args.copy()
    fmt = args.pop("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise BadRequest("format must be csv or jsonl", errors=[error_entry("format", "bad_parameter", "use csv or jsonl", parameter="format")])
    args.pop("limit", None)
    query = service.parse_query(args, action="export")
    readable = service.access.readable()
    columns = query.fields or [f for f in service.entity.all_fields if f in readable]
    if "id" not in columns:
        columns.insert(0, "id")
    rows = service.export(query)
    first = next(rows, None)  # permission and query errors surface before streaming starts

    def records():
        if first is not None:
            yield first
            yield from rows

    body = csv_lines(columns, records()) if fmt == "csv" else (
        json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in records())
    return download(stream_with_context(body), f"{entity}.{fmt}", fmt)


@api.post("/v1/<entity>")
def create_record(entity: str):
    record = record_service(entity).create(_json_body())
    response = jsonify({"data": record})
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_record", entity=entity, record_id=record["id"])
    return _with_etag(response, record)


@api.post("/v1/<entity>/_bulk")
def bulk_create(entity: str):
    body = _json_body()
    if not isinstance(body, list):
        raise BadRequest("the body must be a JSON array of records")
    ids = record_service(entity).bulk_create(body)
    response = jsonify({"data": [{"id": i} for i in ids]})
    response.status_code = 201
    return response


def _transfer_body(members: tuple[str, ...] = ("ids", "from", "to")) -> dict[str, Any]:
    """The body of a transfer: an object of ``members`` only. A member Loom does not know
    is refused rather than skipped: ``{"from": ..., "ids": [...]}`` sent to the transfer of
    everything must not move every record of the user when a few were meant."""
    body = _json_body()
    if not isinstance(body, dict):
        raise BadRequest('send a JSON object: {"ids": [...], "to": user} or {"from": user, "to": user}')
    unknown = sorted(str(name)[:100] for name in body if name not in members)[:20]
    if unknown:
        raise BadRequest(f"a transfer takes only {', '.join(members)}; not {', '.join(unknown)}",
                         errors=[error_entry(name, "bad_parameter", f"a transfer takes only {', '.join(members)}",
                                             parameter=name) for name in unknown])
    if "ids" in members and ("ids" in body) == ("from" in body):
        raise BadRequest('name either the records ("ids") or whose records ("from"), not both',
                         errors=[error_entry("ids", "bad_parameter", 'send "ids" or "from"', parameter="ids")])
    return body


@api.post("/v1/<entity>/_transfer")
def transfer_records(entity: str):
    """Give records to another owner: the ``ids`` given, or every record of ``from``
    (a departing user); all or none. Needs the ``transfer`` action."""
    body = _transfer_body()
    service = record_service(entity)
    if "from" in body:
        return jsonify({"transferred": service.transfer_all(body["from"], body.get("to"))})
    records = service.transfer(body["ids"], body.get("to"))
    return jsonify({"transferred": len(records), "data": records})


@api.get("/v1/_transfer")
def owned_records():
    """Per entity the caller may transfer, how many records of the user ``from`` they could."""
    user = request.args.get("from")
    if not user:
        raise BadRequest("name the user whose records to count: ?from=username",
                         errors=[error_entry("from", "bad_parameter", "give a username or id", parameter="from")])
    return jsonify({"data": owned_counts(record_context(), user)})


@api.post("/v1/_transfer")
def transfer_everything_of():
    """Give every record of ``from`` the caller may transfer, of every entity, to ``to``."""
    body = _transfer_body(("from", "to"))
    if "from" not in body:
        raise BadRequest('send a JSON object: {"from": user, "to": user}',
                         errors=[error_entry("from", "bad_parameter", "give a username or id", parameter="from")])
    return jsonify({"data": transfer_everything(record_context(), body["from"], body.get("to"))})


@api.get("/v1/<entity>/<int:record_id>")
def get_record(entity: str, record_id: int):
    service = record_service(entity)
    fields = request.args.get("fields")
    names = parse_fields(service.entity, fields, service.access.readable()) if fields else None
    record = service.get(record_id, names)
    return _with_etag(jsonify({"data": record}), record)


@api.patch("/v1/<entity>/<int:record_id>")
def update_record(entity: str, record_id: int):
    record = record_service(entity).update(record_id, _json_body(), expected_version=_expected_version())
    return _with_etag(jsonify({"data": record}), record)


@api.delete("/v1/<entity>/<int:record_id>")
def delete_record(entity: str, record_id: int):
    record_service(entity).delete(record_id, expected_version=_expected_version())
    return "", 204


@api.get("/v1/<entity>/<int:record_id>/_comments")
def record_comments(entity: str, record_id: int):
    """The record's comments, oldest first, for anyone who may read the record."""
    return jsonify({"data": record_service(entity).comments(record_id)})


@api.post("/v1/<entity>/<int:record_id>/_comments")
def comment_on_record(entity: str, record_id: int):
    body = _json_body()
    if not isinstance(body, dict):
        raise BadRequest('send the comment as a JSON object: {"body": "..."}')
    comment = record_service(entity).add_comment(record_id, body.get("body"))
    return jsonify({"data": comment}), 201


@api.get("/v1/<entity>/<int:record_id>/_history")
def record_history(entity: str, record_id: int):
    """The record's changes, oldest first, limited to the fields the caller may read."""
    return jsonify({"data": record_service(entity).history(record_id)})


@api.get("/v1/<entity>/<int:record_id>/_external_ids")
def record_external_ids(entity: str, record_id: int):
    """The record's ids in other systems, for anyone who may read the record."""
    return jsonify({"data": external_ids.record_links(record_service(entity), record_id)})


@api.put("/v1/<entity>/<int:record_id>/_external_ids/<system>")
def link_external_id(entity: str, record_id: int, system: str):
    """Link the record to ``{"external_id": ...}`` in ``system`` (needs update on the
    record); 201 for a new link, 200 when it was linked so already."""
    body = _json_body()
    if not isinstance(body, dict):
        raise BadRequest('send the id as a JSON object: {"external_id": "..."}')
    service = record_service(entity)
    created = external_ids.link_record(service, record_id, system, body.get("external_id"))
    link = {"system": system, "external_id": external_ids.check_external_id(body.get("external_id")),
            "record_id": record_id}
    return jsonify({"data": link}), 201 if created else 200


@api.delete("/v1/<entity>/<int:record_id>/_external_ids/<system>")
def unlink_external_id(entity: str, record_id: int, system: str):
    """Remove the record's link in ``system`` (needs update on the record); 404 when it has none."""
    if external_ids.unlink_record(record_service(entity), record_id, system) is None:
        raise NotFound(f"this {entity} has no {system} id")
    return "", 204


@api.get("/v1/<entity>/_by_external/<system>/<path:external_id>")
def record_by_external_id(entity: str, system: str, external_id: str):
    """The record linked to ``external_id`` in ``system``: the same 404 whether there is
    none or the caller may not read it."""
    record = external_ids.find_record(record_service(entity), system, external_id)
    return _with_etag(jsonify({"data": record}), record)
