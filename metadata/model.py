"""The compiled metadata model: immutable objects the rest of Loom works from.

A model is built by ``loom.metadata.compiler`` from checked documents and never changes;
a new metadata version is a new model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from loom.metadata.formatting import label_text
from loom.metadata.types import FieldType, field_type

#: prefix of every entity table, so entity tables can never clash with Loom's own tables
TABLE_PREFIX = "e_"
USER_ENTITY = "user"
USER_TABLE = "loom_users"

DEFAULT_DECIMAL = {"decimal": (18, 4), "money": (18, 2), "percent": (9, 4)}

EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class Option:
    value: str
    label: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)


#: the aggregates a roll-up field may take
ROLLUP_AGGREGATES = ("sum", "count", "min", "max", "avg")


@dataclass(frozen=True)
class Rollup:
    """A roll-up: an aggregate of the child rows of a table field of the entity
    (``from: lines``) or of the records of another entity whose link points at the record
    (``from: service_ticket.customer``), optionally only those meeting ``where``."""

    source: str
    aggregate: str
    #: the aggregated field of the source entity (None for count)
    field: str | None = None
    where: str | None = None
    #: resolved when the metadata is compiled: the source entity, and either the table
    #: field of the entity (child rows) or the link field of the source entity
    entity: str | None = None
    table: str | None = None
    link: str | None = None
    #: ``where`` compiled (``loom.expressions.Expression``) against the source entity
    where_expr: Any = dc_field(default=None, compare=False, repr=False)

    @property
    def text(self) -> str:
        """How the roll-up reads in messages: ``sum(amount) of lines where ...``."""
        what = "count()" if self.aggregate == "count" else f"{self.aggregate}({self.field})"
        return f"{what} of {self.source}" + (f" where {self.where}" if self.where else "")

    @property
    def empty(self) -> Any:
        """The value over no records: 0 for sum and count, null for the others."""
        return 0 if self.aggregate in ("sum", "count") else None


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    label: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    help: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    required: bool = False
    unique: bool = False
    default: Any = None
    read_only: bool = False
    hidden: bool = False
    index: bool = False
    max_length: int | None = None
    min: Any = None
    max: Any = None
    pattern: str | None = None
    options: tuple[Option, ...] = ()
    validators: tuple[str, ...] = ()
    target: str | None = None
    precision: int | None = None
    scale: int | None = None
    currency: str | None = None
    max_size: int | None = None
    accept: tuple[str, ...] = ()
    renamed_from: str | None = None
    #: the value is kept out of the audit log and change events
    secret: bool = False
    #: a condition on the stored record; while it holds, nobody changes this field: an
    #: expression (text, docs/expressions.md) or a row-scope condition (a mapping)
    read_only_when: Mapping[str, Any] | str | None = None
    #: a standard field every record has (id, version, owner, ...), maintained by Loom
    system: bool = False
    #: Loom numbers new records with this pattern ("SO-{yyyy}{mm}-{seq:5}", see loom.metadata.autonumber)
    autonumber: str | None = None
    #: the number is taken in the record's own transaction: a failed create leaves no gap
    gap_free: bool = False
    #: business logic as written (docs/expressions.md): the expression the field is computed
    #: from at every write; the condition under which it needs a value; a default computed
    #: at create ({expression: ...}) or read from a linked record ({from: link.field})
    compute: str | None = None
    required_when: str | None = None
    default_expression: str | None = None
    default_from: str | None = None
    #: the form shows the field only while the record meets this condition; a hidden field
    #: is not required, and keeps its value unless ``clear_when_hidden`` (then set to null)
    visible_when: str | None = None
    clear_when_hidden: bool = False
    #: the same, compiled (``loom.expressions.Expression``) when the metadata is, so no
    #: request parses them again; None in a definition compiled on its own
    compute_expr: Any = dc_field(default=None, compare=False, repr=False)
    required_when_expr: Any = dc_field(default=None, compare=False, repr=False)
    default_expr: Any = dc_field(default=None, compare=False, repr=False)
    #: the field holds an aggregate of child rows or linked records (``Rollup``), kept up
    #: to date by every write that changes them (``loom.records.derived``)
    rollup: Rollup | None = None
    #: the computed field is recomputed also when a record its expression reads through a
    #: link changes, not only when its own record is written
    depends_on_links: bool = False
    visible_when_expr: Any = dc_field(default=None, compare=False, repr=False)
    #: ``read_only_when`` compiled, where it is an expression
    read_only_when_expr: Any = dc_field(default=None, compare=False, repr=False)

    @property
    def derived(self) -> bool:
        """Whether Loom fills the field in (computed or rolled up): nobody writes it."""
        return bool(self.compute or self.rollup)

    @property
    def kind(self) -> FieldType:
        return field_type(self.type)

    @property
    def stored(self) -> bool:
        return self.kind.stored

    @property
    def option_values(self) -> tuple[str, ...]:
        return tuple(o.value for o in self.options)

    @property
    def precision_scale(self) -> tuple[int, int]:
        default_precision, default_scale = DEFAULT_DECIMAL.get(self.type, (18, 4))
        scale = default_scale if self.scale is None else self.scale
        precision = self.precision or max(default_precision, scale + 1)
        return precision, scale

    def title(self, locale: str = "en") -> str:
        return label_text(self.label, locale, self.name.replace("_", " ").capitalize())

    def storage_signature(self) -> tuple:
        """What decides the column's SQL type: a change here is a type change."""
        if self.type in DEFAULT_DECIMAL:
            return ("decimal", *self.precision_scale)
        return (self.type, self.target if self.type == "link" else None)


@dataclass(frozen=True)
class Rule:
    """A validation rule: a record that meets ``when`` is refused, with ``message`` on
    ``fields`` (none: on the record as a whole)."""

    when: str
    message: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    fields: tuple[str, ...] = ()
    #: ``when`` compiled (``loom.expressions.Expression``)
    when_expr: Any = dc_field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Index:
    fields: tuple[str, ...]
    unique: bool = False

    @property
    def columns(self) -> tuple[tuple[str, bool], ...]:
        """(column, descending) pairs."""
        return tuple((f.lstrip("-"), f.startswith("-")) for f in self.fields)


@dataclass(frozen=True)
class FormSection:
    fields: tuple[str, ...]
    label: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    columns: int = 1
    #: the section Loom adds for fields the declared layout leaves out
    trailing: bool = False


@dataclass(frozen=True)
class ListView:
    columns: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    sort: str = "-created_at"


STANDARD_FIELDS: tuple[Field, ...] = (
    Field("id", "integer", MappingProxyType({"en": "ID", "zh": "编号"}), system=True, read_only=True),
    Field("version", "integer", MappingProxyType({"en": "Version", "zh": "版本"}), system=True, read_only=True),
    Field("owner", "link", MappingProxyType({"en": "Owner", "zh": "负责人"}), target=USER_ENTITY, system=True),
    Field("created_at", "datetime", MappingProxyType({"en": "Created at", "zh": "创建时间"}), system=True, read_only=True),
    Field("created_by", "link", MappingProxyType({"en": "Created by", "zh": "创建人"}), target=USER_ENTITY, system=True, read_only=True),
    Field("updated_at", "datetime", MappingProxyType({"en": "Updated at", "zh": "更新时间"}), system=True, read_only=True),
    Field("updated_by", "link", MappingProxyType({"en": "Updated by", "zh": "更新人"}), target=USER_ENTITY, system=True, read_only=True),
)
CHILD_STANDARD_FIELDS: tuple[Field, ...] = (STANDARD_FIELDS[0],)
#: names no declared field may take: the standard fields and the child-row links
RESERVED_NAMES = frozenset(f.name for f in STANDARD_FIELDS) | {"parent_id", "position"}


@dataclass(frozen=True)
class Entity:
    name: str
    fields: tuple[Field, ...]
    label: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    help: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    app: str | None = None
    title_field: str = "id"
    child: bool = False
    renamed_from: str | None = None
    indexes: tuple[Index, ...] = ()
    form: tuple[FormSection, ...] = ()
    list: ListView = dc_field(default_factory=ListView)
    #: every read of one record is written to the audit log
    audit_reads: bool = False
    #: the label of several records ("Customers"), for list headings and related lists
    label_plural: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    #: the entity's place in the navigation, lowest first; entities without one follow, by name
    nav_order: int | None = None
    #: validation rules, checked at every write (``Rule``)
    rules: tuple[Rule, ...] = ()
    #: the link-to-user field that says whose record it is (the "own" and "team" scopes,
    #: transfers); Loom keeps the standard ``owner`` equal to it at every write
    owner_field: str = "owner"
    #: the computed fields' names in the order they are computed (each after those it reads)
    compute_order: tuple[str, ...] = dc_field(default=(), compare=False)

    @property
    def table_name(self) -> str:
        return TABLE_PREFIX + self.name

    @cached_property
    def standard_fields(self) -> tuple[Field, ...]:
        return CHILD_STANDARD_FIELDS if self.child else STANDARD_FIELDS

    @cached_property
    def all_fields(self) -> Mapping[str, Field]:
        """Standard and declared fields by name, standard first."""
        return MappingProxyType({f.name: f for f in self.standard_fields + self.fields})

    @cached_property
    def stored_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.stored)

    @cached_property
    def state_locked_fields(self) -> tuple[Field, ...]:
        """Fields read-only while the stored record meets their ``read_only_when``."""
        return tuple(f for f in self.fields if f.read_only_when)

    @cached_property
    def has_logic(self) -> bool:
        """Whether writes compute, default, require or check anything by expression."""
        return bool(self.rules or self.rollups or any(f.compute or f.required_when or f.default_expression or f.default_from
                                      or f.visible_when or isinstance(f.read_only_when, str)
                                      for f in self.fields))

    @cached_property
    def rollups(self) -> tuple[Field, ...]:
        """The roll-up fields, those over child rows and those over linked records."""
        return tuple(f for f in self.fields if f.rollup is not None)

    @cached_property
    def table_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.type == "table")

    @cached_property
    def search_fields(self) -> tuple[Field, ...]:
        """The fields quick search looks in: the title and every text-like field."""
        result = [f for f in self.fields if f.kind.text_like]
        title = self.all_fields[self.title_field]
        if title not in result and title.kind.text_like:
            result.insert(0, title)
        return tuple(result)

    @cached_property
    def unplaced_fields(self) -> tuple[Field, ...]:
        """Declared fields a declared form layout leaves out: forms and record pages show
        them in a trailing section, so a field added later always gets an input."""
        if not self.form:
            return ()
        placed = {name for section in self.form for name in section.fields}
        return tuple(f for f in self.fields if f.name not in placed)

    @cached_property
    def layout(self) -> tuple[FormSection, ...]:
        """The form's sections: the declared ones plus a trailing, unlabelled one holding
        the unplaced fields; without a declared layout, one section with every field."""
        if not self.form:
            return (FormSection(fields=tuple(f.name for f in self.fields)),)
        if not self.unplaced_fields:
            return self.form
        return (*self.form, FormSection(fields=tuple(f.name for f in self.unplaced_fields), trailing=True))

    def field(self, name: str) -> Field:
        return self.all_fields[name]

    def title(self, locale: str = "en") -> str:
        return label_text(self.label, locale, self.name.replace("_", " ").capitalize())

    def plural_title(self, locale: str = "en") -> str:
        """The plural label in ``locale``; where it has none in that language, the singular
        label in it (a Chinese list never heads with an English plural)."""
        lang = locale.replace("-", "_").split("_")[0]
        for labels in (self.label_plural, self.label):
            text = labels.get(locale) or labels.get(lang)
            if text:
                return text
        return label_text(self.label_plural, locale, "") or self.title(locale)


ACCESS_LEVELS = {"none": 0, "read": 1, "write": 2}


@dataclass(frozen=True)
class Grant:
    """What one role may do with one entity (or with every entity, under ``*``)."""

    actions: frozenset[str]
    #: own, team, all, or where (then ``where`` holds the condition)
    scope: str = "all"
    where: Mapping[str, Any] | None = None
    #: explicit access per field; others get ``default``
    fields: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    default: str = "write"

    def access(self, field_name: str) -> str:
        return self.fields.get(field_name, self.default)


@dataclass(frozen=True)
class Role:
    name: str
    label: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)
    inherits: tuple[str, ...] = ()
    admin: frozenset[str] = frozenset()
    #: entity name (or "*") -> grant, as declared on this role (inheritance not applied)
    grants: Mapping[str, Grant] = dc_field(default_factory=lambda: MappingProxyType({}))

    def title(self, locale: str = "en") -> str:
        return label_text(self.label, locale, self.name.replace("_", " ").capitalize())


_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Alert:
    """A rule over the audit log: more than ``threshold`` (entries, or rows exported or
    imported) of the matching entries within ``window_seconds``, counted per actor, IP
    address or record."""

    name: str
    action: str | None
    threshold: int
    window_seconds: int
    entity: str | None = None
    outcome: str | None = None
    measure: str = "entries"
    per: str = "actor"
    severity: str = "medium"
    label: Mapping[str, str] = dc_field(default_factory=lambda: EMPTY)

    @staticmethod
    def parse_window(text: str) -> int:
        return int(text[:-1]) * _WINDOW_UNITS[text[-1]]

    def matches(self, action: str, entity: str | None, outcome: str) -> bool:
        return (action != "alert" and (self.action is None or action == self.action) and (self.entity is None or entity == self.entity)
                and (self.outcome is None or outcome == self.outcome))

    def title(self, locale: str = "en") -> str:
        return label_text(self.label, locale, self.name.replace("_", " ").capitalize())


@dataclass(frozen=True)
class AppModel:
    """A whole compiled app: every entity and role, plus the documents it was compiled from."""

    entities: Mapping[str, Entity]
    documents: tuple[Mapping[str, Any], ...] = ()
    roles: Mapping[str, Role] = dc_field(default_factory=lambda: MappingProxyType({}))
    alerts: Mapping[str, Alert] = dc_field(default_factory=lambda: MappingProxyType({}))
    #: every document kind's compiled items by name, the built-in kinds' as well
    kinds: Mapping[str, Mapping[str, Any]] = dc_field(default_factory=lambda: MappingProxyType({}))

    def of_kind(self, kind: str) -> Mapping[str, Any]:
        """What the documents of ``kind`` compiled to, by name (empty for a kind without any)."""
        return self.kinds.get(kind, EMPTY)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the canonical documents: two models with equal fingerprints are equal."""
        canonical = json.dumps(sorted(json.dumps(d, sort_keys=True, ensure_ascii=False) for d in self.documents))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def entity(self, name: str) -> Entity:
        return self.entities[name]

    @cached_property
    def layout_notes(self) -> tuple[str, ...]:
        """Where the fields a declared form layout leaves out will appear, one line per
        entity, so whoever publishes knows a new field is not lost at the form's end."""
        return tuple(f"{e.name}: {', '.join(f.name for f in e.unplaced_fields)} not in form.sections; "
                     "shown in a last section \"More\" on the form and the record page"
                     for e in self.entities.values() if e.unplaced_fields)

    @cached_property
    def parents(self) -> Mapping[str, tuple[Entity, Field]]:
        """child entity name -> (parent entity, table field)."""
        return MappingProxyType({f.target: (e, f) for e in self.entities.values() for f in e.table_fields})

    def links_to(self, target: str) -> tuple[tuple[Entity, Field], ...]:
        """Every (entity, field) whose link points at ``target``."""
        return tuple((e, f) for e in self.entities.values() for f in e.fields
                     if f.type == "link" and f.target == target)


EMPTY_MODEL = AppModel(MappingProxyType({}), ())
