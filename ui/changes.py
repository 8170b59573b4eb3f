"""Logged changes as a person reads them: field labels, option labels in the interface
language, formatted numbers and times, linked records by title, and a table field's rows
compared row by row (by row id) instead of as two lists of raw values.

The audit log keeps a link as the linked record's id; its title is looked up through the
record service as the viewer, so a title they may not read is shown as ``#id``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loom.errors import LoomError
from loom.metadata.model import USER_ENTITY, Entity, Field
from loom.ui.i18n import label
from loom.ui.screens import context, display, display_names, service

#: the most ids one title lookup asks for
LOOKUP_BATCH = 100


@dataclass
class RowChange:
    """One child row of a table field: ``changed`` (cells hold before and after),
    ``added`` or ``removed`` (cells hold the row's values as ``(label, None, text)``)."""

    kind: str
    number: int
    cells: list[tuple[str, str | None, str | None]]


@dataclass
class FieldChange:
    """One field's change; ``None`` text is an empty value (shown as a dash)."""

    label: str
    old: str | None
    new: str | None
    rows: list[RowChange] = field(default_factory=list)
    is_table: bool = False


class Titles:
    """The titles of linked records, looked up once for a whole timeline, as the viewer."""

    def __init__(self) -> None:
        self.wanted: dict[str, set[int]] = defaultdict(set)
        self.found: dict[tuple[str, int], str] = {}

    def want(self, target: str, value: Any) -> None:
        record_id = _link_id(value)
        if record_id is not None:
            self.wanted[target].add(record_id)

    def resolve(self) -> None:
        """Look up every wanted title the viewer may read; the rest stay ``#id``."""
        for target, ids in self.wanted.items():
            if target == USER_ENTITY:
                for user_id, name in display_names(ids).items():
                    self.found[(target, user_id)] = name
                continue
            self._lookup(target, sorted(ids))
        self.wanted.clear()

    def _lookup(self, target: str, ids: list[int]) -> None:
        model = context().live.model
        if target not in model.entities:
            return
        svc = service(target)
        title = model.entity(target).title_field
        if not svc.allowed("read") or title == "id" or title not in svc.readable():
            return
        title_field = model.entity(target).all_fields[title]
        batch = max(1, min(LOOKUP_BATCH, svc.context.max_page_size))
        for start in range(0, len(ids), batch):
            chunk = ids[start:start + batch]
            try:
                page = svc.list({"filter[id][in]": ",".join(map(str, chunk)), "fields": f"id,{title}",
                                 "limit": str(len(chunk))})
            except LoomError:
                return
            for record in page.data:
                text = _text(title_field, record.get(title))
                if text:
                    self.found[(target, record["id"])] = text

    def title(self, target: str, value: Any) -> str | None:
        record_id = _link_id(value)
        if record_id is None:
            return None
        return self.found.get((target, record_id)) or f"#{record_id}"


def _link_id(value: Any) -> int | None:
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _text(f: Field | None, value: Any, titles: Titles | None = None) -> str | None:
    """One logged value as text, or None when it is empty."""
    if _empty(value):
        return None
    if f is None or f.type == "json":
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    if f.type == "link":
        return titles.title(f.target, value) if titles is not None else f"#{_link_id(value)}"
    if f.type == "attachment" and not isinstance(value, Mapping):
        return str(value)
    try:
        return display(f, value) or None
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        # a value logged under an older definition of the field (another type, a removed
        # option) is still shown, as it was stored
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _child_entity(entity: Entity, f: Field) -> Entity | None:
    model = context().live.model
    return model.entity(f.target) if f.target in model.entities else None


def collect(entity: Entity, changes: Mapping[str, Any], titles: Titles) -> None:
    """Note the linked records ``changes`` names, so one lookup finds all their titles."""
    for name, pair in changes.items():
        f = entity.all_fields.get(name)
        if f is None or not isinstance(pair, list):
            continue
        if f.type == "link":
            for value in pair:
                titles.want(f.target, value)
        elif f.type == "table" and (child := _child_entity(entity, f)) is not None:
            for rows in pair:
                for row in rows or ():
                    for child_field in child.fields:
                        if child_field.type == "link" and isinstance(row, Mapping):
                            titles.want(child_field.target, row.get(child_field.name))


def describe(entity: Entity, changes: Mapping[str, Any], titles: Titles) -> list[FieldChange]:
    """``changes`` (``{field: [before, after]}``, as logged) as lines a person reads, in the
    order of the entity's fields; fields no longer declared keep their names."""
    order = {name: i for i, name in enumerate(entity.all_fields)}
    result = []
    for name in sorted(changes, key=lambda n: (order.get(n, len(order)), n)):
        pair = changes[name]
        if not isinstance(pair, list) or len(pair) != 2:
            continue
        f = entity.all_fields.get(name)
        if f is not None and f.type == "table" and (child := _child_entity(entity, f)) is not None:
            result.append(FieldChange(label(f), None, None, _row_changes(child, pair[0], pair[1], titles), True))
            continue
        result.append(FieldChange(label(f) if f is not None else name, _text(f, pair[0], titles),
                                  _text(f, pair[1], titles)))
    return result


def _row_changes(child: Entity, before: Any, after: Any, titles: Titles) -> list[RowChange]:
    """Child rows compared by row id: a row in both is ``changed`` (numbered by its place
    after the change), a row only after is ``added``, a row only before ``removed``."""
    old_rows = [r for r in before or () if isinstance(r, Mapping)]
    new_rows = [r for r in after or () if isinstance(r, Mapping)]
    old_by_id = {r.get("id"): r for r in old_rows if r.get("id") is not None}
    new_ids = {r.get("id") for r in new_rows if r.get("id") is not None}
    fields = [f for f in child.fields if f.type != "table"]
    result = []
    for number, row in enumerate(new_rows, start=1):
        old = old_by_id.get(row.get("id")) if row.get("id") is not None else None
        if old is None:
            cells = [(label(f), None, _text(f, row.get(f.name), titles)) for f in fields if f.name in row
                     and not _empty(row.get(f.name))]
            result.append(RowChange("added", number, cells))
            continue
        cells = [(label(f), _text(f, old.get(f.name), titles), _text(f, row.get(f.name), titles))
                 for f in fields if (f.name in row or f.name in old) and old.get(f.name) != row.get(f.name)]
        if cells:
            result.append(RowChange("changed", number, cells))
    for number, row in enumerate(old_rows, start=1):
        if row.get("id") is None or row.get("id") not in new_ids:
            cells = [(label(f), None, _text(f, row.get(f.name), titles)) for f in fields if f.name in row
                     and not _empty(row.get(f.name))]
            result.append(RowChange("removed", number, cells))
    return result


def describe_all(entity: Entity, items: Iterable[Mapping[str, Any]]) -> list[list[FieldChange]]:
    """Each item's ``changes`` described, with one title lookup for all of them."""
    items = list(items)
    titles = Titles()
    for item in items:
        collect(entity, item.get("changes") or {}, titles)
    titles.resolve()
    return [describe(entity, item.get("changes") or {}, titles) for item in items]


def describe_entry(entity_name: str | None, changes: Mapping[str, Any] | None) -> list[FieldChange]:
    """An audit entry's changes described: by the entity's metadata where it is one,
    else (users, teams, a removed entity) by field name with the values as logged."""
    changes = changes or {}
    model = context().live.model
    if entity_name in model.entities:
        return describe_all(model.entity(entity_name), [{"changes": changes}])[0]
    return [FieldChange(name, _text(None, pair[0]), _text(None, pair[1])) for name, pair in sorted(changes.items())
            if isinstance(pair, list) and len(pair) == 2]
