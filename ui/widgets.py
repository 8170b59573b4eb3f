"""Field widgets: which input a field gets and how a submitted form turns back into the
values the record service validates, both as the field's type says (``Field.kind``: its
widget, input type and attributes, ``edit_text`` and ``parse_form``). The service stays
the judge of what is valid; this only undoes what HTML forms do to values (everything
is text, an unticked box is absent, a multiselect is repeated)."""

from __future__ import annotations

import re
from typing import Any

from werkzeug.datastructures import MultiDict

from loom.metadata.model import Field
from loom.ui.screens import format_context, local_moment

__all__ = ["ROW_KEY", "form_id", "input_attributes", "input_type", "input_value", "local_moment", "read_rows",
           "read_value", "step"]

ROW_KEY = re.compile(r"^[A-Za-z0-9_]{1,20}$")


def form_id(text: str | None) -> int | None:
    """The record id a form or an address sends as text, or None where the text is not
    one: only ASCII digits of an id a table can hold (``str.isdigit`` also takes "²",
    which ``int`` refuses, and thousands of digits, which ``int`` will not read)."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    value = int(text)
    return value if 0 < value < 2**63 else None


def input_type(f: Field) -> str:
    """The ``type`` of the field's ``<input>`` (for types drawn as one)."""
    return f.kind.input_type


def input_attributes(f: Field) -> dict[str, str]:
    """The input's further attributes: its type's (step, inputmode, ...) and the field's
    longest text."""
    attributes = dict(f.kind.input_attributes(f))
    if f.max_length:
        attributes.setdefault("maxlength", str(f.max_length))
    return attributes


def step(f: Field) -> str | None:
    """The step of a number input: one unit of the field's last decimal place."""
    return f.kind.input_attributes(f).get("step")


def input_value(f: Field, value: Any) -> str:
    """A stored (JSON) value as an input's value attribute."""
    return "" if value is None else f.kind.edit_text(f, value, format_context())


def read_value(f: Field, form: MultiDict, name: str) -> Any:
    """The value the form sent for field ``f`` under ``name``, as the service expects it
    (None when left empty)."""
    return f.kind.parse_form(f, form.getlist(name), format_context())


def read_rows(f: Field, child_fields: list[Field], form: MultiDict) -> list[dict[str, Any]]:
    """The rows of a table field, in the order the page shows them. Each row sends its
    key in ``<field>.row``, and its values as ``<field>.<key>.<child field>``."""
    rows = []
    for key in form.getlist(f"{f.name}.row"):
        if not ROW_KEY.match(key):
            continue
        prefix = f"{f.name}.{key}."
        row: dict[str, Any] = {}
        row_id = form_id(form.get(prefix + "id", ""))
        if row_id is not None:
            row["id"] = row_id
        for cf in child_fields:
            row[cf.name] = read_value(cf, form, prefix + cf.name)
        rows.append(row)
    return rows
