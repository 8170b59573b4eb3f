"""SQL for conditions: one translation of the condition operators, shared by API
filters and permission row scopes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def condition_sql(column: sa.ColumnElement, field_type: str, op: str, value: Any,
                  dialect: str) -> sa.ColumnElement[bool]:
    """``column op value`` as SQL. ``ne`` and ``nin`` keep rows where the value is empty,
    as a person reading "not A" expects."""
    if op == "eq":
        return column == value
    if op == "ne":
        return sa.or_(column != value, column.is_(None))
    if op == "lt":
        return column < value
    if op == "lte":
        return column <= value
    if op == "gt":
        return column > value
    if op == "gte":
        return column >= value
    if op == "in":
        return column.in_(value)
    if op == "nin":
        return sa.or_(column.not_in(value), column.is_(None))
    if op == "isnull":
        return column.is_(None) if value else column.is_not(None)
    if field_type == "multiselect":
        return _json_array_contains(column, value, dialect)
    if op == "contains":
        return column.icontains(value, autoescape=True)
    if op == "startswith":
        return column.istartswith(value, autoescape=True)
    raise ValueError(f"unknown operator {op}")


def _json_array_contains(column: sa.ColumnElement, value: str, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return sa.cast(column, postgresql.JSONB).contains(sa.cast(sa.func.json_build_array(value), postgresql.JSONB))
    each = sa.func.json_each(column).table_valued("value").alias("choice")
    return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == value))
