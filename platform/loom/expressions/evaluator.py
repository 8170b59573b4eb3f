"""Python evaluation of a checked tree for one record, with SQL's rules for null: any
arithmetic or comparison with null gives null, ``and``/``or``/``not`` are three-valued,
division by zero gives null. Numbers stay ``int`` while whole and exact, else ``Decimal``."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from loom.expressions.checker import USER_PROPERTIES
from loom.expressions.errors import ExpressionError
from loom.expressions.functions import FUNCTIONS, Moment
from loom.expressions.nodes import Binary, Call, In, Literal, Node, Path, Unary
from loom.metadata.model import USER_ENTITY

Lookup = Callable[[str, Any], Mapping[str, Any] | None]

_COMPARE = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge}
_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul}


class Evaluation:
    """One evaluation: the record, the acting user's properties, the instant, the lookup."""

    def __init__(self, record: Mapping[str, Any], user: Mapping[str, Any], moment: Moment,
                 lookup: Lookup | None):
        self.record = record
        self.user = user
        self.moment = moment
        self.lookup = lookup

    def value(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Path):
            return self._path(node)
        if isinstance(node, Unary):
            operand = self.value(node.operand)
            if operand is None:
                return None
            return -_number(operand) if node.op == "-" else not operand
        if isinstance(node, Binary):
            return self._binary(node)
        if isinstance(node, In):
            return self._in(node)
        assert isinstance(node, Call)
        function = FUNCTIONS[node.name]
        args = [self.value(a) for a in node.args]
        if function.nulls and any(a is None for a in args):
            return None
        return function.python(args, self.moment)

    def _path(self, node: Path) -> Any:
        if node.user:
            return self.user.get(node.names[0])
        current: Mapping[str, Any] | None = self.record
        for position, name in enumerate(node.names):
            value = current.get(name)
            if value is None and node.entities[position] == USER_ENTITY:  # a users row: team_id, manager_id
                value = current.get(USER_PROPERTIES[name][2])
            if position == len(node.names) - 1 or value is None:
                return value
            if self.lookup is None:
                raise ExpressionError(f"reading '{node.dotted}' needs a lookup of linked records: "
                                      "pass evaluate(..., lookup=...)")
            target = node.entities[position + 1]
            current = self.lookup(target, value)
            if current is None:
                return None
        return None  # unreachable: the loop returns

    def _binary(self, node: Binary) -> Any:
        if node.op in ("and", "or"):
            left = self.value(node.left)
            decisive = node.op == "or"  # true decides 'or', false decides 'and'
            if left is decisive:
                return decisive
            right = self.value(node.right)
            if right is decisive:
                return decisive
            return None if left is None or right is None else not decisive
        left, right = self.value(node.left), self.value(node.right)
        if left is None or right is None:
            return None
        if node.op in _COMPARE:
            return _COMPARE[node.op](left, right)
        left, right = _number(left), _number(right)
        if node.op == "/":
            return None if right == 0 else Decimal(left) / Decimal(right)
        return _ARITHMETIC[node.op](left, right)

    def _in(self, node: In) -> bool | None:
        operand = self.value(node.operand)
        if operand is None:
            return None
        options = [self.value(o) for o in node.options]
        if operand in [o for o in options if o is not None]:
            found: bool | None = True
        elif None in options:
            found = None
        else:
            found = False
        return (not found if found is not None else None) if node.negated else found


def _number(value: Any) -> int | Decimal:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    raise ExpressionError(f"expected a number, got {value!r}")


def user_properties(user: Any) -> dict[str, Any]:
    """The ``$user`` properties of a ``Principal``, a mapping of them, or None (nobody)."""
    if user is None:
        return {}
    if isinstance(user, Mapping):
        return dict(user)
    return {"id": getattr(user, "user_id", None), "username": getattr(user, "name", None),
            "display_name": getattr(user, "display_name", None), "team": getattr(user, "team_id", None),
            "manager": getattr(user, "manager_id", None), "email": getattr(user, "email", None)}

