"""The ``role`` and ``alert`` document kinds: who may do what with each entity, and the
rules that watch the audit log. Both refer to entities, so they compile after them."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from loom.metadata.conditions import check_condition
from loom.metadata.documents import Document
from loom.metadata.entities import label
from loom.metadata.kinds import Compilation, DocumentKind, schema_file
from loom.metadata.model import Alert, Entity, Grant, Role

# -- roles ----------------------------------------------------------------------------------------


def _grant(build: Compilation, doc: Document, entity_name: str, raw: dict[str, Any],
           entities: dict[str, Entity]) -> Grant | None:
    path = ("permissions", entity_name)
    entity = entities.get(entity_name)
    if entity is None and entity_name != "*":
        if entity_name not in build.broken:
            build.fail(doc, path, f"no entity named '{entity_name}'")
        return None
    fields = dict(raw.get("fields", {}))
    default = fields.pop("*", "write")
    if entity is not None:
        for name in fields:
            if name not in entity.all_fields:
                build.fail(doc, path + ("fields", name), f"no field named '{name}' in {entity_name}")
    scope = raw.get("scope", "all")
    where = None
    if isinstance(scope, dict):
        where = scope["where"]
        scope = "where"
        if entity is None:
            build.fail(doc, path + ("scope",), "a where-scope needs a single entity, not '*'")
        else:
            check_condition(entity, where, path + ("scope", "where"), lambda p, message: build.fail(doc, p, message))
    return Grant(frozenset(raw.get("actions", ())), scope, MappingProxyType(where) if where else None,
                 MappingProxyType(fields), default)


def compile_role(build: Compilation, doc: Document, entities: dict[str, Entity]) -> Role:
    data = doc.data
    grants: dict[str, Grant] = {}
    for entity_name, raw in data.get("permissions", {}).items():
        grant = _grant(build, doc, entity_name, raw, entities)
        if grant is not None:
            grants[entity_name] = grant
    return Role(name=data["name"], label=label(data.get("label")), inherits=tuple(data.get("inherits", ())),
                admin=frozenset(data.get("admin", ())), grants=MappingProxyType(grants))


def _inherits_itself(name: str, roles: dict[str, Role]) -> bool:
    seen: set[str] = set()
    pending = list(roles[name].inherits)
    while pending:
        current = pending.pop()
        if current == name:
            return True
        if current in seen or current not in roles:
            continue
        seen.add(current)
        pending.extend(roles[current].inherits)
    return False


def compile_roles(docs: list[Document], build: Compilation) -> dict[str, Role]:
    """Every role document; the roles a role inherits from exist and do not lead back to it."""
    by_name: dict[str, Document] = {}
    for doc in docs:
        name = doc.data["name"]
        if name in by_name:
            build.fail(doc, ("name",), f"role '{name}' is already declared in {by_name[name].file}")
            continue
        by_name[name] = doc
    entities = dict(build.items("entity"))
    roles = {name: compile_role(build, doc, entities) for name, doc in by_name.items()}
    for doc in by_name.values():
        for i, parent in enumerate(doc.data.get("inherits", [])):
            if parent not in by_name and parent not in build.broken:
                build.fail(doc, ("inherits", i), f"no role named '{parent}'")
    for name, doc in by_name.items():
        if _inherits_itself(name, roles):
            build.fail(doc, ("inherits",), f"role '{name}' inherits from itself (through {', '.join(roles[name].inherits)})")
    return roles


ROLE_KIND = DocumentKind("role", schema_file("role"), compile_roles)


# -- alerts ---------------------------------------------------------------------------------------

_COUNTED_ROWS = ("record.export", "record.import", "audit.export")


def compile_alerts(docs: list[Document], build: Compilation) -> dict[str, Alert]:
    """Every alert document; the entity it watches exists and keeps its own log entries."""
    entities = build.items("entity")
    alerts: dict[str, Alert] = {}
    for doc in docs:
        data, on = doc.data, doc.data["match"]
        if data["name"] in alerts:
            build.fail(doc, ("name",), f"alert '{data['name']}' is declared twice")
            continue
        entity = on.get("entity")
        if entity is not None and entity not in build.broken:
            if entity not in entities:
                build.fail(doc, ("match", "entity"), f"no entity named '{entity}'")
            elif entities[entity].child:
                build.fail(doc, ("match", "entity"), f"'{entity}' is a child entity; its rows are logged "
                                                     "with their parent record")
        if data.get("measure") == "rows" and on.get("action") not in _COUNTED_ROWS:
            build.fail(doc, ("measure",), "rows are counted for exports and imports only; use measure: entries")
        alerts[data["name"]] = Alert(
            name=data["name"], action=on.get("action"), entity=entity, outcome=on.get("outcome"),
            threshold=data["threshold"], window_seconds=Alert.parse_window(data["window"]),
            measure=data.get("measure", "entries"), per=data.get("per", "actor"),
            severity=data.get("severity", "medium"), label=label(data.get("label")))
    return alerts


ALERT_KIND = DocumentKind("alert", schema_file("alert"), compile_alerts)
