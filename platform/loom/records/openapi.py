"""The OpenAPI 3.1 document of the generated API, built from the live metadata."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loom.metadata.model import AppModel, Entity, label_text
from loom.permissions import EntityAccess
from loom.records.query import (
    MAX_CURSOR_TEXT,
    MAX_FILTER_TEXT,
    MAX_SEARCH_TEXT,
    MAX_SORT_KEYS,
    OPERATORS,
)

#: every error status the API sends, and when; each operation lists those it can answer
ERRORS = {
    "400": "Bad request: a parameter, header or body the server cannot use (the reply names it)",
    "401": "Not signed in: no credential, or an unknown, expired or revoked token",
    "403": "Not allowed: the caller's roles (or a read-only token) do not permit this",
    "404": "Not found, or outside the rows the caller may see",
    "409": "Conflict: a unique value already taken, or a record still linked from others",
    "412": "The record changed since the ETag sent in If-Match",
    "413": "The request body is too large",
    "415": "The request body is not JSON",
    "422": "Invalid values: every offending field is listed",
}
#: the errors any authenticated operation can answer (hostile input at the edge, credentials, roles)
ALWAYS = ("400", "401", "403")
#: the errors of an operation that takes a JSON body
WITH_BODY = ("413", "415", "422")


def _errors(*codes: str) -> dict[str, Any]:
    return {code: {"$ref": f"#/components/responses/E{code}"} for code in (*ALWAYS, *codes)}


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
        # a field shown only under a condition is required only while shown (visible_when)
        needed = f.required and f.visible_when is None
        if not needed or f.type == "table":
            schema = {"anyOf": [schema, {"type": "null"}]} if f.type != "table" else schema
        title = label_text(f.label, "en", f.name)
        schema = {**schema, "title": title}
        if f.help:
            schema["description"] = label_text(f.help, "en")
        if read_only and not writing:
            schema["readOnly"] = True
        properties[f.name] = schema
        if writing and needed and f.type != "table":
            required.append(f.name)
    result: dict[str, Any] = {"type": "object", "title": entity.title("en"), "properties": properties}
    if writing:
        result["additionalProperties"] = False
        if entity.child:
            properties.setdefault("id", {"type": "integer", "description": "an existing row's id, to keep it"})
    if required:
        result["required"] = required
    return result


_WHOLE = "-?[0-9]{1,18}"
_TIME = "(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
#: a filter value of each type, as the text a query string carries
_VALUE_PATTERNS = {"integer": _WHOLE, "link": "[1-9][0-9]{0,17}", "date": _TIME,
                   "datetime": _TIME + "T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z"}


def _value_schema(f: Any, op: str) -> dict[str, Any]:
    """The query-string text one filter operator takes on ``f``: as exact as a pattern
    allows, so a client (or a fuzzer) can tell a value the server takes from one it refuses."""
    if op == "isnull":
        return {"type": "string", "enum": ["true", "false"]}
    if f.options and op in ("eq", "ne", "contains"):
        return {"type": "string", "enum": list(f.option_values)}
    if f.type == "boolean":
        return {"type": "string", "enum": ["true", "false"]}
    item = _VALUE_PATTERNS.get(f.type)
    if item is None and f.type in ("decimal", "money", "percent", "number"):
        item = "-?[0-9]{1,8}(\\.[0-9]{1,2})?"
    if item is None:
        if op in ("in", "nin") or f.type not in ("string", "text", "email", "phone", "url"):
            return {"type": "string", "minLength": 1, "maxLength": MAX_FILTER_TEXT}
        return {"type": "string", "pattern": "^[^\\x00]+$", "maxLength": MAX_FILTER_TEXT}
    if op in ("in", "nin"):
        return {"type": "string", "pattern": f"^{item}(,{item}){{0,20}}$"}
    return {"type": "string", "pattern": f"^{item}$"}


def _names_pattern(names: list[str], most: int, prefix: str = "") -> str:
    """A comma-separated list of up to ``most`` of ``names``, as a pattern."""
    one = prefix + "(" + "|".join(sorted(names, key=len, reverse=True)) + ")"
    return f"^{one}(,{one}){{0,{max(most - 1, 0)}}}$"


def _filter_parameters(entity: Entity, readable: set[str], prefix: str = "") -> list[dict[str, Any]]:
    params = []
    for f in entity.all_fields.values():
        ops = [op for op in OPERATORS if op in f.kind.operators]
        if not ops or f.name not in readable or (prefix and f.name == "id"):
            continue
        params.append({
            "name": f"filter[{prefix}{f.name}]", "in": "query", "style": "deepObject", "explode": True,
            "schema": {"type": "object", "properties": {op: _value_schema(f, op) for op in ops},
                       "additionalProperties": False},
            "description": f"operators: {', '.join(ops)}" + ("; matches when one of the rows matches" if prefix else ""),
        })
    return params


def _list_parameters(entity: Entity, readable: set[str], children: list[tuple[str, Entity, set[str]]],
                     max_limit: int, default_limit: int) -> list[dict[str, Any]]:
    # the default order as this caller gets it: a key they may not read is neither used nor named
    default_sort = ",".join(k for k in entity.list.sort.split(",") if k.lstrip("-") in readable) or "id"
    params: list[dict[str, Any]] = [
        {"name": "limit", "in": "query",
         "schema": {"type": "integer", "minimum": 1, "maximum": max_limit, "default": default_limit}},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": MAX_CURSOR_TEXT},
         "description": "next_cursor of the previous page"},
        {"name": "sort", "in": "query", "schema": {"type": "string", "pattern": _names_pattern(
            [f.name for f in entity.all_fields.values() if f.name in readable and f.kind.sortable],
            MAX_SORT_KEYS, "-?")},
         "description": f"comma-separated fields (at most {MAX_SORT_KEYS}), '-' for descending; "
                        f"default {default_sort}"},
        {"name": "fields", "in": "query", "schema": {"type": "string", "pattern": _names_pattern(
            sorted(readable), len(readable))}, "description": "comma-separated fields to return (id and version always come with them)"},
        {"name": "search", "in": "query", "schema": {"type": "string", "maxLength": MAX_SEARCH_TEXT},
         "description": "text matched in: " + ", ".join(f.name for f in entity.search_fields if f.name in readable)},
        {"name": "count", "in": "query", "schema": {"type": "string", "enum": ["exact"]},
         "description": "add the exact number of matching records (costs time on big lists)"},
    ]
    params += _filter_parameters(entity, readable)
    for table, child, child_readable in children:
        params += _filter_parameters(child, child_readable, f"{table}.")
    return params


def build_openapi(model: AppModel, version: int, access_for: Callable[[Entity], EntityAccess], *,
                  max_limit: int = 500, default_limit: int = 50) -> dict[str, Any]:
    """A valid OpenAPI 3.1 document of what one caller may do: the entities they may read,
    with the fields they may read (in replies) and write (in requests), the operations
    their roles permit, and every status each operation can answer."""
    schemas: dict[str, Any] = {
        "Link": {"type": "object", "required": ["id"],
                 "properties": {"id": {"type": "integer"}, "title": {"type": ["string", "null"]}}},
        "Problem": {
            "type": "object",
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "request_id": {"type": "string"},
                "code": {"type": "string", "description": "what kind of error (see the table of codes)"},
                "params": {"type": "object", "description": "the values the detail quotes"},
                "errors": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "code": {"type": "string"}, "params": {"type": "object"},
                    "message": {"type": "string"}}}},
            },
        },
        "Comment": {"type": "object", "required": ["id", "author", "body", "created_at"], "properties": {
            "id": {"type": "integer"}, "author": {"type": "string"}, "author_id": {"type": ["integer", "null"]},
            "body": {"type": "string"}, "created_at": {"type": "string", "format": "date-time"}}},
        "Change": {"type": "object", "required": ["id", "at", "actor", "action", "changes"], "properties": {
            "id": {"type": "integer"}, "at": {"type": "string"}, "actor": {"type": "string"},
            "actor_id": {"type": ["integer", "null"]}, "action": {"type": "string"},
            "changes": {"type": "object"}}},
        "ExternalId": {"type": "object", "required": ["system", "external_id"], "properties": {
            "system": {"type": "string"}, "external_id": {"type": "string"}, "record_id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"}, "created_by": {"type": "string"}}},
    }
    paths: dict[str, Any] = {}
    for entity in model.entities.values():
        access = access_for(entity)
        if not access.allowed("read"):
            continue
        schemas.update(_entity_schemas(entity, model, access))
        if not entity.child:
            paths.update(_entity_paths(entity, model, access, access_for, max_limit, default_limit))
    if any(path.endswith("/_transfer") for path in paths):
        paths.update(_transfer_everything_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Loom API", "version": f"metadata-{version}",
                 "description": "Generated from the live metadata for the caller who asks: the entities, "
                                "fields and operations their roles permit. Changes when the metadata is published."},
        "paths": paths,
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "schemas": schemas,
            "responses": {f"E{code}": {"description": text, "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
                for code, text in ERRORS.items()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (loom token create)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session",
                            "description": "the session of POST /api/v1/_auth/login; writes need X-CSRFToken"},
            },
        },
    }


def _entity_schemas(entity: Entity, model: AppModel, access: EntityAccess) -> dict[str, Any]:
    name = entity.name
    schemas = {name: _record_schema(entity, model, writing=False, visible=access.readable()),
               f"{name}Input": _record_schema(entity, model, writing=True, visible=access.writable("create") | {"id"})}
    if not entity.child:
        schemas[f"{name}Patch"] = _record_schema(entity, model, writing=True, visible=access.writable("update"))
        schemas[f"{name}Patch"].pop("required", None)
        schemas[f"{name}Patch"]["properties"]["version"] = {
            "type": "integer", "minimum": 0, "maximum": 2**63 - 1,
            "description": "the version last read (as If-Match does): a stale one gets 412, a non-integer 422"}
    return schemas


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _entity_paths(entity: Entity, model: AppModel, access: EntityAccess,
                  access_for: Callable[[Entity], EntityAccess], max_limit: int,
                  default_limit: int) -> dict[str, Any]:
    """The operations on one entity that ``access`` permits."""
    name, tag = entity.name, entity.title("en")
    readable = access.readable()
    ref = f"#/components/schemas/{name}"
    one = {"type": "object", "required": ["data"], "properties": {"data": {"$ref": ref}}}
    page = {"type": "object", "required": ["data", "next_cursor"], "properties": {
        "data": {"type": "array", "items": {"$ref": ref}},
        "next_cursor": {"type": ["string", "null"]}, "count": {"type": "integer"}}}
    id_param = {"name": "id", "in": "path", "required": True,
                "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}}
    if_match = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
                "description": "the ETag last read; a stale one gets 412"}
    fields = {"name": "fields", "in": "query", "schema": {"type": "string", "pattern": _names_pattern(
        sorted(readable), len(readable))}, "description": "comma-separated fields to return (id and version always come with them)"}
    children = [(f.name, model.entity(f.target), access_for(model.entity(f.target)).readable())
                for f in entity.table_fields if f.name in readable]
    collection: dict[str, Any] = {
        "get": {"tags": [tag], "operationId": f"list_{name}", "summary": f"List {tag}",
                "parameters": _list_parameters(entity, readable, children, max_limit, default_limit),
                "responses": {"200": _json(page), **_errors()}},
    }
    record: dict[str, Any] = {
        "parameters": [id_param],
        "get": {"tags": [tag], "operationId": f"get_{name}", "summary": f"Get a {tag}", "parameters": [fields],
                "responses": {"200": _json(one), **_errors("404")}},
    }
    comment = {"type": "object", "required": ["data"], "properties": {"data": {"$ref": "#/components/schemas/Comment"}}}
    comments: dict[str, Any] = {
        "parameters": [id_param],
        "get": {"tags": [tag], "operationId": f"list_{name}_comments", "summary": f"Comments on a {tag}",
                "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Comment"}}}}),
                    **_errors("404")}},
    }
    paths = {f"/api/v1/{name}": collection, f"/api/v1/{name}/{{id}}": record,
             f"/api/v1/{name}/{{id}}/_comments": comments,
             f"/api/v1/{name}/{{id}}/_history": {"parameters": [id_param], "get": {
                 "tags": [tag], "operationId": f"history_of_{name}", "summary": f"Changes of a {tag}",
                 "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
                     "data": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}}}}),
                     **_errors("404")}}}}
    system_param = {"name": "system", "in": "path", "required": True, "description": "the other system, e.g. erp",
                    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,99}$"}}
    link = {"type": "object", "required": ["data"], "properties": {"data": {"$ref": "#/components/schemas/ExternalId"}}}
    paths[f"/api/v1/{name}/{{id}}/_external_ids"] = {"parameters": [id_param], "get": {
        "tags": [tag], "operationId": f"external_ids_of_{name}", "summary": f"Ids of a {tag} in other systems",
        "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
            "data": {"type": "array", "items": {"$ref": "#/components/schemas/ExternalId"}}}}), **_errors("404")}}}
    paths[f"/api/v1/{name}/_by_external/{{system}}/{{external_id}}"] = {"get": {
        "tags": [tag], "operationId": f"get_{name}_by_external_id", "summary": f"The {tag} linked to an external id",
        "parameters": [system_param, {"name": "external_id", "in": "path", "required": True,
                                      "schema": {"type": "string", "minLength": 1, "maxLength": 200}}],
        "responses": {"200": _json(one), **_errors("404")}}}
    if access.allowed("update"):
        paths[f"/api/v1/{name}/{{id}}/_external_ids/{{system}}"] = {"parameters": [id_param, system_param], "put": {
            "tags": [tag], "operationId": f"link_{name}_external_id", "summary": f"Link a {tag} to an external id",
            "requestBody": _body({"type": "object", "required": ["external_id"], "properties": {
                "external_id": {"type": "string", "minLength": 1, "maxLength": 200}}}),
            "responses": {"200": _json(link), "201": _json(link, "Linked"), **_errors("404", "409", *WITH_BODY)}},
            "delete": {"tags": [tag], "operationId": f"unlink_{name}_external_id",
                       "summary": f"Remove a {tag}'s external id", "responses": {
                           "204": {"description": "Unlinked"}, **_errors("404")}}}
    if access.allowed("create"):
        collection["post"] = {
            "tags": [tag], "operationId": f"create_{name}", "summary": f"Create a {tag}",
            "requestBody": _body({"$ref": f"{ref}Input"}),
            "responses": {"201": _json(one, "Created"), **_errors("409", *WITH_BODY)}}
        paths[f"/api/v1/{name}/_bulk"] = {"post": {
            "tags": [tag], "operationId": f"bulk_create_{name}", "summary": f"Create many {tag} at once",
            "requestBody": _body({"type": "array", "items": {"$ref": f"{ref}Input"}}),
            "responses": {"201": _json({"type": "object", "properties": {"data": {"type": "array", "items": {
                "type": "object", "properties": {"id": {"type": "integer"}}}}}}, "Created"),
                **_errors("409", *WITH_BODY)}}}
    if access.allowed("update"):
        record["patch"] = {
            "tags": [tag], "operationId": f"update_{name}", "summary": f"Change a {tag}",
            "parameters": [if_match], "requestBody": _body({"$ref": f"{ref}Patch"}),
            "responses": {"200": _json(one), **_errors("404", "409", "412", *WITH_BODY)}}
    if access.allowed("delete"):
        record["delete"] = {
            "tags": [tag], "operationId": f"delete_{name}", "summary": f"Delete a {tag}", "parameters": [if_match],
            "responses": {"204": {"description": "Deleted"}, **_errors("404", "409", "412")}}
    if access.allowed("export"):
        export_params = [p for p in _list_parameters(entity, readable, children, max_limit, default_limit)
                         if p["name"] not in ("limit", "cursor", "count")]
        export_params.append({"name": "format", "in": "query", "schema": {"type": "string", "enum": ["csv", "jsonl"]}})
        paths[f"/api/v1/{name}/_export"] = {"get": {
            "tags": [tag], "operationId": f"export_{name}", "summary": f"Export {tag}", "parameters": export_params,
            "responses": {"200": {"description": "The records, streamed", "content": {
                "text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}},
                **_errors()}}}
    paths.update(_upload_paths(entity, access, tag))
    paths.update(_transfer_paths(entity, access, tag))
    if not access.principal.read_only:
        comments["post"] = {
            "tags": [tag], "operationId": f"comment_on_{name}", "summary": f"Comment on a {tag}",
            "requestBody": _body({"type": "object", "required": ["body"], "properties": {"body": {"type": "string"}}}),
            "responses": {"201": _json(comment, "Created"), **_errors("404", *WITH_BODY)}}
    return paths


_USER_REF = {"type": ["integer", "string"], "description": "a user's id or username"}


def _transfer_paths(entity: Entity, access: EntityAccess, tag: str) -> dict[str, Any]:
    """``POST /api/v1/{entity}/_transfer`` where the caller may transfer and update."""
    if not (access.allowed("transfer") and access.allowed("update")):
        return {}
    body = {"oneOf": [
        {"type": "object", "required": ["ids", "to"], "additionalProperties": False, "properties": {
            "ids": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1}}, "to": _USER_REF}},
        {"type": "object", "required": ["from", "to"], "additionalProperties": False, "properties": {
            "from": _USER_REF, "to": _USER_REF}}]}
    reply = {"type": "object", "required": ["transferred"], "properties": {
        "transferred": {"type": "integer"},
        "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{entity.name}"},
                 "description": "the records as changed (when ids were given)"}}}
    return {f"/api/v1/{entity.name}/_transfer": {"post": {
        "tags": [tag], "operationId": f"transfer_{entity.name}",
        "summary": f"Give {tag} records to another owner: the ids given, or every record of one user; all or none",
        "requestBody": _body(body), "responses": {"200": _json(reply), **_errors("404", *WITH_BODY)}}}}


def _transfer_everything_paths() -> dict[str, Any]:
    """``/api/v1/_transfer``: every record of one user, across the entities the caller may transfer."""
    counts = {"type": "object", "required": ["data"], "properties": {"data": {
        "type": "object", "additionalProperties": {"type": "integer"}, "description": "records per entity"}}}
    return {"/api/v1/_transfer": {
        "get": {"tags": ["Transfers"], "operationId": "count_owned_records",
                "summary": "How many records of a user the caller could transfer, per entity",
                "parameters": [{"name": "from", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(counts), **_errors(*WITH_BODY)}},
        "post": {"tags": ["Transfers"], "operationId": "transfer_all_records",
                 "summary": "Give every record of a user, of every entity the caller may transfer, to another",
                 "requestBody": _body({"type": "object", "required": ["from", "to"], "additionalProperties": False,
                                       "properties": {"from": _USER_REF, "to": _USER_REF}}),
                 "responses": {"200": _json(counts), **_errors(*WITH_BODY)}}}}


def _upload_paths(entity: Entity, access: EntityAccess, tag: str) -> dict[str, Any]:
    """``POST /api/v1/{entity}/_files/{field}`` for each attachment field the caller may set."""
    if access.principal.read_only:
        return {}
    settable = {f for action in ("create", "update") if access.allowed(action) for f in access.writable(action)}
    uploaded = {"type": "object", "required": ["data"], "properties": {"data": {
        "type": "object", "required": ["key", "name", "size"], "properties": {
            "key": {"type": "string"}, "name": {"type": "string"}, "size": {"type": "integer"},
            "content_type": {"type": ["string", "null"]}}}}}
    return {f"/api/v1/{entity.name}/_files/{f.name}": {"post": {
        "tags": [tag], "operationId": f"upload_{entity.name}_{f.name}",
        "summary": f"Upload a file for {f.title('en')}; put its key in the field",
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {"file": {"type": "string",
                                                                              "contentMediaType": "application/octet-stream"}}}}}},
        "responses": {"201": _json(uploaded, "Stored; attach it by its key"), **_errors("404", *WITH_BODY)}}}
        for f in entity.fields if f.type == "attachment" and f.name in settable}
