"""The generated REST API: ``/api/v1/{entity}`` for every entity in the live metadata.

Views are thin: parse the request, call the record service, shape the reply.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, url_for

from loom.errors import BadRequest, PreconditionFailed
from loom.identity.principal import Principal
from loom.records.openapi import build_openapi
from loom.records.service import Context, RecordService

api = Blueprint("api", __name__, url_prefix="/api")
LOCAL = Principal(name="local")
_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')


def _loom():
    return current_app.extensions["loom"]


def current_principal() -> Principal:
    """Who the request acts as. Until sign-in exists every request acts as one local,
    unprivileged principal."""
    return g.get("principal") or LOCAL


def record_service(entity: str) -> RecordService:
    loom = _loom()
    context = Context(engine=loom.engine, live=loom.metadata.live(), principal=current_principal(),
                      hooks=loom.plugins.hook, cursors=loom.cursors, page_size=loom.page_size,
                      max_page_size=loom.max_page_size)
    return RecordService(context, entity)


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


@api.get("/openapi.json")
def openapi():
    live = _loom().metadata.live()
    return jsonify(live.derive("openapi", lambda: build_openapi(live.model, live.number)))


@api.get("/v1/_meta/entities")
def entities():
    live = _loom().metadata.live()
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
                for f in e.all_fields.values()
            ],
        }
        for e in live.model.entities.values() if not e.child
    ]})


@api.get("/v1/<entity>")
def list_records(entity: str):
    service = record_service(entity)
    page = service.list(service.parse_query(request.args))
    body: dict[str, Any] = {"data": page.data, "next_cursor": page.next_cursor}
    if page.count is not None:
        body["count"] = page.count
    return jsonify(body)


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


@api.get("/v1/<entity>/<int:record_id>")
def get_record(entity: str, record_id: int):
    fields = request.args.get("fields")
    names = [n.strip() for n in fields.split(",") if n.strip()] if fields else None
    record = record_service(entity).get(record_id, names)
    return _with_etag(jsonify({"data": record}), record)


@api.patch("/v1/<entity>/<int:record_id>")
def update_record(entity: str, record_id: int):
    record = record_service(entity).update(record_id, _json_body(), expected_version=_expected_version())
    return _with_etag(jsonify({"data": record}), record)


@api.delete("/v1/<entity>/<int:record_id>")
def delete_record(entity: str, record_id: int):
    record_service(entity).delete(record_id, expected_version=_expected_version())
    return "", 204
