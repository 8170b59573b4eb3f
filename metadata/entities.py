"""The ``entity`` document kind: checking and compiling entity documents into ``Entity``
objects, what a JSON Schema cannot check (references resolve, options fit types, names
do not clash), each problem reported with the file and line it is about.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from loom.metadata.autonumber import check_pattern
from loom.metadata.conditions import check_condition
from loom.metadata.diff import diff_entities
from loom.metadata.documents import Document
from loom.metadata.kinds import Compilation, DocumentKind, schema_file
from loom.metadata.model import (
    RESERVED_NAMES,
    ROLLUP_AGGREGATES,
    USER_ENTITY,
    Entity,
    Field,
    FormSection,
    Index,
    ListView,
    Option,
    Rollup,
    Rule,
)
from loom.metadata.types import COMMON_PROPERTIES, FieldType, field_type, field_type_names

#: what a field of a type that requires a property is told it needs
_NEEDS = {"options": "options: [{value: ...}, ...]", "target": "a target entity"}
_CHILD_STANDARD = frozenset({"id"})
_STANDARD = frozenset({"id", "version", "owner", "created_at", "created_by", "updated_at", "updated_by"})
#: business-logic properties any stored field may carry (compiled by ``compile_logic``)
LOGIC_PROPERTIES = frozenset({"compute", "required_when", "visible_when", "clear_when_hidden"})
#: roll-ups and recompute through links (compiled by ``compile_logic`` too)
DERIVED_PROPERTIES = frozenset({"rollup", "depends_on_links"})
#: the field types a roll-up may have
ROLLUP_TYPES = frozenset({"integer", "decimal", "money", "percent", "string", "text", "date", "datetime"})
#: the field types a computed field may have (those an expression's result fits)
COMPUTABLE_TYPES = frozenset({"integer", "decimal", "money", "percent", "string", "text", "boolean", "date",
                              "datetime"})


def label(value: Any) -> Mapping[str, str]:
    """A label as written (one text, or text per language) as text per language."""
    if value is None:
        return MappingProxyType({})
    if isinstance(value, str):
        return MappingProxyType({"en": value})
    return MappingProxyType(dict(value))


# -- fields ---------------------------------------------------------------------------------------

def _check_properties(build: Compilation, doc: Document, path: tuple, raw: dict[str, Any], kind: FieldType) -> None:
    """Properties the field's type needs or does not accept; options listed twice."""
    for needed in sorted(kind.requires):
        if not raw.get(needed):
            build.fail(doc, path, f"a {raw['type']} field needs {_NEEDS.get(needed, needed)}")
    allowed = COMMON_PROPERTIES | kind.properties | (LOGIC_PROPERTIES | DERIVED_PROPERTIES if kind.stored else frozenset())
    for key in raw:
        if key not in allowed:
            build.fail(doc, path + (key,), f"'{key}' does not apply to a {raw['type']} field")
    values = [o["value"] for o in raw.get("options", [])]
    for i, value in enumerate(values):
        if values.index(value) != i:
            build.fail(doc, path + ("options", i, "value"), f"option '{value}' is listed twice")
    _check_settings(build, doc, path, raw, kind)


def _check_settings(build: Compilation, doc: Document, path: tuple, raw: dict[str, Any], kind: FieldType) -> None:
    """Settings that contradict each other or the field's type."""
    precision, scale = raw.get("precision"), raw.get("scale")
    if precision is not None and scale is not None and scale >= precision:
        build.fail(doc, path + ("scale",), f"scale ({scale}) must be smaller than precision ({precision})")
    if raw.get("pattern"):
        try:
            re.compile(raw["pattern"])
        except re.error as exc:
            build.fail(doc, path + ("pattern",), f"not a valid regular expression: {exc}")
    if raw.get("validators") and not kind.text_like:
        build.fail(doc, path + ("validators",), "validators apply to text fields only")
    if not kind.indexable:
        for key in ("unique", "index"):
            if raw.get(key):
                build.fail(doc, path + (key,),
                           f"a {raw['type']} field cannot be {'unique' if key == 'unique' else 'indexed'}")
    if raw.get("read_only") and raw.get("read_only_when"):
        build.fail(doc, path + ("read_only_when",), "the field is read_only already; drop one of the two")


def _typed_values(build: Compilation, doc: Document, path: tuple, raw: dict[str, Any], field: Field) -> dict[str, Any]:
    """``min``, ``max`` and ``default`` as values of the field's own type."""
    kind = field.kind
    converted: dict[str, Any] = {}
    if not kind.stored:
        if raw.get("default") is not None:
            build.fail(doc, path + ("default",), f"a {raw['type']} field cannot have a default")
        return converted
    for key in ("min", "max", "default"):
        if raw.get(key) is None or key == "default" and _logic_default(raw):
            continue
        try:
            converted[key] = kind.coerce(raw[key], field)
        except ValueError as exc:
            build.fail(doc, path + (key,), f"{raw[key]!r} does not fit a {raw['type']} field: {exc}")
    if "min" in converted and "max" in converted and converted["min"] > converted["max"]:
        build.fail(doc, path + ("max",), "max is smaller than min")
    return converted


def _logic_default(raw: dict[str, Any]) -> dict[str, str] | None:
    """A default written as ``{expression: ...}`` or ``{from: link.field}`` (a JSON
    field's default is a constant whatever its shape)."""
    default = raw.get("default")
    if raw["type"] != "json" and isinstance(default, dict) and default.keys() & {"expression", "from"}:
        return default
    return None


def _check_logic(build: Compilation, doc: Document, path: tuple, raw: dict[str, Any]) -> dict[str, Any]:
    """The business-logic properties as written (``compile_logic`` compiles them once every
    entity is known): what contradicts itself is reported here."""
    result: dict[str, Any] = {"compute": raw.get("compute"), "required_when": raw.get("required_when"),
                              "visible_when": raw.get("visible_when"),
                              "clear_when_hidden": bool(raw.get("clear_when_hidden", False))}
    if raw.get("clear_when_hidden") and not raw.get("visible_when"):
        build.fail(doc, path + ("clear_when_hidden",), "clear_when_hidden needs visible_when: a field that is "
                                                       "never hidden is never cleared")
    default = _logic_default(raw)
    if default is not None:
        if len(default) != 1 or not isinstance(next(iter(default.values())), str) or not next(iter(default.values())):
            build.fail(doc, path + ("default",), "a computed default is {expression: \"...\"} or "
                                                 "{from: \"link.field\"}: one key, with text")
        else:
            result["default"] = None
            result["default_expression"] = default.get("expression")
            result["default_from"] = default.get("from")
    if raw.get("compute"):
        result["read_only"] = True
        if raw["type"] not in COMPUTABLE_TYPES:
            build.fail(doc, path + ("compute",), f"a {raw['type']} field cannot be computed; computed fields are "
                                                 f"{', '.join(sorted(COMPUTABLE_TYPES))}")
        for key, what in (("required", "be required"), ("default", "have a default"),
                          ("required_when", "have required_when"), ("clear_when_hidden", "be cleared when hidden")):
            if raw.get(key) not in (None, False):
                build.fail(doc, path + (key,), f"a computed field cannot {what}: Loom fills it in; "
                                               f"drop '{key}' or 'compute'")
    if raw.get("required") and raw.get("required_when"):
        build.fail(doc, path + ("required_when",), "the field is required always; drop required or required_when")
    return result


def _read_only_when(value: Any) -> Mapping[str, Any] | str | None:
    """``read_only_when`` as written: an expression (text), or a row-scope condition."""
    if not value:
        return None
    return value if isinstance(value, str) else MappingProxyType(value)


def _check_rollup(build: Compilation, doc: Document, path: tuple, raw: dict[str, Any]) -> dict[str, Any]:
    """A roll-up and ``depends_on_links`` as written (``compile_logic`` resolves the roll-up's
    source once every entity is known): what contradicts itself is reported here."""
    result: dict[str, Any] = {"depends_on_links": bool(raw.get("depends_on_links", False))}
    if raw.get("depends_on_links") and not raw.get("compute"):
        build.fail(doc, path + ("depends_on_links",), "depends_on_links applies to a computed field: add "
                                                      "compute (an expression reading through a link) or drop it")
    spec = raw.get("rollup")
    if spec is None:
        return result
    at = path + ("rollup",)
    aggregates = [a for a in ROLLUP_AGGREGATES if a in spec]
    if len(aggregates) != 1:
        build.fail(doc, at, "a roll-up takes exactly one aggregate (sum: field, count: true, min: field, "
                            f"max: field or avg: field), not {' and '.join(aggregates) or 'none'}")
        return result
    aggregate = aggregates[0]
    result["read_only"] = True
    result["rollup"] = Rollup(source=spec["from"], aggregate=aggregate,
                              field=None if aggregate == "count" else spec[aggregate], where=spec.get("where"))
    if raw["type"] not in ROLLUP_TYPES:
        build.fail(doc, at, f"a {raw['type']} field cannot hold a roll-up; roll-ups are "
                            f"{', '.join(sorted(ROLLUP_TYPES))} fields")
    for key, what in (("compute", "also be computed"), ("default", "have a default"), ("required", "be required"),
                      ("required_when", "have required_when"), ("autonumber", "be numbered")):
        if raw.get(key) not in (None, False):
            build.fail(doc, path + (key,), f"a roll-up field cannot {what}: Loom fills it in from the records it "
                                           f"rolls up; drop '{key}' or 'rollup'")
    return result


def _check_autonumber(build: Compilation, doc: Document, path: tuple, raw: dict[str, Any]) -> None:
    """An autonumber pattern that makes numbers, on a field only Loom fills."""
    if raw.get("autonumber") is None:
        if "gap_free" in raw:
            build.fail(doc, path + ("gap_free",), "gap_free applies to autonumber fields only")
        return
    problem = check_pattern(raw["autonumber"], raw.get("max_length"))
    if problem:
        build.fail(doc, path + ("autonumber",), f"not a usable autonumber pattern: {problem}")
    for key, why in (("default", "Loom gives it its value"), ("required", "it always has a value"),
                     ("read_only_when", "it is always read-only"), ("compute", "Loom numbers it")):
        if raw.get(key) is not None and raw.get(key) is not False:
            build.fail(doc, path + (key,), f"an autonumber field cannot have {key}: {why}")


def compile_field(build: Compilation, doc: Document, path: tuple, raw: dict[str, Any]) -> Field:
    """One field definition (at ``path`` in ``doc``) as a ``Field``."""
    kind = field_type(raw["type"])
    _check_properties(build, doc, path, raw, kind)
    _check_autonumber(build, doc, path, raw)
    logic = {**_check_logic(build, doc, path, raw), **_check_rollup(build, doc, path, raw)}
    field = Field(
        name=raw["name"], type=raw["type"], label=label(raw.get("label")), help=label(raw.get("help")),
        required=bool(raw.get("required", False)), unique=bool(raw.get("unique", False)),
        default=raw.get("default"), read_only=bool(raw.get("read_only", False)),
        hidden=bool(raw.get("hidden", False)), index=bool(raw.get("index", False)),
        max_length=raw.get("max_length"), pattern=raw.get("pattern"),
        options=tuple(Option(o["value"], label(o.get("label"))) for o in raw.get("options", [])),
        validators=tuple(raw.get("validators", ())), target=raw.get("target"),
        precision=raw.get("precision"), scale=raw.get("scale"), currency=raw.get("currency"),
        max_size=raw.get("max_size"), accept=tuple(raw.get("accept", ())),
        renamed_from=raw.get("renamed_from"), secret=bool(raw.get("secret", False)),
        read_only_when=_read_only_when(raw.get("read_only_when")),
        autonumber=raw.get("autonumber"), gap_free=bool(raw.get("gap_free", False)),
    )
    if field.autonumber:  # filled by Loom on create, never written by users
        field = Field(**{**field.__dict__, "read_only": True})
    return Field(**{**field.__dict__, **logic, **_typed_values(build, doc, path, raw, field)})


# -- one entity -----------------------------------------------------------------------------------

class _EntityCheck:
    """The parts of one entity document that refer to its fields by name."""

    def __init__(self, build: Compilation, doc: Document, fields: list[Field]):
        self.build, self.doc = build, doc
        self.child = bool(doc.data.get("child", False))
        self.by_name = {f.name: f for f in fields}
        self.known = set(self.by_name) | (_CHILD_STANDARD if self.child else _STANDARD)

    def fail(self, path: tuple, message: str) -> None:
        self.build.fail(self.doc, path, message)

    def declared(self, path: tuple, name: str) -> Field | None:
        """The declared field ``name``; a name that is no field at all is reported."""
        if name not in self.known:
            self.fail(path, f"no field named '{name}' in this entity")
        return self.by_name.get(name)

    def title_field(self, fields: list[Field]) -> str:
        title = self.doc.data.get("title_field")
        if title is None:
            return next((f.name for f in fields if f.type == "string"), "id")
        f = self.declared(("title_field",), title)
        if f is not None and not f.kind.names_records:
            self.fail(("title_field",), f"a {f.type} field cannot name a record")
        return title

    def indexes(self) -> tuple[Index, ...]:
        result = []
        for i, raw in enumerate(self.doc.data.get("indexes", [])):
            for j, key in enumerate(raw["fields"]):
                f = self.declared(("indexes", i, "fields", j), key.lstrip("-"))
                if f is not None and not f.kind.indexable:
                    self.fail(("indexes", i, "fields", j), f"a {f.type} field cannot be indexed")
            result.append(Index(tuple(raw["fields"]), bool(raw.get("unique", False))))
        return tuple(result)

    def sections(self) -> tuple[FormSection, ...]:
        result = []
        for i, raw in enumerate(self.doc.data.get("form", {}).get("sections", [])):
            for j, name in enumerate(raw["fields"]):
                self.declared(("form", "sections", i, "fields", j), name)
            result.append(FormSection(tuple(raw["fields"]), label(raw.get("label")), raw.get("columns", 1)))
        return tuple(result)

    def list_view(self, fields: list[Field]) -> ListView:
        raw = self.doc.data.get("list", {})
        for key in ("columns", "filters"):
            for j, name in enumerate(raw.get(key, [])):
                f = self.declared(("list", key, j), name)
                if f is not None and not f.stored:
                    self.fail(("list", key, j), f"a {f.type} field cannot be a list column or filter")
        sort = raw.get("sort", "-id" if self.child else "-created_at")
        for key in sort.split(","):
            self.declared(("list", "sort"), key.lstrip("-"))
        columns = tuple(raw.get("columns", [f.name for f in fields if f.stored and not f.hidden][:6]))
        return ListView(columns, tuple(raw.get("filters", [])), sort)

    def owner_field(self) -> str:
        """The field that says whose record it is: a link to user of this entity."""
        name = self.doc.data.get("owner_field", "owner")
        if name == "owner":
            return name
        path = ("owner_field",)
        f = self.declared(path, name)
        if self.child:
            self.fail(path, "a child entity's rows belong to their parent's owner; put owner_field on the parent")
        elif f is not None and (f.type != "link" or f.target != USER_ENTITY):
            self.fail(path, f"'{name}' is a {f.type} field{' to ' + f.target if f.target else ''}; "
                            "the owner field must be a link to user")
        elif name in _STANDARD:
            self.fail(path, f"'{name}' is a standard field Loom maintains; the owner field is owner or a "
                            "link to user declared here")
        return name

    def rules(self) -> tuple[Rule, ...]:
        result = []
        for i, raw in enumerate(self.doc.data.get("rules", [])):
            for j, name in enumerate(raw.get("fields", [])):
                self.declared(("rules", i, "fields", j), name)
            result.append(Rule(raw["when"], label(raw.get("message")), tuple(raw.get("fields", ()))))
        return tuple(result)


def _fields(build: Compilation, doc: Document) -> tuple[list[Field], dict[str, int]]:
    """The declared fields, and the index in ``fields`` of each name."""
    fields: list[Field] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(doc.data["fields"]):
        name = raw["name"]
        if name in seen:
            build.fail(doc, ("fields", i, "name"), f"field '{name}' is already declared as fields[{seen[name]}]")
        elif name in RESERVED_NAMES:
            build.fail(doc, ("fields", i, "name"), f"'{name}' is a standard field every record has; choose another name")
        else:
            seen[name] = i
            fields.append(compile_field(build, doc, ("fields", i), raw))
    for f in fields:
        if f.renamed_from and f.renamed_from in seen:
            build.fail(doc, ("fields", seen[f.name], "renamed_from"),
                       f"'{f.renamed_from}' is still a field of this entity; a renamed field's old name must be gone")
    return fields, seen


def _check_state_locks(build: Compilation, doc: Document, entity: Entity, seen: dict[str, int]) -> None:
    for f in entity.state_locked_fields:
        path = ("fields", seen[f.name], "read_only_when")
        if entity.child:
            build.fail(doc, path, "a child entity's rows change with their parent: put read_only_when on "
                                  "the parent's table field")
        elif not isinstance(f.read_only_when, str):  # an expression is checked with the others
            check_condition(entity, f.read_only_when, path, lambda p, message: build.fail(doc, p, message))


def compile_entity(build: Compilation, doc: Document) -> Entity:
    """One entity document as an ``Entity`` (its links to other entities unchecked)."""
    data = doc.data
    fields, seen = _fields(build, doc)
    check = _EntityCheck(build, doc, fields)
    entity = Entity(
        name=data["name"], fields=tuple(fields), label=label(data.get("label")),
        help=label(data.get("help")), app=data.get("app"), title_field=check.title_field(fields),
        child=check.child, renamed_from=data.get("renamed_from"), indexes=check.indexes(),
        form=check.sections(), list=check.list_view(fields), audit_reads=bool(data.get("audit_reads", False)),
        label_plural=label(data.get("label_plural")), nav_order=data.get("nav_order"),
        rules=check.rules(), owner_field=check.owner_field(),
    )
    _check_state_locks(build, doc, entity, seen)
    if entity.child:
        for f in entity.fields:
            if f.autonumber:
                build.fail(doc, ("fields", seen[f.name], "autonumber"),
                           "a child entity's rows are not numbered: put the autonumber field on the parent")
    return entity


# -- across entities ------------------------------------------------------------------------------

def _check_link(build: Compilation, doc: Document, path: tuple, f: Field, entities: dict[str, Entity]) -> None:
    target = entities.get(f.target)
    if f.target != USER_ENTITY and target is None and f.target not in build.broken:
        build.fail(doc, path, f"no entity named '{f.target}' to link to")
    elif target is not None and target.child:
        build.fail(doc, path, f"'{f.target}' is a child entity: its rows live inside their parent and cannot be linked to")


def _check_table(build: Compilation, doc: Document, path: tuple, f: Field, entities: dict[str, Entity],
                 parents: dict[str, str], holder: str) -> None:
    target = entities.get(f.target)
    if target is None:
        if f.target not in build.broken:
            build.fail(doc, path, f"no entity named '{f.target}' for the child rows")
    elif not target.child:
        build.fail(doc, path, f"'{f.target}' must be declared with child: true to be used as a table")
    elif f.target in parents:
        build.fail(doc, path, f"'{f.target}' already holds the rows of {parents[f.target]}; "
                              "a child entity belongs to one table field")
    else:
        parents[f.target] = holder


def check_references(build: Compilation, entities: dict[str, Entity], docs: dict[str, Document]) -> None:
    """Links and tables point at entities that exist and fit; child entities have a parent."""
    parents: dict[str, str] = {}
    for name, entity in entities.items():
        doc = docs[name]
        index_of = {raw["name"]: i for i, raw in enumerate(doc.data["fields"])}
        for f in entity.fields:
            path = ("fields", index_of[f.name], "target")
            if f.type == "link":
                _check_link(build, doc, path, f, entities)
            elif f.type == "table":
                _check_table(build, doc, path, f, entities, parents, f"{name}.{f.name}")
                if entity.child:
                    build.fail(doc, ("fields", index_of[f.name], "type"), "a child entity cannot hold tables of its own")
    for name, entity in entities.items():
        if entity.child and name not in parents:
            build.fail(docs[name], ("child",), "no table field holds the rows of this child entity")
        renamed = entity.renamed_from
        if renamed and renamed in entities:
            build.fail(docs[name], ("renamed_from",), f"'{renamed}' is still an entity; a renamed entity's old name must be gone")


def compile_entities(docs: list[Document], build: Compilation) -> dict[str, Entity]:
    """Every entity document: names unique and not the built-in user, then each entity,
    then the references between them."""
    entity_docs: dict[str, Document] = {}
    for doc in docs:
        name = doc.data["name"]
        if name in entity_docs:
            other = entity_docs[name]
            build.fail(doc, ("name",), f"entity '{name}' is already declared in {other.file}:{other.line_of(('name',))}")
        elif name == USER_ENTITY:
            build.fail(doc, ("name",), "'user' is Loom's built-in user entity; choose another name")
        else:
            entity_docs[name] = doc
    entities = {name: compile_entity(build, doc) for name, doc in entity_docs.items()}
    check_references(build, entities, entity_docs)
    return _compile_logic(build, entities, entity_docs)


# -- business logic -------------------------------------------------------------------------------

#: compiles the expressions of entity documents (compute, required_when, defaults, rules)
#: once every entity is known: ``(build, entities, docs) -> entities with them compiled``.
#: The expression language sits above the metadata language, so it registers itself here
#: (``loom.expressions.logic``) rather than being imported.
LogicCompiler = Callable[[Compilation, dict[str, Entity], dict[str, Document]], dict[str, Entity]]
_logic_compiler: list[LogicCompiler] = []


def use_logic_compiler(compiler: LogicCompiler) -> None:
    """Register what compiles entities' expressions (``loom.expressions`` does, on import)."""
    _logic_compiler[:] = [compiler]


def _compile_logic(build: Compilation, entities: dict[str, Entity], docs: dict[str, Document]) -> dict[str, Entity]:
    if _logic_compiler:
        return _logic_compiler[0](build, entities, docs)
    for name, entity in entities.items():
        if entity.has_logic:
            build.fail(docs[name], ("name",), "this entity has expressions (compute, required_when, "
                                              "visible_when, read_only_when, rules or a computed default), which need loom.expressions loaded to be checked")
    return entities


def entity_schema() -> dict[str, Any]:
    """The entity document's JSON Schema: a field's ``type`` is any registered field type."""
    schema = copy.deepcopy(schema_file("entity"))
    schema["$defs"]["field"]["properties"]["type"]["enum"] = list(field_type_names())
    return schema


def _entity_changes(old: Mapping[str, Entity], new: Mapping[str, Entity]) -> list[str]:
    return [line for change in diff_entities(old, new) for line in change.describe()]


ENTITY_KIND = DocumentKind("entity", entity_schema, compile_entities, _entity_changes, after=())
