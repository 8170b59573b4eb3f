"""Uploading a file for an attachment field through the API:
``POST /api/v1/{entity}/_files/{field}`` with the file as the multipart part ``file``.

The reply's ``key`` is what a create or update then puts in the field (``{"key": ...}``);
only the uploader can attach it, only to that field, and only to one record.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from loom.errors import BadRequest, NotFound, error_entry
from loom.identity.auth import accepts_body
from loom.permissions import Forbidden
from loom.records.api import record_service
from loom.records.files import app_files

uploads_api = Blueprint("uploads_api", __name__, url_prefix="/api")


@uploads_api.post("/v1/<entity>/_files/<field_name>")
@accepts_body("multipart/form-data")
def upload_file(entity: str, field_name: str):
    """Keep a file for ``field_name``, for a caller who may set that field when creating or
    changing a record; 422 when the field's type or size limit refuses it."""
    service = record_service(entity)
    f = service.entity.all_fields.get(field_name)
    if f is None or f.type != "attachment" or field_name not in service.readable():
        raise NotFound(f"{entity} has no attachment field named '{field_name}'", code="no_attachment_field",
                       params={"entity": entity, "field": field_name})
    if not any(service.allowed(action) and field_name in service.writable(action) for action in ("create", "update")):
        refusal = Forbidden(f"you may not set {field_name} on {entity} records", code="upload_forbidden",
                            params={"field": field_name, "entity": entity})
        service.refused("upload", refusal)
        raise refusal
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise BadRequest("send the file as the multipart/form-data part named 'file'",
                         errors=[error_entry("file", "required", "choose a file")])
    value = app_files().save(service.principal, service.entity, f, upload.filename, upload.mimetype,
                             upload.stream, "file")
    return jsonify({"data": value}), 201
