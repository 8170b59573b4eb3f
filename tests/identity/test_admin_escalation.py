"""No admin right can be used to gain power its holder lacks: a ``users`` admin cannot take
over a superuser (or anyone with more admin rights), nor hand out rights it does not
have; a ``roles`` admin cannot write a role that carries rights it does not have."""

from __future__ import annotations

import re

import sqlalchemy as sa

ROLES = [
    {"kind": "role", "name": "people_admin", "admin": ["users"]},
    {"kind": "role", "name": "role_admin", "admin": ["roles"]},
    {"kind": "role", "name": "power", "admin": ["users", "teams", "roles", "audit"]},
    {"kind": "role", "name": "heir", "inherits": ["power"]},
    {"kind": "role", "name": "reader", "permissions": {"memo": {"actions": ["read"]}}},
]
MEMO = {"kind": "entity", "name": "memo", "fields": [{"name": "body", "type": "string"}]}
_ARGUMENT = re.compile(r"<(?:(\w+):)?(\w+)>")


def _signed_in(client):
    """``client``, its token's first use recorded (so that it no longer changes any row)."""
    assert client.get("/api/v1/_auth/me").status_code == 200
    return client


def _state(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return [sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))), key=repr)
                for t in ("loom_users", "loom_role_assignments", "loom_api_tokens", "loom_sessions")]


def test_a_users_admin_cannot_act_on_a_superusers_account_through_any_route(loom_app, apply_metadata, make_user,
                                                                            client_for, loom_engine):
    apply_metadata(MEMO, *ROLES)
    root = make_user("root", superuser=True, password="the root password")
    make_user("hr", roles=["people_admin"])
    root_token = loom_app.extensions["loom"].identity.create_token("root", actor="test")
    hr = _signed_in(client_for("hr"))
    values = {"user_id": root, "token_id": root_token.id, "role": "reader"}
    before = _state(loom_engine)
    attacked = []
    for rule in loom_app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/_admin/") or not ({"user_id", "token_id"} & rule.arguments):
            continue
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            url = _ARGUMENT.sub(lambda m: str(values[m.group(2)]), rule.rule)
            response = hr.open(url, method=method, json={"password": "hijacked password", "is_active": False,
                                                         "role": "reader", "name": "backdoor"})
            assert response.status_code == 403, (method, url, response.status_code)
            assert "superuser" in response.get_json()["detail"]
            attacked.append(rule.endpoint)
    assert set(attacked) == {"admin.update_user", "admin.assign_role", "admin.unassign_role", "admin.create_token",
                             "admin.revoke_token"}
    assert _state(loom_engine) == before
    signed_in = loom_app.test_client().post("/api/v1/_auth/login",
                                            json={"username": "root", "password": "the root password"})
    assert signed_in.status_code == 200


def test_a_users_admin_cannot_take_over_someone_with_more_admin_rights(apply_metadata, make_user, client_for,
                                                                      loom_engine):
    apply_metadata(MEMO, *ROLES)
    boss = make_user("boss", roles=["heir"])  # every admin right, inherited
    make_user("hr", roles=["people_admin"])
    hr = _signed_in(client_for("hr"))
    before = _state(loom_engine)
    for method, url, body in [("PATCH", f"/api/v1/_admin/users/{boss}", {"password": "hijacked password"}),
                              ("POST", f"/api/v1/_admin/users/{boss}/tokens", {}),
                              ("POST", f"/api/v1/_admin/users/{boss}/roles", {"role": "reader"}),
                              ("DELETE", f"/api/v1/_admin/users/{boss}/roles/heir", None)]:
        response = hr.open(url, method=method, json=body)
        assert response.status_code == 403, (method, url)
        assert "admin rights you do not have (audit, roles, teams)" in response.get_json()["detail"]
    assert _state(loom_engine) == before


def test_a_users_admin_cannot_hand_out_admin_rights_it_lacks(apply_metadata, make_user, client_for, loom_engine):
    apply_metadata(MEMO, *ROLES)
    hr_id = make_user("hr", roles=["people_admin"])
    plain = make_user("plain", roles=["reader"])
    hr = _signed_in(client_for("hr"))
    before = _state(loom_engine)
    refused = [
        hr.post("/api/v1/_admin/users", json={"username": "ally", "password": "long enough", "roles": ["power"]}),
        hr.post("/api/v1/_admin/users", json={"username": "ally", "password": "long enough", "roles": ["heir"]}),
        hr.post("/api/v1/_admin/users", json={"username": "ally", "is_superuser": True}),
        hr.post(f"/api/v1/_admin/users/{plain}/roles", json={"role": "role_admin"}),
        hr.post(f"/api/v1/_admin/users/{hr_id}/roles", json={"role": "power"}),  # to itself
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "admin rights you do not have (roles)" in refused[3].get_json()["detail"]
    assert _state(loom_engine) == before
    # what the right is for still works: roles carrying no more than the admin's own rights
    assert hr.post(f"/api/v1/_admin/users/{plain}/roles", json={"role": "people_admin"}).status_code == 204
    assert hr.patch(f"/api/v1/_admin/users/{plain}", json={"password": "a fresh password"}).status_code == 204
    assert hr.post(f"/api/v1/_admin/users/{plain}/tokens", json={}).status_code == 201
    assert hr.post("/api/v1/_admin/users", json={"username": "ally", "roles": ["reader"]}).status_code == 201
    assert hr.post("/api/v1/_admin/users", json={"username": "x", "roles": "reader"}).status_code == 400


def test_a_roles_admin_cannot_write_a_role_carrying_admin_rights_it_lacks(apply_metadata, make_user, client_for,
                                                                         loom_app):
    apply_metadata(MEMO, *ROLES)
    make_user("ra", roles=["role_admin"])
    ra = _signed_in(client_for("ra"))
    live = loom_app.extensions["loom"].metadata
    version = live.live().number
    refused = [
        ra.put("/api/v1/_admin/roles/sneaky", json={"admin": ["users"]}),
        ra.put("/api/v1/_admin/roles/sneaky", json={"inherits": ["people_admin"]}),
        ra.put("/api/v1/_admin/roles/role_admin", json={"admin": ["roles", "audit"]}),  # its own role
        ra.put("/api/v1/_admin/roles/people_admin", json={"admin": []}),  # a role above it
        ra.delete("/api/v1/_admin/roles/people_admin"),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert "admin rights you do not have (users)" in refused[0].get_json()["detail"]
    assert live.live().number == version
    made = ra.put("/api/v1/_admin/roles/memo_reader", json={"admin": ["roles"],
                                                             "permissions": {"memo": {"actions": ["read"]}}})
    assert made.status_code == 200


def test_a_superuser_still_manages_everyone(apply_metadata, make_user, client_for):
    apply_metadata(MEMO, *ROLES)
    other_root = make_user("other_root", superuser=True)
    make_user("root", superuser=True)
    root = client_for("root")
    assert root.patch(f"/api/v1/_admin/users/{other_root}", json={"password": "a new password"}).status_code == 204
    assert root.post(f"/api/v1/_admin/users/{other_root}/tokens", json={}).status_code == 201
    assert root.post("/api/v1/_admin/users", json={"username": "p", "roles": ["power"]}).status_code == 201
    assert root.put("/api/v1/_admin/roles/people_admin", json={"admin": ["users", "teams"]}).status_code == 200
