"""One attempt at a delivery: the rule's user, what it may read of the triggering record,
the mapping rendered from that, the action called, and what came of it.

The worker (``loom.integrations.worker``) claims a delivery, calls ``run`` with no
transaction open, and records the ``Outcome``. ``run`` never raises for anything the
delivery itself causes: a missing or deactivated user, a template that cannot render, an
unknown action or arguments its schema refuses are permanent failures (trying again
cannot mend them); an action that raises ``PermanentFailure`` is one too; anything else an
action raises is worth another try, until the delivery's last attempt.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from jsonschema import Draft202012Validator

from loom.db import reading
from loom.errors import NotFound
from loom.identity.service import users
from loom.integrations import inbound  # noqa: F401  (registers webhook.handle)
from loom.integrations.actions import Action, ActionCall, PermanentFailure, action
from loom.integrations.context import running_delivery
from loom.integrations.templates import TemplateFailure, render
from loom.metadata.model import USER_ENTITY
from loom.principal import Principal
from loom.records.door import record_service

log = logging.getLogger(__name__)

#: longest error text kept of one attempt
ERROR_WIDTH = 2000

#: what an attempt came to: the first two leave the delivery done, ``failed`` sends it
#: back to wait for another try, ``dead`` is a failed last attempt
OUTCOMES = ("succeeded", "permanent", "failed", "dead")

#: the actions of deliveries Loom writes itself, not a rule: those whose ``run_as`` is
#: ``system:<name>`` run as that system principal (a rule's always run as a user)
SYSTEM_ACTIONS = frozenset({"webhook.handle"})


@dataclass(frozen=True)
class Outcome:
    """What one attempt at a delivery came to."""

    #: one of ``OUTCOMES``
    kind: str
    error: str | None = None
    #: what the action returned (kept when it succeeded): JSON, or its text
    result: Any = None
    duration_ms: float = 0.0


def run(app, delivery: Any) -> Outcome:
    """Make one attempt at ``delivery`` (a row of ``loom_deliveries`` a worker has claimed,
    its ``attempts`` already counting this one), inside ``app``'s context."""
    started = time.perf_counter()
    with app.app_context():
        try:
            result = _attempt(app, delivery)
        except PermanentFailure as error:
            kind, text, result = "permanent", str(error) or type(error).__name__, None
        except Exception as error:  # any other failure of an action is worth another try
            log.warning("delivery %s (rule %s, action %s) failed on attempt %s: %s: %s", delivery.id,
                        delivery.rule, delivery.action, delivery.attempts, type(error).__name__, error)
            kind = "dead" if delivery.attempts >= delivery.max_attempts else "failed"
            text, result = f"{type(error).__name__}: {error}", None
        else:
            kind, text = "succeeded", None
    duration = round((time.perf_counter() - started) * 1000, 3)
    return Outcome(kind, text[:ERROR_WIDTH] if text else None, _storable(result), duration)


def _attempt(app, delivery: Any) -> Any:
    loom = app.extensions["loom"]
    if delivery.action in SYSTEM_ACTIONS and delivery.run_as.startswith("system:"):
        principal = Principal.system(delivery.run_as.removeprefix("system:"))
    else:
        principal = rule_principal(loom, delivery.run_as)
    registered = action(delivery.action)
    if registered is None:
        raise PermanentFailure(f"there is no action named {delivery.action} (was the plugin providing it "
                               "uninstalled or turned off?)")
    context = dict(delivery.context or {})
    record, changes = readable_context(app, principal, delivery.entity, context.get("record") or {},
                                       context.get("changes") or {})
    settings = _settings(loom, registered)
    variables = {
        "record": record,
        "changes": changes,
        # what a webhook that triggered the rule was sent (loom.plugins.webhooks)
        "body": context.get("body"),
        "headers": context.get("headers") or {},
        "rule": delivery.rule,
        "delivery": {"id": delivery.id, "idempotency_key": delivery.idempotency_key, "attempt": delivery.attempts},
        "now": dt.datetime.now(ZoneInfo(loom.time_zone)),
        "settings": settings,
    }
    try:
        arguments = render(context.get("with") or {}, variables)
    except TemplateFailure as error:
        raise PermanentFailure(f"the rule's mapping cannot be rendered: {error}") from None
    _check_arguments(registered, arguments)
    try:
        function = registered.function()
    except (ImportError, AttributeError) as error:
        raise PermanentFailure(f"the action {registered.name} cannot be loaded ({registered.run}): "
                               f"{type(error).__name__}: {error}") from None
    call = ActionCall(arguments=arguments, idempotency_key=delivery.idempotency_key, delivery_id=delivery.id,
                      attempt=delivery.attempts, rule=delivery.rule, principal=principal, app=app,
                      settings=settings, context={"record": record, "changes": changes})
    with running_delivery(delivery.id, delivery.rule, delivery.depth, tuple(context.get("chain") or ())):
        return function(call)


def rule_principal(loom: Any, username: str) -> Principal:
    """The principal of the user a rule runs as; ``PermanentFailure`` when there is no
    active user of that name (a rule must not act for someone who may no longer act)."""
    with reading(loom.engine) as conn:
        user = conn.execute(sa.select(users).where(users.c.username == username)).first()
        if user is None:
            raise PermanentFailure(f"the rule's user {username} does not exist")
        if not user.is_active:
            raise PermanentFailure(f"the rule's user {username} is deactivated")
        return loom.identity.principal(conn, user)


def readable_context(app, principal: Principal, entity: str | None, record: Mapping[str, Any],
                     changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The triggering record and its changes, cut down to what ``principal`` may read of
    ``entity``: only readable fields (and of a table field's rows, only their readable
    fields), a linked record's title only where the principal may read it. A principal
    who may not read the entity at all sees the record's id and nothing else."""
    if entity is None:
        return dict(record), dict(changes)
    try:
        service = record_service(entity, principal, app=app)
    except NotFound:  # the entity is gone from the metadata since the delivery was made
        service = None
    if service is None or not service.allowed("read"):
        return ({"id": record["id"]} if "id" in record else {}), {}
    readable = service.readable()
    fields = service.entity.all_fields
    cut: dict[str, dict[str, Any]] = {}
    for part in (record, changes):
        kept = {}
        for name, value in part.items():
            if name not in readable:
                continue
            f = fields.get(name)
            if f is not None and f.type == "table":
                value = _child_rows(value, service.readable(f.target))
            elif f is not None and f.type == "link" and f.target != USER_ENTITY and not _title_readable(service,
                                                                                                        f.target):
                value = _without_titles(value)
            kept[name] = value
        cut["record" if part is record else "changes"] = kept
    return cut["record"], cut["changes"]


def _child_rows(value: Any, readable: frozenset[str]) -> Any:
    """A table field's rows (or an update's ``[old rows, new rows]``) with readable fields only."""
    if isinstance(value, list):
        return [_child_rows(item, readable) for item in value]
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k in readable}
    return value


def _title_readable(service: Any, target: str) -> bool:
    """Whether the principal sees the title of every record of ``target`` (may read it, its
    title field, and every row of it)."""
    try:
        other = service.other(target)
    except NotFound:
        return False
    if not other.allowed("read") or other.entity.title_field not in other.readable():
        return False
    access = other.access
    return access.scope(other.table, "read", other.table.metadata.tables["loom_users"],
                        other.dialect) is None


def _without_titles(value: Any) -> Any:
    """A link value (``{"id", "title"}``, or an update's ``[old, new]``) with the titles dropped."""
    if isinstance(value, list):
        return [_without_titles(item) for item in value]
    if isinstance(value, Mapping) and "title" in value:
        return {**value, "title": None}
    return value


def _settings(loom: Any, registered: Action) -> dict[str, Any]:
    """The providing plugin's settings, secrets unsealed (none for Loom's own actions)."""
    if registered.plugin == "loom" or loom.settings is None or registered.plugin not in loom.settings.schemas:
        return {}
    return loom.settings.values(registered.plugin)


def _check_arguments(registered: Action, arguments: Any) -> None:
    """Refuse arguments that do not meet the action's JSON Schema, naming the first one wrong."""
    if not registered.arguments:
        return
    errors = sorted(Draft202012Validator(registered.arguments).iter_errors(arguments),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    error = errors[0]
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required" and "'" in error.message:
        path = error.message.split("'")[1]
        text = "is required"
    else:
        text = error.message
    where = f"argument '{path}'" if path else "the arguments"
    raise PermanentFailure(f"{where} of action {registered.name}: {text}")


def _storable(result: Any) -> Any:
    """What an action returned, as the delivery keeps it: JSON as it is, anything else as text."""
    if result is None:
        return None
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        return str(result)
    return result
