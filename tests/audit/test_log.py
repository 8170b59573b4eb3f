"""What the audit log records: every operation with its context, in the same transaction
as the operation; refusals on their own; never a secret."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from loom.hookspecs import hookimpl


def entries(engine, **where):
    """Audit rows, oldest first, as dicts with parsed changes and detail."""
    clause = " AND ".join(f"{k} = :{k}" for k in where) or "1 = 1"
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM loom_audit WHERE {clause} ORDER BY seq"), where).mappings().all()
    return [{**r, "changes": json.loads(r["changes"] or "{}"), "detail": json.loads(r["detail"] or "{}")}
            for r in rows]


@pytest.fixture
def ticket_doc(make_entity):
    """An entity no seed app has, with a secret and a child table."""
    return [
        make_entity("visit_line", [{"name": "note", "type": "string"},
                                   {"name": "pin", "type": "string", "secret": True}], child=True),
        make_entity("site_visit", [
            {"name": "title", "type": "string", "required": True},
            {"name": "hours", "type": "decimal", "precision": 6, "scale": 1},
            {"name": "door_code", "type": "string", "secret": True},
            {"name": "lines", "type": "table", "target": "visit_line"},
        ], title_field="title", audit_reads=True),
    ]


@pytest.fixture
def visits(apply_metadata, ticket_doc, loom_client):
    apply_metadata(*ticket_doc)
    return loom_client


def test_create_update_delete_are_logged_with_old_and_new_values(visits, loom_engine):
    created = visits.post("/api/v1/site_visit", json={"title": "Plant A", "hours": "1.5",
                                                      "lines": [{"note": "gate"}]},
                          headers={"User-Agent": "pytest-agent", "X-Request-Id": "req-42"},
                          environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert created.status_code == 201
    record_id = created.json["data"]["id"]
    assert visits.patch(f"/api/v1/site_visit/{record_id}", json={"hours": "2.0"}).status_code == 200
    assert visits.delete(f"/api/v1/site_visit/{record_id}").status_code in (200, 204)

    create, update, delete = entries(loom_engine, entity="site_visit")
    assert create["action"] == "record.create" and create["outcome"] == "ok"
    assert create["actor"] == "admin" and create["actor_id"] is not None
    assert (create["ip"], create["user_agent"], create["request_id"]) == ("10.1.2.3", "pytest-agent", "req-42")
    assert create["record_id"] == record_id
    assert create["changes"]["title"] == [None, "Plant A"]
    assert create["changes"]["lines"][1][0]["note"] == "gate"
    assert update["action"] == "record.update"
    assert update["changes"] == {"hours": ["1.5", "2.0"]}
    assert delete["action"] == "record.delete"
    assert delete["changes"]["title"] == ["Plant A", None] and delete["changes"]["hours"] == ["2.0", None]


def test_secret_values_never_reach_the_log(visits, loom_engine):
    record = visits.post("/api/v1/site_visit", json={"title": "Vault", "door_code": "SECRET-1234",
                                                     "lines": [{"note": "n", "pin": "PIN-9876"}]}).json["data"]
    visits.patch(f"/api/v1/site_visit/{record['id']}", json={"door_code": "SECRET-5678"})
    visits.post("/api/v1/_admin/users", json={"username": "neo", "password": "PASSWORD-abcdef"})
    token = visits.post("/api/v1/_admin/users/1/tokens", json={}).json
    with loom_engine.connect() as conn:
        dump = "\n".join(str(tuple(r)) for r in conn.execute(sa.text("SELECT * FROM loom_audit")))
    for secret in ("SECRET-1234", "SECRET-5678", "PIN-9876", "PASSWORD-abcdef", token.get("token", "x" * 40)):
        assert secret not in dump
    update = entries(loom_engine, action="record.update")[0]
    assert update["changes"] == {"door_code": ["***", "***"]}


def test_a_change_that_rolls_back_leaves_no_entry(apply_metadata, ticket_doc, loom_app, make_user, client_for,
                                                  loom_engine):
    class Refuse:
        @hookimpl
        def after_record_create(self, entity, record, principal, connection):
            if record["title"] == "boom":
                raise RuntimeError("plugin failed after the insert")

    loom_app.extensions["loom"].plugins.register(Refuse())
    apply_metadata(*ticket_doc)
    make_user("admin", superuser=True)
    client = client_for("admin")
    assert client.post("/api/v1/site_visit", json={"title": "boom"}).status_code == 500
    assert client.post("/api/v1/site_visit", json={"hours": "x"}).status_code == 422
    assert entries(loom_engine, entity="site_visit") == []
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM e_site_visit")).scalar() == 0


def test_refusals_are_logged_with_what_was_attempted(apply_metadata, ticket_doc, make_user, client_for, loom_engine):
    reader_role = {"kind": "role", "name": "viewer", "permissions": {"site_visit": {"actions": ["read"]}}}
    apply_metadata(*ticket_doc, reader_role)
    make_user("eve", roles=["viewer"])
    eve = client_for("eve")
    assert eve.post("/api/v1/site_visit", json={"title": "x"}).status_code == 403
    assert eve.get("/api/v1/_audit").status_code == 403
    assert eve.get("/api/v1/_admin/users").status_code == 403
    denied = entries(loom_engine, outcome="denied")
    assert [(e["action"], e["actor"]) for e in denied] == [("record.create", "eve"), ("access", "eve"),
                                                           ("access", "eve")]
    assert "create" in denied[0]["detail"]["reason"]
    assert denied[1]["detail"]["path"] == "/api/v1/_audit"


def test_audited_reads_and_exports_are_logged(visits, loom_engine):
    record_id = visits.post("/api/v1/site_visit", json={"title": "Read me"}).json["data"]["id"]
    visits.get(f"/api/v1/site_visit/{record_id}")
    body = visits.get("/api/v1/site_visit/_export?format=jsonl&filter[title][contains]=Read").get_data(as_text=True)
    assert body.count("\n") == 1
    read = entries(loom_engine, action="record.read")
    assert [(e["record_id"], e["actor"]) for e in read] == [(record_id, "admin")]
    export = entries(loom_engine, action="record.export")[0]
    assert export["rows"] == 1 and export["entity"] == "site_visit"
    assert export["detail"]["query"]["filters"] == [["title", "contains", "Read"]]
    # the history shows values: a read; comments show none of the record's values
    visits.get(f"/api/v1/site_visit/{record_id}/_history")
    visits.post(f"/api/v1/site_visit/{record_id}/_comments", json={"body": "checked"})
    visits.get(f"/api/v1/site_visit/{record_id}/_comments")
    assert len(entries(loom_engine, action="record.read")) == 2
    # one view of the record page (values, history, comments) is one read
    assert visits.get(f"/r/site_visit/{record_id}").status_code == 200
    assert len(entries(loom_engine, action="record.read")) == 3


def test_sign_in_failures_lock_out_tokens_and_user_changes_are_logged(apply_metadata, ticket_doc, loom_app,
                                                                        make_user, anonymous_client, loom_engine):
    apply_metadata(*ticket_doc)
    make_user("admin", superuser=True, password="right-password")
    identity = loom_app.extensions["loom"].identity
    for _ in range(5):
        anonymous_client.post("/api/v1/_auth/login", json={"username": "admin", "password": "wrong"})
    anonymous_client.post("/api/v1/_auth/login", json={"username": "ghost", "password": "wrong"})
    token = identity.create_token("admin", actor="admin")
    anonymous_client.get("/api/v1/site_visit", headers={"Authorization": f"Bearer {token.token}"})
    anonymous_client.get("/api/v1/site_visit", headers={"Authorization": f"Bearer {token.token}"})
    identity.revoke_token(token.id, actor="admin")
    with loom_engine.connect() as conn:
        user_id = identity.user_id(conn, "admin")
    identity.update_user(user_id, {"display_name": "Boss", "password": "another-password"}, actor="root")
    actions = [(e["action"], e["outcome"]) for e in entries(loom_engine) if e["action"].startswith(("auth", "token",
                                                                                                    "user.update"))]
    assert actions == [("auth.sign_in_failed", "denied")] * 5 + [("auth.locked", "denied"),
                                                                  ("auth.sign_in_failed", "denied"),
                                                                  ("token.create", "ok"), ("token.first_use", "ok"),
                                                                  ("token.revoke", "ok"), ("user.update", "ok")]
    update = entries(loom_engine, action="user.update")[0]
    assert update["changes"]["display_name"] == ["admin", "Boss"]
    assert update["changes"]["password"] == ["***", "***"]


def test_publishes_and_rollbacks_are_logged_with_their_summary(apply_metadata, ticket_doc, make_entity, loom_app,
                                                               loom_engine):
    apply_metadata(*ticket_doc, author="alice")
    apply_metadata(*ticket_doc, make_entity("extra", [{"name": "x", "type": "string"}]), author="alice")
    loom_app.extensions["loom"].metadata.rollback(1, author="bob")
    published = entries(loom_engine, entity=None) if False else [e for e in entries(loom_engine)
                                                                  if e["action"].startswith("metadata")]
    assert [(e["action"], e["actor"], e["detail"]["version"]) for e in published] == [
        ("metadata.publish", "alice", 1), ("metadata.publish", "alice", 2), ("metadata.rollback", "bob", 3)]
    assert any(line.startswith("+ entity extra") for line in published[1]["detail"]["summary"])


@pytest.mark.parametrize("statement", ["UPDATE loom_audit SET actor = 'mallory'", "DELETE FROM loom_audit"])
def test_the_table_refuses_updates_and_deletes(visits, loom_engine, statement):
    visits.post("/api/v1/site_visit", json={"title": "kept"})
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), loom_engine.begin() as conn:
        conn.execute(sa.text(statement))
    assert len(entries(loom_engine, entity="site_visit")) == 1


def test_the_client_address_behind_a_trusted_proxy_is_recorded_and_a_forged_one_is_not(
        apply_metadata, ticket_doc, loom_app, make_user, loom_engine, tmp_path):
    from loom.app import create_app

    apply_metadata(*ticket_doc)
    make_user("admin", superuser=True)
    token = loom_app.extensions["loom"].identity.create_token("admin").token
    base = {"ENGINE": loom_engine, "SECRET_KEY": "x", "DISCOVER_PLUGINS": False}
    direct = create_app({**base, "INSTANCE_PATH": str(tmp_path / "direct")}).test_client()
    proxied = create_app({**base, "INSTANCE_PATH": str(tmp_path / "proxied"), "PROXY_HOPS": 1}).test_client()
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
    for client in (direct, proxied):
        reply = client.post("/api/v1/site_visit", json={"title": "t"}, headers=headers,
                            environ_base={"REMOTE_ADDR": "10.0.0.2"})
        assert reply.status_code == 201
    ips = [e["ip"] for e in entries(loom_engine, action="record.create")]
    # without proxies the header is the client's word and is ignored; behind one proxy only
    # the address that proxy appended counts, not what the client put before it
    assert ips == ["10.0.0.2", "198.51.100.7"]
