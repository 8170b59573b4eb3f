"""SQL compilation of a checked tree, giving on SQLite and PostgreSQL the values Python
gives: numeric division with null for zero, text ordered by code point, the same instant
for ``today()`` and ``now()``, and ``upper``/``lower`` on ASCII letters everywhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from loom.expressions import dialects as d
from loom.expressions.checker import USER_PROPERTIES
from loom.expressions.functions import FUNCTIONS, Moment
from loom.expressions.nodes import (
    BOOLEAN,
    DATE,
    DATETIME,
    NUMBER,
    TEXT,
    Binary,
    Call,
    In,
    Literal,
    Node,
    Path,
    Unary,
)
from loom.metadata.model import USER_ENTITY, USER_TABLE, AppModel, Entity

#: ``resolve(path)``: the SQL value of a field path (``"quantity"``, ``"customer.credit_limit"``)
Resolver = Callable[[str], ColumnElement]

_USER_TYPES = {NUMBER: sa.BigInteger(), TEXT: sa.Text()}
_RESULT_TYPES = {BOOLEAN: sa.Boolean(), DATE: sa.Date(), DATETIME: sa.DateTime(timezone=True), TEXT: sa.Text()}


class SqlCompilation:
    def __init__(self, resolve: Resolver, user: Mapping[str, Any], moment: Moment):
        self.resolve = resolve
        self.user = user
        self.moment = moment

    def result(self, node: Node) -> ColumnElement:
        """The whole expression, typed so that a row brings back Python values of its type
        (numbers untouched: the driver's int, Decimal or, on SQLite, float)."""
        return sa.type_coerce(self.element(node), _RESULT_TYPES.get(node.type, sa.types.NullType()))

    def element(self, node: Node) -> ColumnElement:
        if isinstance(node, Literal):
            return _literal(node.value)
        if isinstance(node, Path):
            if node.user:
                value = self.user.get(node.names[0])
                return sa.null() if value is None else sa.cast(sa.literal(value, _USER_TYPES[node.type]),
                                                               _USER_TYPES[node.type])
            return self.resolve(node.dotted)
        if isinstance(node, Unary):
            operand = self.element(node.operand)
            return d.op(sa.literal_column("0"), "-", operand) if node.op == "-" else sa.Grouping(sa.not_(operand))
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, In):
            operand = self.element(node.operand)
            options = [self.element(o) for o in node.options]
            return operand.not_in(options) if node.negated else operand.in_(options)
        assert isinstance(node, Call)
        return FUNCTIONS[node.name].sql([self.element(a) for a in node.args], node.args, self.moment)

    def _binary(self, node: Binary) -> ColumnElement:
        left, right = self.element(node.left), self.element(node.right)
        if node.op == "and":
            return sa.and_(left, right)
        if node.op == "or":
            return sa.or_(left, right)
        if node.op == "/":
            return d.op(d.to_real(left), "/", sa.func.nullif(right, sa.literal_column("0")))
        if node.op in ("+", "-", "*"):
            return d.op(left, node.op, right)
        if node.left.type == TEXT and node.op not in ("=", "!="):
            left = d.binary_text(left)
        return d.op(left, node.op, right, comparison=True)


def _literal(value: Any) -> ColumnElement:
    if value is None:
        return sa.null()
    if isinstance(value, bool):
        return sa.true() if value else sa.false()
    if isinstance(value, str):
        return d.text(value)
    return d.number(str(value))


def table_resolver(table: sa.Table, tables_by_entity: Mapping[str, sa.Table], entity: Entity,
                   model: AppModel) -> Resolver:
    """The resolver for rows of ``table`` (``entity``'s table): a field is its column, a
    path through links a correlated scalar subquery on the linked table.
    ``tables_by_entity`` is what ``loom.schema.tables.build_tables`` returns."""

    def users_table() -> sa.Table:
        return tables_by_entity.get(USER_ENTITY) or table.metadata.tables[USER_TABLE]

    def read(source: sa.FromClause, current: Entity | None, names: list[str]) -> ColumnElement:
        name = names[0]
        if current is None:  # a user's row
            return source.c[USER_PROPERTIES[name][2]]
        if len(names) == 1:
            return source.c[name]
        target = current.field(name).target
        linked = (users_table() if target == USER_ENTITY else tables_by_entity[target]).alias()
        inner = read(linked, None if target == USER_ENTITY else model.entity(target), names[1:])
        return sa.select(inner).where(linked.c.id == source.c[name]).scalar_subquery()

    return lambda path: read(table, entity, path.split("."))
