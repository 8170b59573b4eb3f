"""Managing users, teams, roles and assignments through the admin API, itself
permission-checked; role changes reach other processes without a restart."""

from __future__ import annotations

import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from loom.app import create_app
from loom.cli import main

ROLES = [
    {"kind": "role", "name": "people_admin", "admin": ["users", "teams"]},
    {"kind": "role", "name": "reader", "permissions": {"note": {"actions": ["read"]}}},
]
NOTE = {"kind": "entity", "name": "note", "fields": [{"name": "body", "type": "string"}]}


def test_admin_endpoints_need_the_matching_admin_right(apply_metadata, make_user, client_for, loom_engine):
    apply_metadata(NOTE, *ROLES)
    make_user("hr", roles=["people_admin"])
    make_user("plain", roles=["reader"])
    hr, plain = client_for("hr"), client_for("plain")

    assert plain.get("/api/v1/_admin/users").status_code == 403
    assert plain.post("/api/v1/_admin/teams", json={"name": "x"}).status_code == 403
    assert hr.get("/api/v1/_admin/roles").status_code == 403  # no "roles" right

    assert hr.post("/api/v1/_admin/teams", json={"name": "east"}).status_code == 201
    assert hr.post("/api/v1/_admin/teams", json={"name": "shanghai", "parent": "east"}).status_code == 201
    made = hr.post("/api/v1/_admin/users", json={"username": "wu", "password": "long enough", "team": "shanghai",
                                                 "roles": ["reader"]})
    assert made.status_code == 201
    wu = made.get_json()["data"]["id"]
    assert hr.post("/api/v1/_admin/users", json={"username": "wu"}).status_code == 409
    assert hr.post("/api/v1/_admin/users", json={"username": "boss", "is_superuser": True}).status_code == 403
    assert hr.post(f"/api/v1/_admin/users/{wu}/roles", json={"role": "ghost"}).status_code == 404
    assert hr.post(f"/api/v1/_admin/users/{wu}/roles", json={"role": "people_admin"}).status_code == 204
    users = {u["username"]: u for u in hr.get("/api/v1/_admin/users").get_json()["data"]}
    assert users["wu"]["roles"] == ["people_admin", "reader"] and users["wu"]["team"] == "shanghai"
    assert hr.delete(f"/api/v1/_admin/users/{wu}/roles/people_admin").status_code == 204
    assert hr.patch(f"/api/v1/_admin/users/{wu}", json={"is_active": False}).status_code == 204
    assert hr.patch("/api/v1/_admin/teams/east", json={"parent": "shanghai"}).status_code == 400

    with loom_engine.connect() as conn:
        logged = [r[0] for r in conn.execute(sa.text("SELECT topic FROM loom_outbox ORDER BY id"))]
    assert {"team.created", "user.created", "role.assigned", "role.unassigned", "user.updated"} <= set(logged)


def test_a_deactivated_users_tokens_stop_working(apply_metadata, make_user, client_for, loom_client):
    apply_metadata(NOTE, *ROLES)
    user_id = make_user("temp", roles=["reader"])
    client = client_for("temp")
    assert client.get("/api/v1/note").status_code == 200
    assert loom_client.patch(f"/api/v1/_admin/users/{user_id}", json={"is_active": False}).status_code == 204
    assert client.get("/api/v1/note").status_code == 401


def test_a_role_change_reaches_another_process_on_its_next_request(apply_metadata, make_user, client_for,
                                                                  loom_client, loom_app, tmp_path):
    apply_metadata(NOTE, *ROLES)
    make_user("reader1", roles=["reader"])
    token = loom_app.extensions["loom"].identity.create_token("reader1").token
    other = create_app({"ENGINE": loom_app.extensions["loom"].engine, "INSTANCE_PATH": str(tmp_path / "p2"),
                        "SECRET_KEY": "x", "DISCOVER_PLUGINS": False}).test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert other.post("/api/v1/note", json={"body": "hi"}).status_code == 403

    published = loom_client.put("/api/v1/_admin/roles/reader", json={
        "permissions": {"note": {"actions": ["read", "create"]}}})
    assert published.status_code == 200
    assert published.get_json()["data"]["summary"] == ["~ role reader"]
    assert other.post("/api/v1/note", json={"body": "hi"}).status_code == 201

    bad = loom_client.put("/api/v1/_admin/roles/reader", json={"permissions": {"ghost": {"actions": ["read"]}}})
    assert bad.status_code == 422 and "no entity named 'ghost'" in bad.get_json()["detail"]
    assert other.post("/api/v1/note", json={"body": "still"}).status_code == 201


def test_users_create_their_own_tokens_but_not_others(apply_metadata, make_user, client_for):
    apply_metadata(NOTE, *ROLES)
    me = make_user("me", roles=["reader"])
    other = make_user("other", roles=["reader"])
    client = client_for("me")
    assert client.post(f"/api/v1/_admin/users/{me}/tokens", json={"read_only": True}).status_code == 201
    assert client.post(f"/api/v1/_admin/users/{other}/tokens", json={}).status_code == 403


def test_cli_user_token_role_and_perm_explain(loom_database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.yaml").write_text(yaml.safe_dump_all([
        {"kind": "entity", "name": "deal", "fields": [{"name": "title", "type": "string"},
                                                      {"name": "amount", "type": "money"}]},
        {"kind": "role", "name": "seller", "permissions": {"deal": {
            "actions": ["read", "update"], "scope": "own", "fields": {"amount": "read"}}}}]))

    def run(*args, code=0, stdin=None):
        result = runner.invoke(main, list(args), input=stdin, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    run("init")
    run("metadata", "apply", str(app))
    assert "seller: " in run("role", "list") and "deal: read, update; scope own" in run("role", "list")
    assert "there is no role named ghost" in run("user", "create", "x", "--role", "ghost", code=1)
    run("team", "create", "east")
    assert run("user", "create", "ann", "--role", "seller", "--team", "east", stdin="a fine password\n").strip() \
        == "created user ann"
    token = run("token", "create", "ann", "--read-only", "--expires", "2").strip()
    assert token.startswith("loom_") and "\n" not in token

    explained = run("perm", "explain", "ann", "deal", "update")
    assert "ALLOWED: update on deal" in explained and "by role seller: scope own" in explained
    assert "fields it may read but not update: amount" in explained
    refused = run("perm", "explain", "ann", "deal", "delete", code=1)
    assert "REFUSED: no role of ann grants delete on deal" in refused and "seller grants only: read, update" in refused


def test_wrong_json_types_in_the_admin_api_are_a_400_naming_the_member(apply_metadata, make_user, loom_client,
                                                                       loom_engine):
    apply_metadata(NOTE, *ROLES)
    user = make_user("x", roles=["reader"])
    with loom_engine.connect() as conn:
        users_before = conn.execute(sa.text("SELECT count(*) FROM loom_users")).scalar()
    for method, url, body, field in [
        ("post", "/api/v1/_admin/users", {"username": "y", "password": 12345678}, "password"),
        ("post", "/api/v1/_admin/users", {"username": ["y"]}, "username"),
        ("post", "/api/v1/_admin/users", {"username": "y", "is_superuser": "no"}, "is_superuser"),
        ("post", "/api/v1/_admin/users", {"username": "y", "roles": "reader"}, "roles"),
        ("patch", f"/api/v1/_admin/users/{user}", {"is_active": "false"}, "is_active"),
        ("patch", f"/api/v1/_admin/users/{user}", {"display_name": 5}, "display_name"),
        ("post", f"/api/v1/_admin/users/{user}/roles", {"role": 1}, "role"),
        ("post", f"/api/v1/_admin/users/{user}/tokens", {"expires_days": "30"}, "expires_days"),
        ("post", f"/api/v1/_admin/users/{user}/tokens", {"expires_days": True}, "expires_days"),
        ("post", "/api/v1/_admin/teams", {"name": "t", "parent": 3}, "parent"),
        ("patch", "/api/v1/_admin/teams/t", {"parent": []}, "parent"),
    ]:
        reply = getattr(loom_client, method)(url, json=body)
        assert reply.status_code == 400, (method, url, body)
        assert reply.get_json()["errors"][0]["field"] == field
    too_long = loom_client.post(f"/api/v1/_admin/users/{user}/tokens", json={"expires_days": 10**20})
    assert too_long.status_code == 422
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loom_users")).scalar() == users_before


def test_two_admins_editing_roles_on_one_version_never_overwrite_each_other(apply_metadata, make_user, client_for,
                                                                            loom_client):
    apply_metadata(NOTE, *ROLES)
    make_user("ann", superuser=True)
    make_user("bo", superuser=True)
    ann, bo = client_for("ann"), client_for("bo")
    version = ann.get("/api/v1/_admin/roles").get_json()["version"]
    assert bo.get("/api/v1/_admin/roles").get_json()["version"] == version

    first = ann.put(f"/api/v1/_admin/roles/reader?base_version={version}",
                    json={"permissions": {"note": {"actions": ["read", "create"]}}})
    assert first.status_code == 200, first.get_json()
    second = bo.delete(f"/api/v1/_admin/roles/reader?base_version={version}")
    assert second.status_code == 409
    problem = second.get_json()
    assert problem["errors"][0]["code"] == "metadata_changed"
    assert problem["errors"][0]["params"] == {"kind": "role", "name": "reader", "change": "changed"}
    # ann's change stands; bo, on the new version, may make theirs
    roles = bo.get("/api/v1/_admin/roles").get_json()
    assert roles["version"] == first.get_json()["data"]["version"]
    assert {"note": {"actions": ["read", "create"]}} == next(
        r["permissions"] for r in roles["data"] if r["name"] == "reader")
    assert bo.delete(f"/api/v1/_admin/roles/reader?base_version={roles['version']}").status_code == 200
    assert loom_client.put("/api/v1/_admin/roles/reader?base_version=x", json={}).status_code == 400
