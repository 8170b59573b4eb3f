"""Loom's expression language: one small, safe language for computed fields, defaults,
conditional fields, validation rules and (later) flow guards and rule conditions.

    expression = compile_expression("quantity * unit_price", entity, model)
    expression.type                    # "number"
    expression.evaluate(record)        # in Python, for one record
    expression.to_sql(resolve)         # a SQLAlchemy element, for many rows

Text is parsed (``grammar``), checked against an entity (``checker``), then evaluated
(``evaluator``) or compiled to SQL (``sql``); functions live in one registry
(``functions``). Nothing is ever run through Python's eval. docs/expressions.md is the
language reference.
"""

from loom.expressions.checker import USER_PROPERTIES, field_value_type
from loom.expressions.errors import ExpressionError
from loom.expressions.expression import Expression, compile_expression
from loom.expressions.functions import FUNCTIONS, Function
from loom.expressions.grammar import parse
from loom.expressions.logic import compile_logic
from loom.expressions.nodes import BOOLEAN, DATE, DATETIME, NULL, NUMBER, TEXT, TYPES
from loom.expressions.sql import Resolver, table_resolver

__all__ = [
    "BOOLEAN", "DATE", "DATETIME", "FUNCTIONS", "NULL", "NUMBER", "TEXT", "TYPES", "USER_PROPERTIES",
    "Expression", "ExpressionError", "Function", "Resolver", "compile_expression", "compile_logic", "field_value_type", "parse",
    "table_resolver",
]
