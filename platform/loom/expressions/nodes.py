"""The expression tree the parser builds and the checker types, and the language's types.

A node's ``type`` is None until ``loom.expressions.checker`` has checked it; afterwards it
is one of ``TYPES`` (or None where the node is wrong, so one mistake is reported once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NUMBER, TEXT, BOOLEAN, DATE, DATETIME, NULL = "number", "text", "boolean", "date", "datetime", "null"
#: every type an expression can have; ``null`` is the type of the literal ``null`` only
TYPES = (NUMBER, TEXT, BOOLEAN, DATE, DATETIME, NULL)


@dataclass(eq=False)
class Node:
    #: where the node starts in the text, from 1, for error messages
    column: int
    type: str | None = field(default=None, init=False)
    #: a number known to be whole (an integer field, a link's id, 2 * 3, year(d)...)
    integral: bool = field(default=False, init=False)


@dataclass(eq=False)
class Literal(Node):
    value: Any


@dataclass(eq=False)
class Path(Node):
    """A field (``quantity``), a field through links (``customer.credit_limit``) or a
    property of the acting user (``$user.team``)."""

    names: tuple[str, ...]
    user: bool = False
    #: the entity each name is read from, filled in by the checker (``"user"`` for users)
    entities: tuple[str, ...] = field(default=(), init=False)

    @property
    def dotted(self) -> str:
        return ".".join(("$user", *self.names) if self.user else self.names)


@dataclass(eq=False)
class Unary(Node):
    op: str  # "-" or "not"
    operand: Node


@dataclass(eq=False)
class Binary(Node):
    op: str  # + - * / = != < <= > >= and or
    left: Node
    right: Node


@dataclass(eq=False)
class In(Node):
    operand: Node
    options: tuple[Node, ...]
    negated: bool = False


@dataclass(eq=False)
class Call(Node):
    name: str
    args: tuple[Node, ...]


ARITHMETIC = ("+", "-", "*", "/")
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
LOGIC = ("and", "or")


def walk(node: Node):
    """``node`` and every node below it."""
    yield node
    children: tuple[Node, ...] = ()
    if isinstance(node, Unary):
        children = (node.operand,)
    elif isinstance(node, Binary):
        children = (node.left, node.right)
    elif isinstance(node, In):
        children = (node.operand, *node.options)
    elif isinstance(node, Call):
        children = node.args
    for child in children:
        yield from walk(child)
