"""The example's field type: ``rating``, a whole number of stars from 1 to 5, stored as a
small integer, shown as stars, entered in a number input, filtered by range."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loom.metadata import FieldType

STARS = 5


def coerce(value: Any, field) -> int:
    """A rating from what a client, a form or an imported cell sent; ValueError says why not."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= STARS:
        raise ValueError(f"a rating is a whole number from 1 to {STARS}")
    return value


def stars(field, value: int, ctx) -> str:
    return "★" * value + "☆" * (STARS - value)


RATING = FieldType(
    name="rating",
    coerce=coerce,
    sql_type=lambda field: sa.SmallInteger(),
    json_schema=lambda field: {"type": "integer", "minimum": 1, "maximum": STARS},
    operators=frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "isnull"}),
    numeric=True,
    display=stars,
    input_type="number",
    input_attributes=lambda field: {"min": "1", "max": str(STARS), "step": "1"},
    filter_widget="range",
)
