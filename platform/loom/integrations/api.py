"""The deliveries API, ``/api/v1/_deliveries``: list and read deliveries with their
attempts, retry failed ones, replay a time range. For superusers and roles with
``admin: [integrations]`` (``loom.integrations.admin.may_manage_deliveries``); anyone else
gets 403 on every route."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from loom.errors import BadRequest, error_entry
from loom.integrations import admin
from loom.permissions import Forbidden

deliveries_api = Blueprint("deliveries", __name__, url_prefix="/api/v1/_deliveries")


def _loom():
    return current_app.extensions["loom"]


def require_delivery_admin() -> None:
    """Refuse (403) anyone who may not see and handle deliveries."""
    if not admin.may_manage_deliveries(g.get("principal")):
        raise Forbidden("deliveries hold record data and remote errors: seeing or handling them needs a superuser "
                        "or a role with admin: [integrations]", code="needs_admin", params={"right": "integrations"})


def rule_budgets() -> dict[str, int]:
    """Each rule of the live metadata -> its ``retry.max_attempts``: the round of attempts
    a retried or replayed delivery of that rule gets."""
    live = _loom().metadata.live()
    return {name: rule.max_attempts for name, rule in live.model.of_kind("rule").items()}


def _body(*names: str) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object", errors=[error_entry("", "not_an_object", "expected a JSON object")])
    unknown = [k for k in body if k not in names]
    if unknown:
        raise BadRequest(f"{unknown[0]}: unknown member; send {', '.join(names)}",
                         errors=[error_entry(unknown[0], "bad_parameter", f"unknown member; send {', '.join(names)}",
                                             parameter=unknown[0])])
    return body


@deliveries_api.get("")
def list_deliveries():
    """Deliveries, newest first, filtered by status (pending, running, failed, dead,
    succeeded), rule, plugin, action, entity, record_id, since and until."""
    require_delivery_admin()
    data, next_cursor = admin.list_deliveries(_loom().engine, admin.DeliveryQuery.parse(request.args))
    return jsonify({"data": data, "next_cursor": next_cursor})


@deliveries_api.get("/<int:delivery_id>")
def get_delivery(delivery_id: int):
    """One delivery with its context, result and every attempt made at it."""
    require_delivery_admin()
    return jsonify({"data": admin.delivery(_loom().engine, delivery_id)})


@deliveries_api.post("/_retry")
def retry():
    """``{"ids": [...]}``: dead deliveries, and pending ones that failed, run again now."""
    require_delivery_admin()
    ids = admin.parse_ids(_body("ids").get("ids"))
    result = admin.retry(_loom().engine, _loom().audit, ids, principal=g.principal, budgets=rule_budgets())
    return jsonify(result.as_dict())


@deliveries_api.post("/_replay")
def replay():
    """``{"since": ..., "until": ..., "rule"?, "plugin"?, "action"?, "entity"?,
    "record_id"?}``: deliveries that succeeded or died in the range, delivered again as
    new ones. ``"dry_run": true`` only counts them."""
    require_delivery_admin()
    body = _body("since", "until", "dry_run", *admin.REPLAY_FILTERS)
    dry_run = body.pop("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("dry_run: expected true or false",
                         errors=[error_entry("dry_run", "bad_parameter", "expected true or false", parameter="dry_run")])
    span = admin.ReplayRange.parse(body)
    if dry_run:
        return jsonify({"count": admin.count_replay(_loom().engine, span), "max": admin.MAX_REPLAY})
    new_ids = admin.replay(_loom().engine, _loom().audit, span, principal=g.principal, budgets=rule_budgets())
    return jsonify({"replayed": len(new_ids), "ids": new_ids})
