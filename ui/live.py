"""Live forms: while the user types, the form asks the record service what the save would
make of it (``RecordService.preview``) and shows the answer in place: computed values, a
default read from a picked record, which fields are shown, required or read-only, and the
messages of broken rules beside their fields.

Every rule stays on the server: the answer is a set of htmx out-of-band swaps of small
elements that hold no input (a field's state marker, a computed value, its messages), and
the input of a ``{from: link.field}`` default only while it still holds what Loom put
there (``<name>:auto`` carries that value, so a value the user typed is never replaced).
A little generic glue in loom.js applies a state marker to its field and never swaps an
element holding the focus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flask import g
from werkzeug.datastructures import MultiDict

from loom.errors import LoomError
from loom.metadata.model import Entity, Field
from loom.records.service import RecordService
from loom.ui.i18n import gettext, label
from loom.ui.messages import message_text
from loom.ui.pages import pages
from loom.ui.screens import context
from loom.ui.widgets import ROW_KEY, input_value

#: the value Loom last put into the input of a ``{from: link.field}`` default is sent as
#: ``<name>:auto`` (a suffix: selectors for ``[name$=".unit_price"]`` find the input alone)
AUTO_SUFFIX = ":auto"
#: the parts of an expression that are text in quotes (left as written)
_QUOTED = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_NAME = re.compile(r"(?<![\w.$])([a-z][a-z0-9_]*)(?![\w.(])")
_OPERATORS = ((" * ", " × "), (" / ", " ÷ "), (" != ", " ≠ "), (" <= ", " ≤ "), (" >= ", " ≥ "))
#: a field or a path through links in an expression (``cost``, ``product.cost``; not a function)
_PATH = re.compile(r"(?<![\w.$])([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)(?![\w.(])")
#: what an expression shows in place of a field the user may not read
HIDDEN = "…"


def derived(f: Field) -> bool:
    """Whether Loom fills the field in by itself (computed, rolled up or numbered)."""
    return bool(f.compute or getattr(f, "rollup", None) is not None or f.autonumber)


def _shown_path(entity: Entity | None, path: str) -> str:
    """``path`` (``cost``, ``product.cost``) as the signed-in user may see it: cut at the
    first field, of ``entity`` or of a record it links to, they may not read (``product.…``)."""
    if entity is None:
        return path
    services = g.setdefault("loom_path_readers", {})
    if "svc" not in services:  # any entity's service answers for every entity, once a request
        model = context().live.model
        services["svc"] = RecordService(context(), next(e for e in model.entities.values() if not e.child).name)
    cut = services["svc"].unreadable_at(entity, path)
    return path if cut is None else ".".join([*path.split(".")[:cut], HIDDEN])


def _readable_expression(entity: Entity | None, text: str) -> str:
    """An expression as a person reads it: field names as their labels, × and ÷. A field
    the user may not read (here or through a link) is not named: it shows as …"""
    parts = _QUOTED.split(text)
    for i in range(0, len(parts), 2):
        part = parts[i]
        for written, shown in _OPERATORS:
            part = part.replace(written, shown)
        if entity is not None:
            part = _PATH.sub(lambda m: _shown_path(entity, m.group(1)), part)
            part = _NAME.sub(lambda m: label(entity.all_fields[m.group(1)])
                             if m.group(1) in entity.all_fields else m.group(1), part)
        parts[i] = part
    return "".join(parts)


def _rollup_text(entity: Entity | None, rollup: Any) -> str:
    """``rollup.text``, with the fields of its source the user may not read left unnamed."""
    source = context().live.model.entities.get(rollup.entity or "") if rollup.entity else None
    if entity is None or source is None:
        return rollup.text
    what = "count()" if rollup.aggregate == "count" else \
        f"{rollup.aggregate}({_shown_path(source, rollup.field or '')})"
    where = ""
    if rollup.where:
        where = " where " + "".join(
            _PATH.sub(lambda m: _shown_path(source, m.group(1)), part) if j % 2 == 0 else part
            for j, part in enumerate(_QUOTED.split(rollup.where)))
    return f"{what} of {rollup.source}{where}"


def logic_note(f: Field, entity: Entity | str | None = None) -> str:
    """How Loom fills the field in, as forms and record pages say beside it: "computed as
    Quantity × Unit price", "numbered SO-{yyyy}{seq:5}", "taken from product.list_price".
    ``entity`` (or its name): the field's entity, whose labels name the fields read."""
    if isinstance(entity, str):
        entity = context().live.model.entities.get(entity)
    rollup = getattr(f, "rollup", None)
    if f.compute:
        return gettext("computed as %(expression)s", expression=_readable_expression(entity, f.compute))
    if rollup is not None:
        return gettext("computed as %(expression)s", expression=_rollup_text(entity, rollup))
    if f.autonumber:
        return gettext("numbered %(pattern)s", pattern=f.autonumber)
    if f.default_from:
        return gettext("taken from %(path)s when empty", path=_shown_path(entity, f.default_from))
    return ""


@pages.record_once
def _install(state) -> None:
    state.app.jinja_env.globals.update(logic_note=logic_note, derived=derived, auto_suffix=AUTO_SUFFIX)


def left_to_loom(f: Field, form: MultiDict, name: str) -> bool:
    """Whether the input ``name`` of a ``{from: link.field}`` default still holds what Loom
    put there: then the form does not send it, and the save (or preview) reads it again
    from the linked record when the link changes; a value the user typed is sent."""
    return f.default_from is not None and name + AUTO_SUFFIX in form \
        and form.get(name, "") == form.get(name + AUTO_SUFFIX, "")


# -- the preview's answer -------------------------------------------------------------------

@dataclass
class Slot:
    """One input place of the form (a field, or a field of one child row)."""

    field: Field
    #: the input's name and id, and where the record service names the field
    name: str
    input_id: str
    path: str
    entity: str
    value: Any = None
    visible: bool = True
    required: bool = False
    read_only: bool = False
    messages: list[str] = field(default_factory=list)
    #: the input is drawn again with the value Loom worked out (a default from a link)
    refill: bool = False

    @property
    def picker_path(self) -> str:
        """How the link picker of this place names its field (``lines.product``)."""
        parts = self.name.split(".")
        return f"{parts[0]}.{parts[2]}" if len(parts) == 3 else self.name

    @property
    def key(self) -> str:
        """The suffix of the ids of this place's live elements."""
        return self.input_id.removeprefix("f-")


def slots(view: Any, form: MultiDict | None) -> list[Slot]:
    """Every input place of the form: its fields, and the fields of each child row in the
    order the form sends them (``<table>.row``)."""
    result = []
    entity = view.entity.name
    for ff in view.fields:
        if ff.field.kind.widget != "table":
            result.append(Slot(ff.field, ff.name, ff.input_id, ff.name, entity, read_only=ff.read_only))
            continue
        keys = [k for k in form.getlist(f"{ff.name}.row") if ROW_KEY.match(k)] if form is not None \
            else [row.key for row in ff.rows]
        for i, key in enumerate(keys):
            for c in ff.child_fields:
                result.append(Slot(c, f"{ff.name}.{key}.{c.name}", f"f-{ff.name}-{key}-{c.name}",
                                   f"{ff.name}[{i}].{c.name}", ff.field.target,
                                   read_only=ff.read_only or c.name in ff.child_read_only))
    return result


def _preview_value(preview: dict[str, Any], path: str) -> Any:
    match = re.match(r"^(\w+)\[(\d+)\]\.(\w+)$", path)
    values = preview["values"]
    if match is None:
        return values.get(path)
    rows = values.get(match.group(1)) or []
    index = int(match.group(2))
    return rows[index].get(match.group(3)) if index < len(rows) else None


def fill(found: list[Slot], preview: dict[str, Any], form: MultiDict | None) -> list[str]:
    """Put the preview into the slots; returns the messages about the record as a whole.
    "Required" is shown by the field's mark rather than said while the user types."""
    by_path: dict[str, list[str]] = {}
    for error in preview["errors"]:
        if error["code"] != "required":
            by_path.setdefault(error["field"], []).append(message_text(error))
    paths = {slot.path for slot in found}
    for slot in found:
        slot.value = _preview_value(preview, slot.path)
        state = preview["fields"].get(slot.path)
        if state is not None:
            slot.visible, slot.required = state["visible"], state["required"]
            slot.read_only = slot.read_only or state["read_only"]
        slot.messages = by_path.get(slot.path, [])
        if form is not None and not slot.read_only and left_to_loom(slot.field, form, slot.name):
            slot.refill = form.get(slot.name, "") != _input_text(slot.field, slot.value)
    return [message for path, messages in by_path.items() if path not in paths for message in messages]


def _input_text(f: Field, value: Any) -> str:
    if f.type == "link":
        return "" if value is None else str(value["id"] if isinstance(value, dict) else value)
    return input_value(f, value)


def preview_form(svc: RecordService, view: Any, data: dict[str, Any], form: MultiDict | None,
                 record_id: int | None) -> tuple[list[Slot], list[str]] | None:
    """The form's slots filled from a preview of ``data``; None where there is none to show
    (the preview refused: the save will say why)."""
    try:
        preview = svc.preview(data, record_id)
    except LoomError:
        return None
    found = slots(view, form)
    return found, fill(found, preview, form)
