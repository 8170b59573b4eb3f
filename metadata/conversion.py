"""Changing a field's type: converting stored values, and refusing any change that would
alter one.

A value converts only when it round-trips: converted to the new type and back to the old
one, it is exactly what was stored. ``"007"`` would come back as ``"7"``, ``" 12 "`` as
``"12"``, ``"yes"`` as ``"true"``, ``"10:00+08:00"`` as ``"02:00Z"``: each keeps a type
change from being published, so no data is lost and a rollback can always go back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loom.metadata.types import FieldType

if TYPE_CHECKING:
    from loom.metadata.model import Field


def convert(value: Any, old: Field, new: Field) -> Any:
    """A stored value of ``old``'s type as a value of ``new``'s type; ``ValueError`` says
    why it cannot be. Beyond what input accepts, a yes/no or a list of choices reads as text
    (``true``, ``a, b``) and a yes/no as the whole number 1 or 0, so those changes can go back."""
    if new.kind.text_like or new.type == "select":
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple) and old.type == "multiselect":
            value = ", ".join(value)
    elif new.type == "integer" and isinstance(value, bool):
        value = int(value)
    return new.kind.coerce(value, new)


def canonical(value: Any, field: Field) -> Any:
    """A stored value as its field's type reads it (on SQLite a time comes back without
    its time zone, which is UTC); a value the field no longer accepts stays as stored."""
    try:
        return field.kind.coerce(value, field)
    except ValueError:
        return value


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type: 1 is not True, and a date is not a midnight."""
    return type(a) is type(b) and a == b


def round_trip(value: Any, old: Field, new: Field) -> Any:
    """``value`` (stored for ``old``) converted for ``new``, when converting it back gives
    exactly ``value``; else ``ValueError`` saying what would change."""
    converted = convert(value, old, new)
    original = canonical(value, old)
    try:
        back = convert(converted, new, old)
    except ValueError:
        raise ValueError(f"would become {_shown(converted)}, which cannot be turned back") from None
    if not same(back, original):
        raise ValueError(f"would become {_shown(converted)} and come back as {_shown(back)}")
    return converted


def _shown(value: Any) -> str:
    return repr(FieldType.to_json(None, value))  # type: ignore[arg-type]
