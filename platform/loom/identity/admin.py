"""Administration of users, teams, roles and role assignments: ``/api/v1/_admin``.

Each endpoint needs the matching ``admin`` right of a role (users, teams, roles) or a
superuser; every change is written to the outbox for the audit log. Roles are metadata
documents: changing one publishes a new metadata version, which every process picks up
on its next request.

No admin right can be used to gain power its holder lacks (``authorise``, the one rule
every endpoint goes through): only a superuser acts on a superuser's account, an account
whose roles carry admin rights the caller lacks is out of the caller's reach, and a role
carrying such rights can be neither assigned nor written by them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from loom.errors import BadRequest, NotFound, error_entry
from loom.permissions import Forbidden, Policy
from loom.schema.service import model_from_documents

admin = Blueprint("admin", __name__, url_prefix="/api/v1/_admin")


def _loom():
    return current_app.extensions["loom"]


def admin_policy() -> Policy:
    live = _loom().metadata.live()
    return live.derive("policy", lambda: Policy(live.model))


def admin_rights(policy: Policy, roles: Iterable[str]) -> frozenset[str]:
    """The admin rights ``roles`` carry, inherited ones included (unknown roles carry none)."""
    known = tuple(sorted(r for r in set(roles) if r in policy.model.roles))
    return policy.admin(known)


def authorise(right: str | None, *, account: int | None = None, carries: Iterable[str] = (),
               makes_superuser: bool = False) -> None:
    """Refuse unless the caller may use the admin ``right`` (None: acting on their own
    account) for this: on ``account`` (a user id), giving out the admin rights in
    ``carries`` (through a role), or making a superuser. A superuser or a system
    principal may do anything; anyone else only within the rights they hold."""
    principal = g.principal
    if principal.is_superuser or principal.is_system:
        return
    held = admin_rights(admin_policy(), principal.roles)
    if right is not None and right not in held:
        raise Forbidden(f"managing {right} needs a role with admin: [{right}]", code="needs_admin",
                        params={"right": right})
    if makes_superuser:
        raise Forbidden("only a superuser can make a superuser")
    if account is not None and account != principal.user_id:
        target = _loom().identity.account(account)
        if target.is_superuser:
            raise Forbidden(f"user {account} is a superuser: only a superuser may change their account, "
                            "password, roles or tokens")
        beyond = admin_rights(admin_policy(), target.roles) - held
        if beyond:
            raise Forbidden(f"user {account} has admin rights you do not have ({', '.join(sorted(beyond))}): "
                            "only someone who has them, or a superuser, may change their account")
    beyond = frozenset(carries) - held
    if beyond:
        raise Forbidden(f"this would give out admin rights you do not have ({', '.join(sorted(beyond))}): "
                        "only someone who has them, or a superuser, may do that")


TEXT, OPTIONAL_TEXT, FLAG = (str,), (str, type(None)), (bool,)
_TYPE_NAMES = {str: "text", bool: "true or false", int: "a whole number", list: "a list", type(None): "null"}


def _body(**expected: tuple[type, ...]) -> dict[str, Any]:
    """The request's JSON object; each member named in ``expected`` that is present must
    have one of its types (exactly: ``true`` is not a number), else 400 naming them all."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("send a JSON object")
    wrong = [error_entry(name, "wrong_type", "must be " + " or ".join(_TYPE_NAMES[t] for t in types),
                         types=[_TYPE_NAMES[t] for t in types])
             for name, types in expected.items() if name in body and type(body[name]) not in types]
    if wrong:
        raise BadRequest(f"wrong JSON types: {', '.join(e['field'] for e in wrong)}", errors=wrong)
    return body


def _known_role(name: str) -> None:
    if name not in _loom().metadata.live().model.roles:
        raise NotFound(f"there is no role named {name}; see GET /api/v1/_admin/roles")


def _role_names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise BadRequest("roles must be a list of role names", errors=[
            error_entry("roles", "wrong_type", "a list of role names", types=["a list of role names"])])
    for role in value:
        _known_role(role)
    return value


@admin.get("/users")
def list_users():
    authorise("users")
    return jsonify({"data": _loom().identity.list_users()})


@admin.post("/users")
def create_user():
    authorise("users")
    body = _body(username=TEXT, password=OPTIONAL_TEXT, display_name=TEXT, email=OPTIONAL_TEXT,
                 mobile=OPTIONAL_TEXT, locale=TEXT, team=OPTIONAL_TEXT, roles=(list,), is_superuser=FLAG)
    roles = _role_names(body.get("roles", []))
    authorise("users", carries=admin_rights(admin_policy(), roles), makes_superuser=bool(body.get("is_superuser")))
    if body.get("username") is None:
        raise BadRequest("username is required", errors=[error_entry("username", "required", "is required")])
    user_id = _loom().identity.create_user(
        body["username"], password=body.get("password"), display_name=body.get("display_name", ""),
        email=body.get("email"), mobile=body.get("mobile"), locale=body.get("locale", "en"),
        team=body.get("team"), roles=roles, is_superuser=bool(body.get("is_superuser")),
        actor=g.principal.name)
    return jsonify({"data": {"id": user_id}}), 201


@admin.patch("/users/<int:user_id>")
def update_user(user_id: int):
    authorise("users", account=user_id)
    body = _body(display_name=TEXT, email=OPTIONAL_TEXT, mobile=OPTIONAL_TEXT, locale=TEXT, is_active=FLAG,
                 team=OPTIONAL_TEXT, manager=OPTIONAL_TEXT, password=TEXT)
    _loom().identity.update_user(user_id, body, actor=g.principal.name)
    return "", 204


@admin.post("/users/<int:user_id>/roles")
def assign_role(user_id: int):
    authorise("users", account=user_id)
    role = _body(role=TEXT).get("role")
    if role is None:
        raise BadRequest("send {\"role\": name}", errors=[error_entry("role", "required", "is required")])
    _known_role(role)
    authorise("users", account=user_id, carries=admin_rights(admin_policy(), [role]))
    _loom().identity.assign(user_id, role, actor=g.principal.name)
    return "", 204


@admin.delete("/users/<int:user_id>/roles/<role>")
def unassign_role(user_id: int, role: str):
    authorise("users", account=user_id)
    _loom().identity.unassign(user_id, role, actor=g.principal.name)
    return "", 204


@admin.post("/users/<int:user_id>/tokens")
def create_token(user_id: int):
    """A token for the caller themselves, or (with the ``users`` right) for someone else."""
    authorise(None if g.principal.user_id == user_id else "users", account=user_id)
    body = _body(name=TEXT, expires_days=(int, type(None)), read_only=FLAG)
    identity = _loom().identity
    username = identity.account(user_id).username
    new = identity.create_token(username, name=body.get("name", ""), expires_days=body.get("expires_days"),
                                read_only=bool(body.get("read_only")), actor=g.principal.name)
    return jsonify({"data": {"id": new.id, "token": new.token,
                             "expires_at": new.expires_at.isoformat() if new.expires_at else None}}), 201


@admin.delete("/tokens/<int:token_id>")
def revoke_token(token_id: int):
    authorise("users")
    authorise("users", account=_loom().identity.token_owner(token_id))
    _loom().identity.revoke_token(token_id, actor=g.principal.name)
    return "", 204


@admin.get("/teams")
def list_teams():
    authorise("teams")
    return jsonify({"data": _loom().identity.list_teams()})


@admin.post("/teams")
def create_team():
    authorise("teams")
    body = _body(name=TEXT, label=TEXT, parent=OPTIONAL_TEXT)
    if body.get("name") is None:
        raise BadRequest("name is required", errors=[error_entry("name", "required", "is required")])
    team_id = _loom().identity.create_team(body["name"], label=body.get("label", ""), parent=body.get("parent"),
                                           actor=g.principal.name)
    return jsonify({"data": {"id": team_id}}), 201


@admin.patch("/teams/<name>")
def move_team(name: str):
    authorise("teams")
    _loom().identity.move_team(name, _body(parent=OPTIONAL_TEXT).get("parent"), actor=g.principal.name)
    return "", 204


@admin.get("/roles")
def list_roles():
    authorise("roles")
    live = _loom().metadata.live()
    return jsonify({"version": live.number,
                    "data": [d for d in live.model.documents if d.get("kind") == "role"]})


@admin.put("/roles/<name>")
def put_role(name: str):
    """Create or replace a role document; publishes a new metadata version."""
    authorise("roles")
    document = {**_body(), "kind": "role", "name": name}
    return _publish_roles(name, lambda docs: [d for d in docs if not _is_role(d, name)] + [document])


@admin.delete("/roles/<name>")
def delete_role(name: str):
    authorise("roles")
    _known_role(name)
    return _publish_roles(name, lambda docs: [d for d in docs if not _is_role(d, name)])


def _is_role(document: dict[str, Any], name: str) -> bool:
    return document.get("kind") == "role" and document.get("name") == name


def _publish_roles(name: str, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]):
    """Publish the live documents as ``change`` makes them, when the caller holds every admin
    right the role ``name`` carries before and after (inherited ones included). With
    ``?base_version=N`` (the ``version`` of GET /roles) the change is refused with 409,
    naming what changed, when another version was published since N."""
    base = request.args.get("base_version")
    if base is not None and not (base.isascii() and base.isdigit() and len(base) <= 18):
        raise BadRequest("base_version must be a metadata version number",
                         errors=[error_entry("base_version", "bad_parameter", "must be a version number",
                                             parameter="base_version")])
    service = _loom().metadata
    model = model_from_documents(change([dict(d) for d in service.live().model.documents]), "<request>")
    authorise("roles", carries=admin_rights(admin_policy(), [name]) | admin_rights(Policy(model), [name]))
    plan = service.apply(model, author=g.principal.name, base_version=None if base is None else int(base))
    return jsonify({"data": {"version": plan.to_version, "summary": list(plan.summary)}})
