"""Administration of users, teams, roles and role assignments: ``/api/v1/_admin``.

Each endpoint needs the matching ``admin`` right of a role (users, teams, roles) or a
superuser; every change is written to the outbox for the audit log. Roles are metadata
documents: changing one publishes a new metadata version, which every process picks up
on its next request.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from loom.errors import BadRequest, NotFound
from loom.permissions import Forbidden, Policy
from loom.schema.service import model_from_documents

admin = Blueprint("admin", __name__, url_prefix="/api/v1/_admin")


def _loom():
    return current_app.extensions["loom"]


def _require(right: str) -> None:
    principal = g.principal
    if principal.is_superuser or principal.is_system:
        return
    live = _loom().metadata.live()
    policy = live.derive("policy", lambda: Policy(live.model))
    if principal.read_only or right not in policy.admin(principal.roles):
        raise Forbidden(f"managing {right} needs a role with admin: [{right}]")


def _body() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise BadRequest("send a JSON object")
    return body


def _known_role(name: str) -> None:
    if name not in _loom().metadata.live().model.roles:
        raise NotFound(f"there is no role named {name}; see GET /api/v1/_admin/roles")


@admin.get("/users")
def list_users():
    _require("users")
    return jsonify({"data": _loom().identity.list_users()})


@admin.post("/users")
def create_user():
    _require("users")
    body = _body()
    if body.get("is_superuser") and not g.principal.is_superuser:
        raise Forbidden("only a superuser can make a superuser")
    for role in body.get("roles", []):
        _known_role(role)
    if not isinstance(body.get("username"), str):
        raise BadRequest("username is required", errors=[{"field": "username", "message": "is required"}])
    user_id = _loom().identity.create_user(
        body["username"], password=body.get("password"), display_name=body.get("display_name", ""),
        email=body.get("email"), mobile=body.get("mobile"), locale=body.get("locale", "en"),
        team=body.get("team"), roles=body.get("roles", []), is_superuser=bool(body.get("is_superuser")),
        actor=g.principal.name)
    return jsonify({"data": {"id": user_id}}), 201


@admin.patch("/users/<int:user_id>")
def update_user(user_id: int):
    _require("users")
    _loom().identity.update_user(user_id, _body(), actor=g.principal.name)
    return "", 204


@admin.post("/users/<int:user_id>/roles")
def assign_role(user_id: int):
    _require("users")
    role = _body().get("role")
    if not isinstance(role, str):
        raise BadRequest("send {\"role\": name}")
    _known_role(role)
    _loom().identity.assign(user_id, role, actor=g.principal.name)
    return "", 204


@admin.delete("/users/<int:user_id>/roles/<role>")
def unassign_role(user_id: int, role: str):
    _require("users")
    _loom().identity.unassign(user_id, role, actor=g.principal.name)
    return "", 204


@admin.post("/users/<int:user_id>/tokens")
def create_token(user_id: int):
    if g.principal.user_id != user_id:
        _require("users")
    elif g.principal.read_only:
        raise Forbidden("a read-only token cannot create tokens")
    body = _body()
    identity = _loom().identity
    username = next((u["username"] for u in identity.list_users() if u["id"] == user_id), None)
    if username is None:
        raise NotFound(f"there is no user with id {user_id}")
    new = identity.create_token(username, name=body.get("name", ""), expires_days=body.get("expires_days"),
                                read_only=bool(body.get("read_only")), actor=g.principal.name)
    return jsonify({"data": {"id": new.id, "token": new.token,
                             "expires_at": new.expires_at.isoformat() if new.expires_at else None}}), 201


@admin.delete("/tokens/<int:token_id>")
def revoke_token(token_id: int):
    _require("users")
    _loom().identity.revoke_token(token_id, actor=g.principal.name)
    return "", 204


@admin.get("/teams")
def list_teams():
    _require("teams")
    return jsonify({"data": _loom().identity.list_teams()})


@admin.post("/teams")
def create_team():
    _require("teams")
    body = _body()
    if not isinstance(body.get("name"), str):
        raise BadRequest("name is required", errors=[{"field": "name", "message": "is required"}])
    team_id = _loom().identity.create_team(body["name"], label=body.get("label", ""), parent=body.get("parent"),
                                           actor=g.principal.name)
    return jsonify({"data": {"id": team_id}}), 201


@admin.patch("/teams/<name>")
def move_team(name: str):
    _require("teams")
    _loom().identity.move_team(name, _body().get("parent"), actor=g.principal.name)
    return "", 204


@admin.get("/roles")
def list_roles():
    _require("roles")
    model = _loom().metadata.live().model
    return jsonify({"data": [d for d in model.documents if d.get("kind") == "role"]})


@admin.put("/roles/<name>")
def put_role(name: str):
    """Create or replace a role document; publishes a new metadata version."""
    _require("roles")
    document = {**_body(), "kind": "role", "name": name}
    return _publish_roles(lambda docs: [d for d in docs if not _is_role(d, name)] + [document])


@admin.delete("/roles/<name>")
def delete_role(name: str):
    _require("roles")
    _known_role(name)
    return _publish_roles(lambda docs: [d for d in docs if not _is_role(d, name)])


def _is_role(document: dict[str, Any], name: str) -> bool:
    return document.get("kind") == "role" and document.get("name") == name


def _publish_roles(change):
    service = _loom().metadata
    documents = change([dict(d) for d in service.live().model.documents])
    plan = service.apply(model_from_documents(documents, "<request>"), author=g.principal.name)
    return jsonify({"data": {"version": plan.to_version, "summary": list(plan.summary)}})
