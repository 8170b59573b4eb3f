"""The condition language of row scopes (and, later, flow guards and rule conditions).

A condition is data, never code: ``{all: [...]}``, ``{any: [...]}``, ``{not: ...}``, or
``{field: {operator: value}}`` with the operators of API filters. A value may name the
acting user: ``$user.id``, ``$user.team``, ``$user.teams`` (their team and every team
below it, for ``in``) or ``$user.manager``. Here a condition is checked against an
entity; the record service compiles it to SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loom.metadata.model import Entity

USER_REFERENCES = ("$user.id", "$user.team", "$user.teams", "$user.manager")
COMBINATORS = ("all", "any", "not")


def check_condition(entity: Entity, condition: Any, path: tuple,
                    fail: Callable[[tuple, str], None]) -> None:
    """Report (through ``fail``) every field, operator or value that does not fit ``entity``."""
    for key, value in condition.items():
        here = path + (key,)
        if key in ("all", "any"):
            for i, item in enumerate(value):
                check_condition(entity, item, here + (i,), fail)
            continue
        if key == "not":
            check_condition(entity, value, here, fail)
            continue
        field = entity.all_fields.get(key)
        if field is None:
            fail(here, f"no field named '{key}' in {entity.name}")
            continue
        for op, operand in value.items():
            if op not in field.kind.operators:
                fail(here + (op,), f"operator '{op}' does not apply to a {field.type} field")
                continue
            if op == "isnull":
                continue
            for item in operand if op in ("in", "nin") else [operand]:
                if isinstance(item, str) and item.startswith("$"):
                    if item not in USER_REFERENCES:
                        fail(here + (op,), f"unknown reference {item}; use one of: {', '.join(USER_REFERENCES)}")
                    elif field.type not in ("link", "integer"):
                        fail(here + (op,), f"{item} compares with a link or integer field, not a {field.type} field")
                    elif item == "$user.teams" and op not in ("in", "nin"):
                        fail(here + (op,), "$user.teams is a list: use it with in or nin")
                    continue
                if op in ("contains", "startswith"):
                    continue
                try:
                    field.kind.coerce(item, field)
                except ValueError as exc:
                    fail(here + (op,), f"{item!r} does not fit {entity.name}.{key}: {exc}")
