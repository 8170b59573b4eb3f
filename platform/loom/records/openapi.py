"""The OpenAPI 3.1 document of the generated API, built from the live metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loom.metadata.model import AppModel, Entity, label_text
from loom.permissions import EntityAccess
from loom.records.query import OPERATORS

PROBLEM = {"$ref": "#/components/responses/Problem"}


def _record_schema(entity: Entity, model: AppModel, *, writing: bool, visible: set[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required = []
    for f in entity.all_fields.values():
        if f.name not in visible:
            continue
        read_only = f.read_only or (f.system and f.name != "owner")
        if writing and read_only and f.name != "id":
            continue
        if writing and f.name == "id" and not entity.child:
            continue
        schema = dict(f.kind.json_schema(f))
        if f.type == "link":
            schema = {"$ref": "#/components/schemas/Link"} if not writing else {"type": "integer", "minimum": 1}
        if f.type == "table":
            suffix = "Input" if writing else ""
            schema = {"type": "array", "items": {"$ref": f"#/components/schemas/{f.target}{suffix}"}}
        if not f.required or f.type == "table":
            schema = {"anyOf": [schema, {"type": "null"}]} if f.type != "table" else schema
        title = label_text(f.label, "en", f.name)
        schema = {**schema, "title": title}
        if f.help:
            schema["description"] = label_text(f.help, "en")
        if read_only and not writing:
            schema["readOnly"] = True
        properties[f.name] = schema
        if writing and f.required and f.type != "table":
            required.append(f.name)
    result: dict[str, Any] = {"type": "object", "title": entity.title("en"), "properties": properties}
    if writing:
        result["additionalProperties"] = False
        if entity.child:
            properties.setdefault("id", {"type": "integer", "description": "an existing row's id, to keep it"})
    if required:
        result["required"] = required
    return result


def _filter_parameters(entity: Entity, readable: set[str], prefix: str = "") -> list[dict[str, Any]]:
    params = []
    for f in entity.all_fields.values():
        ops = [op for op in OPERATORS if op in f.kind.operators]
        if not ops or f.name not in readable or (prefix and f.name == "id"):
            continue
        params.append({
            "name": f"filter[{prefix}{f.name}]", "in": "query", "style": "deepObject", "explode": True,
            "schema": {"type": "object", "properties": {op: {"type": "string"} for op in ops},
                       "additionalProperties": False},
            "description": f"operators: {', '.join(ops)}" + ("; matches when one of the rows matches" if prefix else ""),
        })
    return params


def _list_parameters(entity: Entity, readable: set[str],
                     children: list[tuple[str, Entity, set[str]]]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"},
         "description": "next_cursor of the previous page"},
        {"name": "sort", "in": "query", "schema": {"type": "string"},
         "description": "comma-separated fields, '-' for descending; default " + entity.list.sort},
        {"name": "fields", "in": "query", "schema": {"type": "string"}, "description": "comma-separated fields to return"},
        {"name": "search", "in": "query", "schema": {"type": "string"},
         "description": "text matched in: " + ", ".join(f.name for f in entity.search_fields if f.name in readable)},
        {"name": "count", "in": "query", "schema": {"type": "string", "enum": ["exact"]},
         "description": "add the exact number of matching records (costs time on big lists)"},
    ]
    params += _filter_parameters(entity, readable)
    for table, child, child_readable in children:
        params += _filter_parameters(child, child_readable, f"{table}.")
    return params


def build_openapi(model: AppModel, version: int, access_for: Callable[[Entity], EntityAccess]) -> dict[str, Any]:
    """A valid OpenAPI 3.1 document of what one caller may use: the entities they may
    read, with the fields they may read (in replies) and write (in requests)."""
    schemas: dict[str, Any] = {
        "Link": {"type": "object", "required": ["id"],
                 "properties": {"id": {"type": "integer"}, "title": {"type": ["string", "null"]}}},
        "Problem": {
            "type": "object",
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "request_id": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "message": {"type": "string"}}}},
            },
        },
        "Comment": {"type": "object", "required": ["id", "author", "body", "created_at"], "properties": {
            "id": {"type": "integer"}, "author": {"type": "string"}, "author_id": {"type": ["integer", "null"]},
            "body": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}},
    }
    paths: dict[str, Any] = {}
    for entity in model.entities.values():
        name = entity.name
        access = access_for(entity)
        if not access.allowed("read"):
            continue
        readable = access.readable()
        schemas[name] = _record_schema(entity, model, writing=False, visible=readable)
        schemas[f"{name}Input"] = _record_schema(entity, model, writing=True,
                                                 visible=access.writable("create") | {"id"})
        if entity.child:
            continue
        schemas[f"{name}Patch"] = _record_schema(entity, model, writing=True, visible=access.writable("update"))
        schemas[f"{name}Patch"].pop("required", None)
        one = {"type": "object", "required": ["data"], "properties": {"data": {"$ref": f"#/components/schemas/{name}"}}}
        page = {"type": "object", "required": ["data", "next_cursor"], "properties": {
            "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
            "next_cursor": {"type": ["string", "null"]}, "count": {"type": "integer"}}}
        tag = entity.title("en")
        id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
        if_match = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
                    "description": "the ETag last read; a stale one gets 412"}
        body = lambda ref: {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}  # noqa: E731
        ok = lambda schema, desc="OK": {"description": desc, "content": {"application/json": {"schema": schema}}}  # noqa: E731
        paths[f"/api/v1/{name}"] = {
            "get": {"tags": [tag], "operationId": f"list_{name}", "summary": f"List {tag}",
                    "parameters": _list_parameters(entity, readable, [
                        (f.name, model.entity(f.target), access_for(model.entity(f.target)).readable())
                        for f in entity.table_fields if f.name in readable]),
                    "responses": {"200": ok(page), "400": PROBLEM}},
            "post": {"tags": [tag], "operationId": f"create_{name}", "summary": f"Create a {tag}",
                     "requestBody": body(f"#/components/schemas/{name}Input"),
                     "responses": {"201": ok(one, "Created"), "400": PROBLEM, "409": PROBLEM,
                                   "413": PROBLEM, "422": PROBLEM}},
        }
        paths[f"/api/v1/{name}/_bulk"] = {
            "post": {"tags": [tag], "operationId": f"bulk_create_{name}", "summary": f"Create many {tag} at once",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "array", "items": {"$ref": f"#/components/schemas/{name}Input"}}}}},
                     "responses": {"201": ok({"type": "object", "properties": {"data": {"type": "array", "items": {
                         "type": "object", "properties": {"id": {"type": "integer"}}}}}}, "Created"),
                                   "400": PROBLEM, "409": PROBLEM, "413": PROBLEM, "422": PROBLEM}},
        }
        paths[f"/api/v1/{name}/{{id}}"] = {
            "parameters": [id_param],
            "get": {"tags": [tag], "operationId": f"get_{name}", "summary": f"Get a {tag}",
                    "responses": {"200": ok(one), "404": PROBLEM}},
            "patch": {"tags": [tag], "operationId": f"update_{name}", "summary": f"Change a {tag}",
                      "parameters": [if_match], "requestBody": body(f"#/components/schemas/{name}Patch"),
                      "responses": {"200": ok(one), "404": PROBLEM, "409": PROBLEM, "412": PROBLEM, "422": PROBLEM}},
            "delete": {"tags": [tag], "operationId": f"delete_{name}", "summary": f"Delete a {tag}",
                       "parameters": [if_match],
                       "responses": {"204": {"description": "Deleted"}, "404": PROBLEM, "409": PROBLEM,
                                     "412": PROBLEM}},
        }
        comment = {"type": "object", "required": ["data"], "properties": {"data": {"$ref": "#/components/schemas/Comment"}}}
        paths[f"/api/v1/{name}/{{id}}/_comments"] = {
            "parameters": [id_param],
            "get": {"tags": [tag], "operationId": f"list_{name}_comments", "summary": f"Comments on a {tag}",
                    "responses": {"200": ok({"type": "object", "required": ["data"], "properties": {
                        "data": {"type": "array", "items": {"$ref": "#/components/schemas/Comment"}}}}),
                        "404": PROBLEM}},
            "post": {"tags": [tag], "operationId": f"comment_on_{name}", "summary": f"Comment on a {tag}",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["body"], "properties": {"body": {"type": "string"}}}}}},
                     "responses": {"201": ok(comment, "Created"), "400": PROBLEM, "404": PROBLEM, "422": PROBLEM}},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loom API", "version": f"metadata-{version}",
                 "description": "Generated from the live metadata; changes when the metadata is published."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"Problem": {"description": "An error (RFC 9457)", "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}},
        },
    }
