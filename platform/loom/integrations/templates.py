"""Mappings of integration rules (``with:``): each string in them is a template in Jinja's
sandbox, rendered when the delivery runs, with what the rule's principal may read.

A string that is one expression and nothing else (``"{{ record.id }}"``) gives the
expression's own value, so a number stays a number and a list a list; any other string
renders as text. Keys are never templates. A name the variables do not hold (a field the
principal may not read is not there) fails the rendering rather than giving an empty
string: an action is never sent half a message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: the variables a mapping may read: ``record`` and ``changes`` where a record event or a
#: schedule triggered the rule, ``body`` and ``headers`` where a webhook did
VARIABLES = ("record", "changes", "body", "headers", "rule", "delivery", "now", "settings")
_ALWAYS = ("rule", "delivery", "now", "settings")


def variables_of(event: str) -> tuple[str, ...]:
    """The variables the mapping of a rule triggered by ``event`` may read."""
    if event == "webhook":
        return ("body", "headers", *_ALWAYS)
    if event == "schedule":
        return ("record", *_ALWAYS)
    return ("record", "changes", *_ALWAYS)

_ONE_EXPRESSION = re.compile(r"^\{\{(?P<expression>(?:(?!\}\}|\{\{|\{%|\{#).)*)\}\}$", re.S)

ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class TemplateFailure(ValueError):
    """A template of a rule's mapping that cannot be rendered, with where it is."""


@lru_cache(maxsize=2048)
def _compiled(text: str) -> Any:
    match = _ONE_EXPRESSION.match(text.strip())
    if match is not None:
        return ENVIRONMENT.compile_expression(match.group("expression"), undefined_to_none=False)
    return ENVIRONMENT.from_string(text)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def render(mapping: Any, variables: Mapping[str, Any]) -> Any:
    """``mapping`` with each string rendered (dicts and lists walked); raises
    ``TemplateFailure`` naming the place (``with.body.order``) and what went wrong."""
    return _render(mapping, dict(variables), "with")


def _render(value: Any, variables: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        if not is_template(value):
            return value
        try:
            template = _compiled(value)
            if hasattr(template, "render"):
                return template.render(variables)
            result = template(**variables)
        except TemplateError as exc:
            raise TemplateFailure(f"{where}: {exc.message or type(exc).__name__} (in the template {value!r})") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateFailure(f"{where}: {exc} (in the template {value!r})") from None
        if isinstance(result, StrictUndefined):
            raise TemplateFailure(f"{where}: the template {value!r} names nothing the rule may read")
        return result
    if isinstance(value, Mapping):
        return {key: _render(item, variables, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_render(item, variables, f"{where}[{i}]") for i, item in enumerate(value)]
    return value
