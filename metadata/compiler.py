"""Semantic checks and compilation: checked documents -> an immutable ``AppModel``.

The JSON Schema has already vouched for each document's shape; here we check what a
schema cannot: references resolve, options fit types, names do not clash. Every problem
in every document is collected before reporting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from loom.errors import MetadataError
from loom.metadata.conditions import check_condition
from loom.metadata.loader import Document, Problem
from loom.metadata.model import (
    RESERVED_NAMES,
    USER_ENTITY,
    Alert,
    AppModel,
    Entity,
    Field,
    FormSection,
    Grant,
    Index,
    ListView,
    Option,
    Role,
)
from loom.metadata.types import COMMON_PROPERTIES, field_type

_NO_TITLE_TYPES = {"table", "json", "multiselect", "attachment"}
_NO_INDEX_TYPES = {"table", "json", "multiselect", "attachment", "text"}


def _label(value: Any) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if isinstance(value, str):
        return MappingProxyType({"en": value})
    return MappingProxyType(dict(value))


class _Compiler:
    def __init__(self, documents: Iterable[Document], broken: Iterable[str] = ()):
        self.documents = list(documents)
        self.problems: list[Problem] = []
        #: entities declared in documents that failed their schema check: references to
        #: them are not reported again as missing
        self.broken = set(broken)

    def fail(self, doc: Document, path: tuple, message: str) -> None:
        self.problems.append(doc.problem(path, message))

    def run(self) -> AppModel:
        entity_docs: dict[str, Document] = {}
        for doc in self.documents:
            if doc.kind != "entity":
                continue
            name = doc.data["name"]
            if name in entity_docs:
                other = entity_docs[name]
                self.fail(doc, ("name",), f"entity '{name}' is already declared in {other.file}:{other.line_of(('name',))}")
                continue
            if name == USER_ENTITY:
                self.fail(doc, ("name",), "'user' is Loom's built-in user entity; choose another name")
                continue
            entity_docs[name] = doc

        entities = {name: self.entity(doc) for name, doc in entity_docs.items()}
        self.check_references(entities, entity_docs)
        roles = self.roles(entities)
        alerts = self.alerts(entities)
        if self.problems:
            raise MetadataError(self.problems)
        documents = tuple(doc.data for doc in sorted(self.documents, key=lambda d: (d.kind, d.data.get("name", ""))))
        return AppModel(MappingProxyType(entities), documents, MappingProxyType(roles), MappingProxyType(alerts))

    # -- alerts -----------------------------------------------------------------------

    def alerts(self, entities: dict[str, Entity]) -> dict[str, Alert]:
        alerts: dict[str, Alert] = {}
        for doc in self.documents:
            if doc.kind != "alert":
                continue
            data, on = doc.data, doc.data["match"]
            if data["name"] in alerts:
                self.fail(doc, ("name",), f"alert '{data['name']}' is declared twice")
                continue
            entity = on.get("entity")
            if entity is not None and entity not in self.broken:
                if entity not in entities:
                    self.fail(doc, ("match", "entity"), f"no entity named '{entity}'")
                elif entities[entity].child:
                    self.fail(doc, ("match", "entity"), f"'{entity}' is a child entity; its rows are logged "
                                                     "with their parent record")
            if data.get("measure") == "rows" and on.get("action") not in ("record.export", "record.import", "audit.export"):
                self.fail(doc, ("measure",), "rows are counted for exports and imports only; use measure: entries")
            alerts[data["name"]] = Alert(
                name=data["name"], action=on.get("action"), entity=entity, outcome=on.get("outcome"),
                threshold=data["threshold"], window_seconds=Alert.parse_window(data["window"]),
                measure=data.get("measure", "entries"), per=data.get("per", "actor"),
                severity=data.get("severity", "medium"), label=_label(data.get("label")))
        return alerts

    # -- roles ------------------------------------------------------------------------

    def roles(self, entities: dict[str, Entity]) -> dict[str, Role]:
        docs: dict[str, Document] = {}
        for doc in self.documents:
            if doc.kind != "role":
                continue
            name = doc.data["name"]
            if name in docs:
                self.fail(doc, ("name",), f"role '{name}' is already declared in {docs[name].file}")
                continue
            docs[name] = doc
        roles = {name: self.role(doc, entities) for name, doc in docs.items()}
        for doc in docs.values():
            for i, parent in enumerate(doc.data.get("inherits", [])):
                if parent not in docs and parent not in self.broken:
                    self.fail(doc, ("inherits", i), f"no role named '{parent}'")
        for name, doc in docs.items():
            if self._inherits_itself(name, roles):
                self.fail(doc, ("inherits",), f"role '{name}' inherits from itself (through {', '.join(roles[name].inherits)})")
        return roles

    @staticmethod
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

    def role(self, doc: Document, entities: dict[str, Entity]) -> Role:
        data = doc.data
        grants: dict[str, Grant] = {}
        for entity_name, raw in data.get("permissions", {}).items():
            path = ("permissions", entity_name)
            entity = entities.get(entity_name)
            if entity is None and entity_name != "*":
                if entity_name not in self.broken:
                    self.fail(doc, path, f"no entity named '{entity_name}'")
                continue
            fields = dict(raw.get("fields", {}))
            default = fields.pop("*", "write")
            if entity is not None:
                for name in fields:
                    if name not in entity.all_fields:
                        self.fail(doc, path + ("fields", name), f"no field named '{name}' in {entity_name}")
            scope = raw.get("scope", "all")
            where = None
            if isinstance(scope, dict):
                where = scope["where"]
                scope = "where"
                if entity is None:
                    self.fail(doc, path + ("scope",), "a where-scope needs a single entity, not '*'")
                else:
                    check_condition(entity, where, path + ("scope", "where"),
                                    lambda p, message: self.fail(doc, p, message))
            grants[entity_name] = Grant(frozenset(raw.get("actions", ())), scope,
                                        MappingProxyType(where) if where else None,
                                        MappingProxyType(fields), default)
        return Role(name=data["name"], label=_label(data.get("label")), inherits=tuple(data.get("inherits", ())),
                    admin=frozenset(data.get("admin", ())), grants=MappingProxyType(grants))

    # -- one entity -------------------------------------------------------------------

    def entity(self, doc: Document) -> Entity:
        data = doc.data
        child = bool(data.get("child", False))
        fields: list[Field] = []
        seen: dict[str, int] = {}
        for i, raw in enumerate(data["fields"]):
            name = raw["name"]
            if name in seen:
                self.fail(doc, ("fields", i, "name"), f"field '{name}' is already declared as fields[{seen[name]}]")
                continue
            if name in RESERVED_NAMES:
                self.fail(doc, ("fields", i, "name"),
                          f"'{name}' is a standard field every record has; choose another name")
                continue
            seen[name] = i
            fields.append(self.field(doc, ("fields", i), raw))
        names = {f.name for f in fields}
        for f in fields:
            if f.renamed_from and f.renamed_from in names:
                self.fail(doc, ("fields", seen[f.name], "renamed_from"),
                          f"'{f.renamed_from}' is still a field of this entity; a renamed field's old name must be gone")

        standard = {"id"} if child else {"id", "version", "owner", "created_at", "created_by", "updated_at", "updated_by"}
        known = names | standard
        by_name = {f.name: f for f in fields}

        title_field = data.get("title_field")
        if title_field is None:
            title_field = next((f.name for f in fields if f.type == "string"), "id")
        elif title_field not in known:
            self.fail(doc, ("title_field",), f"no field named '{title_field}' in this entity")
        elif title_field in by_name and by_name[title_field].type in _NO_TITLE_TYPES:
            self.fail(doc, ("title_field",), f"a {by_name[title_field].type} field cannot name a record")

        def known_field(path: tuple, name: str) -> bool:
            if name not in known:
                self.fail(doc, path, f"no field named '{name}' in this entity")
                return False
            return True

        indexes = []
        for i, raw in enumerate(data.get("indexes", [])):
            for j, key in enumerate(raw["fields"]):
                name = key.lstrip("-")
                if known_field(("indexes", i, "fields", j), name) and name in by_name and \
                        by_name[name].type in _NO_INDEX_TYPES:
                    self.fail(doc, ("indexes", i, "fields", j), f"a {by_name[name].type} field cannot be indexed")
            indexes.append(Index(tuple(raw["fields"]), bool(raw.get("unique", False))))

        sections = []
        for i, raw in enumerate(data.get("form", {}).get("sections", [])):
            for j, name in enumerate(raw["fields"]):
                known_field(("form", "sections", i, "fields", j), name)
            sections.append(FormSection(tuple(raw["fields"]), _label(raw.get("label")), raw.get("columns", 1)))

        raw_list = data.get("list", {})
        for key in ("columns", "filters"):
            for j, name in enumerate(raw_list.get(key, [])):
                if known_field(("list", key, j), name) and name in by_name and by_name[name].type == "table":
                    self.fail(doc, ("list", key, j), "a table field cannot be a list column or filter")
        sort = raw_list.get("sort", "-id" if child else "-created_at")
        for key in sort.split(","):
            known_field(("list", "sort"), key.lstrip("-"))
        columns = tuple(raw_list.get("columns", [f.name for f in fields if f.stored and not f.hidden][:6]))
        list_view = ListView(columns, tuple(raw_list.get("filters", [])), sort)

        entity = Entity(
            name=data["name"], fields=tuple(fields), label=_label(data.get("label")),
            help=_label(data.get("help")), app=data.get("app"), title_field=title_field,
            child=child, renamed_from=data.get("renamed_from"), indexes=tuple(indexes),
            form=tuple(sections), list=list_view, audit_reads=bool(data.get("audit_reads", False)),
            label_plural=_label(data.get("label_plural")), nav_order=data.get("nav_order"),
        )
        for f in entity.state_locked_fields:
            path = ("fields", seen[f.name], "read_only_when")
            if child:
                self.fail(doc, path, "a child entity's rows change with their parent: put read_only_when on "
                                     "the parent's table field")
            else:
                check_condition(entity, f.read_only_when, path, lambda p, message: self.fail(doc, p, message))
        return entity

    def field(self, doc: Document, path: tuple, raw: dict[str, Any]) -> Field:
        kind = field_type(raw["type"])
        if raw["type"] in ("select", "multiselect") and not raw.get("options"):
            self.fail(doc, path, f"a {raw['type']} field needs options: [{{value: ...}}, ...]")
        if raw["type"] in ("link", "table") and not raw.get("target"):
            self.fail(doc, path, f"a {raw['type']} field needs a target entity")
        allowed = COMMON_PROPERTIES | kind.properties
        for key in raw:
            if key not in allowed:
                self.fail(doc, path + (key,), f"'{key}' does not apply to a {raw['type']} field")
        options = tuple(Option(o["value"], _label(o.get("label"))) for o in raw.get("options", []))
        values = [o.value for o in options]
        for i, value in enumerate(values):
            if values.index(value) != i:
                self.fail(doc, path + ("options", i, "value"), f"option '{value}' is listed twice")
        precision, scale = raw.get("precision"), raw.get("scale")
        if precision is not None and scale is not None and scale >= precision:
            self.fail(doc, path + ("scale",), f"scale ({scale}) must be smaller than precision ({precision})")
        if raw.get("pattern"):
            try:
                re.compile(raw["pattern"])
            except re.error as exc:
                self.fail(doc, path + ("pattern",), f"not a valid regular expression: {exc}")
        if raw.get("validators") and not kind.text_like:
            self.fail(doc, path + ("validators",), "validators apply to text fields only")
        if raw["type"] in _NO_INDEX_TYPES:
            for key in ("unique", "index"):
                if raw.get(key):
                    self.fail(doc, path + (key,), f"a {raw['type']} field cannot be {'unique' if key == 'unique' else 'indexed'}")
        field = Field(
            name=raw["name"], type=raw["type"], label=_label(raw.get("label")), help=_label(raw.get("help")),
            required=bool(raw.get("required", False)), unique=bool(raw.get("unique", False)),
            default=raw.get("default"), read_only=bool(raw.get("read_only", False)),
            hidden=bool(raw.get("hidden", False)), index=bool(raw.get("index", False)),
            max_length=raw.get("max_length"), pattern=raw.get("pattern"), options=options,
            validators=tuple(raw.get("validators", ())), target=raw.get("target"),
            precision=precision, scale=scale, currency=raw.get("currency"),
            max_size=raw.get("max_size"), accept=tuple(raw.get("accept", ())),
            renamed_from=raw.get("renamed_from"), secret=bool(raw.get("secret", False)),
            read_only_when=MappingProxyType(raw["read_only_when"]) if raw.get("read_only_when") else None,
        )
        if raw.get("read_only") and raw.get("read_only_when"):
            self.fail(doc, path + ("read_only_when",), "the field is read_only already; drop one of the two")
        # min, max and default are values of the field's own type
        converted: dict[str, Any] = {}
        for key in ("min", "max", "default"):
            if raw.get(key) is None or (kind.name == "table"):
                continue
            try:
                converted[key] = kind.coerce(raw[key], field)
            except ValueError as exc:
                self.fail(doc, path + (key,), f"{raw[key]!r} does not fit a {raw['type']} field: {exc}")
        if kind.name == "table" and raw.get("default") is not None:
            self.fail(doc, path + ("default",), "a table field cannot have a default")
        if "min" in converted and "max" in converted and converted["min"] > converted["max"]:
            self.fail(doc, path + ("max",), "max is smaller than min")
        return Field(**{**field.__dict__, **converted})

    # -- across entities ------------------------------------------------------------

    def check_references(self, entities: dict[str, Entity], docs: dict[str, Document]) -> None:
        parents: dict[str, str] = {}
        for name, entity in entities.items():
            doc = docs[name]
            index_of = {raw["name"]: i for i, raw in enumerate(doc.data["fields"])}
            for f in entity.fields:
                path = ("fields", index_of[f.name], "target")
                if f.type == "link":
                    target = entities.get(f.target)
                    if f.target != USER_ENTITY and target is None and f.target not in self.broken:
                        self.fail(doc, path, f"no entity named '{f.target}' to link to")
                    elif target is not None and target.child:
                        self.fail(doc, path, f"'{f.target}' is a child entity: its rows live inside their parent and cannot be linked to")
                elif f.type == "table":
                    target = entities.get(f.target)
                    if target is None:
                        if f.target not in self.broken:
                            self.fail(doc, path, f"no entity named '{f.target}' for the child rows")
                    elif not target.child:
                        self.fail(doc, path, f"'{f.target}' must be declared with child: true to be used as a table")
                    elif f.target in parents:
                        self.fail(doc, path, f"'{f.target}' already holds the rows of {parents[f.target]}; a child entity belongs to one table field")
                    else:
                        parents[f.target] = f"{name}.{f.name}"
                    if entity.child:
                        self.fail(doc, ("fields", index_of[f.name], "type"), "a child entity cannot hold tables of its own")
        for name, entity in entities.items():
            if entity.child and name not in parents:
                self.fail(docs[name], ("child",), "no table field holds the rows of this child entity")
            renamed = entity.renamed_from
            if renamed and renamed in entities:
                self.fail(docs[name], ("renamed_from",), f"'{renamed}' is still an entity; a renamed entity's old name must be gone")


def compile_documents(documents: Iterable[Document], *, earlier: Iterable[Problem] = (),
                      broken: Iterable[str] = ()) -> AppModel:
    """Compile checked documents into an ``AppModel``; raise ``MetadataError`` listing
    every problem found, after the ``earlier`` ones (from loading). ``broken`` names
    entities whose documents failed to load, so they are not reported missing too."""
    compiler = _Compiler(documents, broken)
    compiler.problems.extend(earlier)
    return compiler.run()


def _standalone(data: dict[str, Any]) -> Document:
    return Document(data, "<stored definition>")


def compile_entity(data: dict[str, Any]) -> Entity:
    """Compile one stored entity document on its own (its links are not resolved)."""
    compiler = _Compiler([])
    entity = compiler.entity(_standalone(data))
    if compiler.problems:
        raise MetadataError(compiler.problems)
    return entity


def compile_field(data: dict[str, Any]) -> Field:
    """Compile one stored field definition on its own."""
    compiler = _Compiler([])
    result = compiler.field(_standalone({"fields": [data]}), ("fields", 0), data)
    if compiler.problems:
        raise MetadataError(compiler.problems)
    return result
