"""The type checker: resolves every field path against an entity and gives every node a
type, collecting every problem (each saying what to fix) instead of stopping at the first."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

from loom.expressions.functions import FUNCTIONS
from loom.expressions.nodes import (
    ARITHMETIC,
    BOOLEAN,
    COMPARISONS,
    DATE,
    DATETIME,
    LOGIC,
    NULL,
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
from loom.metadata.model import USER_ENTITY, AppModel, Entity, Field

#: how many links a path may follow (customer.account.owner.username follows three)
MAX_LINKS = 3

#: what expressions may read of a user, through a link to one or as ``$user``:
#: name -> (type, whole number, column of the users table)
USER_PROPERTIES: Mapping[str, tuple[str, bool, str]] = {
    "id": (NUMBER, True, "id"),
    "username": (TEXT, False, "username"),
    "display_name": (TEXT, False, "display_name"),
    "email": (TEXT, False, "email"),
    "team": (NUMBER, True, "team_id"),
    "manager": (NUMBER, True, "manager_id"),
}

_TEXT_TYPES = frozenset({"string", "text", "email", "phone", "url", "select"})
_VERBS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}
ORDERED = frozenset({NUMBER, TEXT, DATE, DATETIME})


def field_value_type(field: Field) -> tuple[str | None, bool]:
    """The expression type of a field's value, and whether it is a whole number; (None,
    False) for a field expressions cannot read (child rows, JSON, lists, attachments)."""
    if field.type in _TEXT_TYPES:
        return TEXT, False
    if field.type in ("integer", "link"):
        return NUMBER, True
    if field.type in (BOOLEAN, DATE, DATETIME):
        return field.type, False
    if field.type in ("table", "json", "multiselect", "attachment"):
        return None, False
    kind = field.kind
    if kind.numeric:
        return NUMBER, False
    if kind.text_like:
        return TEXT, False
    return None, False


def unify(a: str | None, b: str | None) -> str | None:
    """The type both ``a`` and ``b`` can be (null fits any), or None."""
    if a == NULL:
        return b
    if b == NULL or a == b:
        return a
    return None


@dataclass
class Checker:
    entity: Entity
    model: AppModel
    errors: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    uses_user: bool = False
    uses_today: bool = False

    def fail(self, node: Node, message: str) -> None:
        self.errors.append(f"{message} (at column {node.column})")

    def check(self, node: Node) -> str | None:
        method = getattr(self, f"_{type(node).__name__.lower()}")
        node.type = method(node)
        return node.type

    # -- leaves -------------------------------------------------------------------------

    def _literal(self, node: Literal) -> str:
        value = node.value
        if value is None:
            return NULL
        if isinstance(value, bool):
            return BOOLEAN
        if isinstance(value, str):
            return TEXT
        node.integral = isinstance(value, int)
        return NUMBER

    def _path(self, node: Path) -> str | None:
        if node.user:
            self.uses_user = True
            return self._user_property(node, node.names[0], "$user", rest=node.names[1:])
        if len(node.names) > MAX_LINKS + 1:
            self.fail(node, f"'{node.dotted}' follows {len(node.names) - 1} links; a path may follow at most {MAX_LINKS}")
            return None
        entity: Entity | None = self.entity
        entities = []
        for position, name in enumerate(node.names):
            last = position == len(node.names) - 1
            where = ".".join(node.names[:position]) or self.entity.name
            if entity is None:  # a user, reached through a link
                entities.append(USER_ENTITY)
                return self._user_property(node, name, ".".join(node.names[:position]), rest=node.names[position + 1:],
                                           entities=tuple(entities))
            entities.append(entity.name)
            field_ = entity.all_fields.get(name)
            if field_ is None:
                hint = _close(name, entity.all_fields) or f"; its fields: {', '.join(entity.all_fields)}"
                self.fail(node, f"no field '{name}' in {entity.name}{hint}")
                return None
            if field_.type == "table":
                self.fail(node, f"'{name}' holds child rows of {field_.target}: expressions cannot read child rows")
                return None
            if not last:
                if field_.type != "link":
                    self.fail(node, f"'{name}' is {_a(field_.type)} field, not a link: only a link can be followed "
                                    f"with '.' (in '{node.dotted}')")
                    return None
                entity = None if field_.target == USER_ENTITY else self.model.entities.get(field_.target)
                if entity is None and field_.target != USER_ENTITY:
                    self.fail(node, f"'{where}.{name}' links to {field_.target}, which is not in the model")
                    return None
                continue
            kind, whole = field_value_type(field_)
            if kind is None:
                self.fail(node, f"'{node.dotted}' is {_a(field_.type)} field, which expressions cannot read")
                return None
            node.integral = whole
            node.entities = tuple(entities)
            self.paths.append(node.dotted)
            return kind
        return None  # unreachable: the loop returns

    def _user_property(self, node: Path, name: str, owner: str, rest: tuple[str, ...],
                       entities: tuple[str, ...] = ()) -> str | None:
        prop = USER_PROPERTIES.get(name)
        if prop is None:
            self.fail(node, f"a user has no '{name}'{_close(name, USER_PROPERTIES)}; "
                            f"{owner} has: {', '.join(USER_PROPERTIES)}")
            return None
        if rest:
            self.fail(node, f"'{owner}.{name}' cannot be followed with '.': users' teams and managers are read "
                            "as their ids")
            return None
        node.integral = prop[1]
        node.entities = entities
        if not node.user:
            self.paths.append(node.dotted)
        return prop[0]

    # -- operators ----------------------------------------------------------------------

    def _unary(self, node: Unary) -> str | None:
        operand = self.check(node.operand)
        if operand is None:
            return None
        if node.op == "-":
            if unify(operand, NUMBER) != NUMBER:
                self.fail(node, f"cannot negate {_a(operand)}: '-' needs a number")
                return None
            node.integral = node.operand.integral
            return NUMBER
        if unify(operand, BOOLEAN) != BOOLEAN:
            self.fail(node, f"'not' needs a condition (true or false), not {_a(operand)}")
            return None
        return BOOLEAN

    def _binary(self, node: Binary) -> str | None:
        left, right = self.check(node.left), self.check(node.right)
        if left is None or right is None:
            return None
        if node.op in ARITHMETIC:
            return self._arithmetic(node, left, right)
        if node.op in LOGIC:
            for side, kind in (("left", left), ("right", right)):
                if unify(kind, BOOLEAN) != BOOLEAN:
                    self.fail(node, f"'{node.op}' needs a condition (true or false) on each side; the {side} side "
                                    f"is {_a(kind)}: compare it, e.g. x > 0")
                    return None
            return BOOLEAN
        assert node.op in COMPARISONS
        if NULL in (left, right):
            self.fail(node, "comparing with null always gives null: use is_empty(x) to test for a missing value")
            return None
        if left != right:
            self.fail(node, f"cannot compare {left} with {right}")
            return None
        if left == BOOLEAN and node.op not in ("=", "!="):
            self.fail(node, f"true/false values can only be compared with = or !=, not {node.op}")
            return None
        return BOOLEAN

    def _arithmetic(self, node: Binary, left: str, right: str) -> str | None:
        if unify(left, NUMBER) == NUMBER and unify(right, NUMBER) == NUMBER:
            node.integral = node.op != "/" and node.left.integral and node.right.integral
            return NUMBER
        verb = _VERBS[node.op]
        hint = f"'{node.op}' works on numbers"
        if TEXT in (left, right) and node.op == "+":
            hint = "use concat() for text"
        elif left == DATE and right == DATE and node.op == "-":
            hint = "use days_between(from, to)"
        elif DATE in (left, right) and node.op in "+-":
            hint = "use add_days(date, days)"
        self.fail(node, f"cannot {verb} {left} and {right}: {hint}")
        return None

    def _in(self, node: In) -> str | None:
        operand = self.check(node.operand)
        options = [self.check(o) for o in node.options]
        if operand is None or None in options:
            return None
        if operand == NULL:
            self.fail(node, "'null in (...)' always gives null: use is_empty(x) to test for a missing value")
            return None
        for option, kind in zip(node.options, options, strict=True):
            if unify(operand, kind) is None:
                self.fail(option, f"cannot look for {_a(operand)} among {kind} values")
                return None
        return BOOLEAN

    def _call(self, node: Call) -> str | None:
        function = FUNCTIONS.get(node.name)
        if function is None:
            self.fail(node, f"unknown function '{node.name}'{_close(node.name, FUNCTIONS)}; "
                            f"the functions are: {', '.join(sorted(FUNCTIONS))}")
            for arg in node.args:
                self.check(arg)
            return None
        if node.name in ("today", "now"):
            self.uses_today = True
        kinds = [self.check(arg) for arg in node.args]
        wanted = len(function.params)
        if len(kinds) != wanted and not (function.variadic and len(kinds) >= wanted):
            count = f"at least {wanted}" if function.variadic else str(wanted)
            self.fail(node, f"{node.name}() takes {count} argument{'s' if count != '1' else ''} "
                            f"({function.signature}), not {len(kinds)}")
            return None
        if None in kinds:
            return None
        shared: str | None = NULL
        for position, (arg, kind) in enumerate(zip(node.args, kinds, strict=True)):
            param = function.params[min(position, wanted - 1)]
            if param == "any":
                continue
            if param in ("value", "ordered"):
                joined = unify(shared, kind)
                if joined is None:
                    self.fail(arg, f"{node.name}(): every value must have the same type; this one is {kind}, "
                                   f"the others {shared} ({function.signature})")
                    return None
                if param == "ordered" and kind not in ORDERED | {NULL}:
                    self.fail(arg, f"{node.name}() compares numbers, texts, dates or date-times, not {kind}")
                    return None
                shared = joined
            elif unify(kind, param) != param:
                self.fail(arg, f"{node.name}() needs {_a(param)} here, not {_a(kind)} ({function.signature})")
                return None
        if function.check is not None:
            problem = function.check(node.args)
            if problem:
                self.fail(node, problem)
                return None
        node.integral = function.integral(node.args)
        return shared if function.result == "same" else function.result


def _a(kind: str) -> str:
    return {NULL: "null", BOOLEAN: "a condition (true or false)"}.get(kind, f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}")


def _close(name: str, choices) -> str:
    matches = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""
