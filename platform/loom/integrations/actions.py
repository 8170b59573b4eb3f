"""What a rule can do: the registry of actions. Loom's own (``http.request``,
``record.create``, ``record.update``) are registered here by name; plugins add theirs
through the ``rule_actions`` hook, and the plugin host registers them as it loads them.
Rules name actions; a name nobody registered is a metadata error at validate time.

An action is a function of one ``ActionCall``. It returns what the delivery keeps as its
result (anything JSON can hold, or None), raises ``PermanentFailure`` when trying again
cannot help (the remote refused the request as such), and raises anything else for a
failure worth retrying (the remote is down, a timeout).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loom.principal import Principal

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


class PermanentFailure(Exception):
    """The action failed in a way a retry cannot mend (a 4xx answer, a refused record):
    the delivery is dead-lettered at once, with this message as its error."""


class ActionError(ValueError):
    """An action that cannot be registered: a bad or taken name."""


@dataclass(frozen=True)
class ActionCall:
    """One attempt at a delivery, as the action sees it."""

    #: the rule's ``with`` mapping, rendered as the rule's principal
    arguments: Mapping[str, Any]
    #: the same on every attempt at one delivery, different for every delivery: pass it
    #: on (a header, an external reference) so the other end does a repeat only once
    idempotency_key: str
    delivery_id: int
    #: 1 on the first attempt
    attempt: int
    rule: str
    #: who the action acts as (the rule's ``run_as``): its roles bound what it may do
    principal: Principal
    #: the Flask app of the worker (``record_service(entity, call.principal, app=call.app)``)
    app: Any
    #: the providing plugin's settings, secrets unsealed (empty for Loom's own actions)
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: what triggered the rule: {"record": {...}, "changes": {...}} as the principal may read it
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """An action rules can name: ``<plugin or area>.<verb>``, e.g. ``erp.push_sales_order``."""

    name: str
    #: the function, or ``"module:function"`` imported when first run
    run: Callable[[ActionCall], Any] | str
    #: the plugin providing it ("loom" for Loom's own)
    plugin: str = "loom"
    #: a JSON Schema the rendered arguments must meet (checked before each attempt; a
    #: mismatch is a permanent failure naming the argument)
    arguments: Mapping[str, Any] | None = None
    description: str = ""

    def function(self) -> Callable[[ActionCall], Any]:
        if callable(self.run):
            return self.run
        module, _, name = self.run.partition(":")
        return getattr(importlib.import_module(module), name)


ACTIONS: dict[str, Action] = {}


def register_action(action: Action) -> Action:
    """Make ``action`` available to rules. The same action again does nothing; another
    under a taken name raises ``ActionError``."""
    if not isinstance(action.name, str) or not _NAME.match(action.name):
        raise ActionError(f"action {action.name!r}: its name must be dotted snake_case, e.g. erp.push_order")
    current = ACTIONS.get(action.name)
    if current is not None and current != action:
        raise ActionError(f"action {action.name!r} is already registered by {current.plugin}; choose another name")
    ACTIONS[action.name] = action
    return action


def unregister_action(name: str) -> None:
    ACTIONS.pop(name, None)


def action(name: str) -> Action | None:
    return ACTIONS.get(name)


def action_names() -> tuple[str, ...]:
    return tuple(sorted(ACTIONS))


_ENTITY = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "description": "the entity's name"}
_VALUES = {"type": "object", "description": "field name -> value, as the API takes them"}
_EXTERNAL_ID = {"type": "object", "description": "the record's id in another system (loom.records.external_ids)",
                "properties": {"system": {"type": "string", "description": "the other system, e.g. erp"},
                               "id": {"type": ["string", "integer"], "description": "the record's id there"}},
                "required": ["system", "id"], "additionalProperties": False}

for _builtin in (
    Action("http.request", "loom.integrations.http:request",
           description="Send an HTTP request (an outbound webhook), signed with HMAC-SHA256",
           arguments={
               "type": "object",
               "properties": {
                   "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"], "default": "POST"},
                   "url": {"type": "string", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+", "maxLength": 2000,
                           "description": "an http:// or https:// address"},
                   "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                   "body": {"description": "any JSON value, sent as JSON"},
                   "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 10,
                               "description": "seconds to wait for the answer"},
                   "signing_key": {"type": "string", "minLength": 1,
                                   "description": "the name of a secret in the settings of http (signing_keys)"},
               },
               "required": ["url"],
               "additionalProperties": False,
           }),
    Action("record.create", "loom.integrations.records:create",
           description="Create a record, as the rule's principal",
           arguments={"type": "object", "properties": {"entity": _ENTITY, "values": _VALUES,
                                                       "external_id": _EXTERNAL_ID},
                      "required": ["entity", "values"], "additionalProperties": False}),
    Action("record.update", "loom.integrations.records:update",
           description="Update a record, as the rule's principal",
           arguments={"type": "object",
                      "properties": {"entity": _ENTITY, "values": _VALUES,
                                     "id": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1,
                                            "description": "the record's id (text of digits is taken)"},
                                     "external_id": _EXTERNAL_ID},
                      "required": ["entity", "values"], "additionalProperties": False}),
):
    register_action(_builtin)
