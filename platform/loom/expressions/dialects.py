"""SQL pieces that differ between SQLite and PostgreSQL, as dialect-neutral elements.

``per_dialect(sqlite=..., postgresql=...)`` holds one element per dialect and compiles to
the one for the statement's dialect, so a compiled expression is a plain SQLAlchemy
element whatever database runs it. Operators are written with ``.op()`` so SQLAlchemy
never rewrites them (its own ``/`` on integers, ``+`` on strings).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement, Grouping


class PerDialect(ColumnElement):
    """One element per dialect name; ``default`` for any other dialect."""

    inherit_cache = False  # the elements differ per instance; nothing to cache by

    def __init__(self, choices: dict[str, ColumnElement], type_=None):
        self.choices = choices
        self.type = sa.types.to_instance(type_) if type_ is not None else choices["default"].type

    @property
    def _from_objects(self):
        seen: dict[int, object] = {}
        for element in self.choices.values():
            for source in element._from_objects:
                seen.setdefault(id(source), source)
        return list(seen.values())

    def get_children(self, **kw):
        return list(self.choices.values())


@compiles(PerDialect)
def _compile_per_dialect(element: PerDialect, compiler, **kw):
    chosen = element.choices.get(compiler.dialect.name, element.choices["default"])
    return compiler.process(chosen, **kw)


def per_dialect(default: ColumnElement, type_=None, **choices: ColumnElement) -> ColumnElement:
    """``default``, or the element named after the dialect that runs the statement."""
    return PerDialect({"default": default, **choices}, type_)


def op(left: ColumnElement, operator: str, right: ColumnElement, *, comparison: bool = False) -> ColumnElement:
    """``(left operator right)``, exactly as written."""
    if comparison:
        return Grouping(left.op(operator, is_comparison=True)(right))
    return Grouping(left.op(operator)(right))


def number(text: str) -> ColumnElement:
    """A number literal (digits and at most one point, already checked by the grammar)."""
    return sa.literal_column(text)


def text(value: str) -> ColumnElement:
    """A text value as a parameter, typed as text on every database."""
    return sa.cast(sa.literal(value, sa.Text()), sa.Text())


def binary_text(value: ColumnElement) -> ColumnElement:
    """Text ordered by code point, as Python orders it: SQLite's default (BINARY) collation,
    PostgreSQL's "C" collation."""
    return per_dialect(value, postgresql=value.collate("C"))


def to_real(value: ColumnElement) -> ColumnElement:
    """A number as one that divides exactly: NUMERIC on PostgreSQL, REAL on SQLite
    (whose decimals are stored as REAL anyway)."""
    return per_dialect(sa.cast(value, sa.REAL), postgresql=sa.cast(value, sa.Numeric()))
