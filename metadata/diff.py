"""Comparing two compiled models: what was added, removed, renamed or changed.

The diff is pure: it reads two models and says what differs. The schema planner
(``loom.schema``) turns it into database operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

from loom.metadata.kinds import compile_order, named_changes
from loom.metadata.model import AppModel, Entity, Field

_LAYOUT = ("label", "help", "app", "title_field", "form", "list", "audit_reads", "label_plural",
           "nav_order")
_STORAGE_NEUTRAL = tuple(f.name for f in fields(Field) if f.name not in ("name", "renamed_from", "unique", "index"))


@dataclass(frozen=True)
class FieldChange:
    action: Literal["add", "remove", "rename", "retype", "reindex", "alter"]
    old: Field | None
    new: Field | None
    #: properties that changed, for "alter"
    properties: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return (self.new or self.old).name  # type: ignore[union-attr]

    def describe(self, entity: str) -> str:
        old, new = self.old, self.new
        if self.action == "add":
            return f"+ field {entity}.{new.name} ({new.type})"
        if self.action == "remove":
            return f"- field {entity}.{old.name} (column kept aside with its data)"
        if self.action == "rename":
            return f"~ field {entity}.{old.name} renamed to {new.name}"
        if self.action == "retype":
            return f"~ field {entity}.{new.name}: type {_type_text(old)} -> {_type_text(new)}"
        if self.action == "reindex":
            return f"~ field {entity}.{new.name}: unique {old.unique} -> {new.unique}, index {old.index} -> {new.index}"
        return f"~ field {entity}.{new.name}: {', '.join(self.properties)}"


def _type_text(f: Field) -> str:
    if f.type in ("decimal", "money", "percent"):
        return "{}({},{})".format(f.type, *f.precision_scale)
    if f.type == "link":
        return f"link->{f.target}"
    return f.type


@dataclass(frozen=True)
class EntityDiff:
    action: Literal["add", "remove", "rename", "keep"]
    old: Entity | None
    new: Entity | None
    fields: tuple[FieldChange, ...] = ()
    layout: tuple[str, ...] = ()
    indexes_changed: bool = False

    @property
    def name(self) -> str:
        return (self.new or self.old).name  # type: ignore[union-attr]

    @property
    def needs_ddl(self) -> bool:
        return (self.action != "keep" or self.indexes_changed
                or any(c.action not in ("alter",) for c in self.fields))

    @property
    def is_empty(self) -> bool:
        return self.action == "keep" and not self.fields and not self.layout and not self.indexes_changed

    def describe(self) -> list[str]:
        lines = []
        if self.action == "add":
            lines.append(f"+ entity {self.new.name} ({len(self.new.fields)} fields)")
            return lines
        if self.action == "remove":
            return [f"- entity {self.old.name} (table kept aside with its data)"]
        if self.action == "rename":
            lines.append(f"~ entity {self.old.name} renamed to {self.new.name}")
        lines.extend(change.describe(self.name) for change in self.fields)
        if self.layout:
            lines.append(f"~ entity {self.name}: {', '.join(self.layout)}")
        if self.indexes_changed:
            lines.append(f"~ entity {self.name}: indexes")
        return lines


@dataclass(frozen=True)
class ModelDiff:
    entities: tuple[EntityDiff, ...] = field(default_factory=tuple)
    #: one line per document of another kind (role, alert, ...) added, removed or changed:
    #: those need no schema change
    others: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return all(e.is_empty for e in self.entities) and not self.others

    def summary(self) -> list[str]:
        return [line for e in self.entities for line in e.describe()] + list(self.others)


def _diff_other_kinds(old: AppModel, new: AppModel) -> tuple[str, ...]:
    """Lines for the documents of every kind but entities, each kind asked how its
    documents differ; a kind no longer registered is compared by name."""
    kinds = {kind.name: kind for kind in compile_order()}
    present = [*kinds, *sorted((set(old.kinds) | set(new.kinds)) - set(kinds))]
    lines: list[str] = []
    for name in present:
        if name == "entity":
            continue
        before, after = old.of_kind(name), new.of_kind(name)
        kind = kinds.get(name)
        lines += kind.changes(before, after) if kind is not None else named_changes(name, before, after)
    return tuple(lines)


def pair_renames(old: dict, new: dict) -> dict[str, str]:
    """new name -> old name for things renamed between ``old`` and ``new`` (either way:
    a ``renamed_from`` in the new version, or in the old one when going back)."""
    pairs: dict[str, str] = {}
    for name, item in new.items():
        src = item.renamed_from
        if name not in old and src and src in old and src not in new:
            pairs[name] = src
    for name, item in old.items():
        src = item.renamed_from
        if name not in new and src and src in new and src not in old and src not in pairs:
            pairs[src] = name
    return pairs


def diff_entity(old: Entity, new: Entity, action: Literal["rename", "keep"] = "keep") -> EntityDiff:
    old_fields = {f.name: f for f in old.fields}
    new_fields = {f.name: f for f in new.fields}
    renames = pair_renames(old_fields, new_fields)
    changes: list[FieldChange] = []
    renamed_old = set(renames.values())
    for name, f in new_fields.items():
        if name in renames:
            before = old_fields[renames[name]]
            changes.append(FieldChange("rename", before, f))
            changes.extend(_compare_field(before, f))
        elif name not in old_fields:
            changes.append(FieldChange("add", None, f))
        else:
            changes.extend(_compare_field(old_fields[name], f))
    for name, f in old_fields.items():
        if name not in new_fields and name not in renamed_old:
            changes.append(FieldChange("remove", f, None))
    layout = tuple(attr for attr in _LAYOUT if getattr(old, attr) != getattr(new, attr))
    return EntityDiff(action, old, new, tuple(changes), layout, old.indexes != new.indexes)


def _compare_field(old: Field, new: Field) -> list[FieldChange]:
    changes = []
    if old.storage_signature() != new.storage_signature():
        changes.append(FieldChange("retype", old, new))
    if (old.unique, old.index) != (new.unique, new.index):
        changes.append(FieldChange("reindex", old, new))
    altered = tuple(p for p in _STORAGE_NEUTRAL
                    if p not in ("type", "precision", "scale", "target") and getattr(old, p) != getattr(new, p))
    if altered:
        changes.append(FieldChange("alter", old, new, altered))
    return changes


def diff_entities(old: Mapping[str, Entity], new: Mapping[str, Entity]) -> list[EntityDiff]:
    """Every entity added, removed, renamed or changed between ``old`` and ``new``."""
    renames = pair_renames(dict(old), dict(new))
    renamed_old = set(renames.values())
    result: list[EntityDiff] = []
    for name, entity in new.items():
        if name in renames:
            result.append(diff_entity(old[renames[name]], entity, "rename"))
        elif name in old:
            result.append(diff_entity(old[name], entity))
        else:
            result.append(EntityDiff("add", None, entity))
    for name, entity in old.items():
        if name not in new and name not in renamed_old:
            result.append(EntityDiff("remove", entity, None))
    return result


def diff_models(old: AppModel, new: AppModel) -> ModelDiff:
    """Everything that differs between ``old`` and ``new``: entity by entity, then the
    documents of every other kind."""
    return ModelDiff(tuple(diff_entities(old.entities, new.entities)), _diff_other_kinds(old, new))
