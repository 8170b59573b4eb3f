"""The record lifecycle hooks, each as the plugin guide describes it: what it receives,
what it may change or refuse, and that its writes share the change's transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import loom


class Lifecycle:
    """Stamps, refuses and records through every record hook."""

    def __init__(self):
        self.calls = []

    @loom.hookimpl
    def before_record_create(self, entity, values, principal, connection):
        self.calls.append(("before_create", entity.name, dict(values), principal.name))
        if values.get("name") == "refuse me":
            raise loom.ValidationError("refused", errors=[{"field": "name", "message": "not here"}])
        values["name"] = values["name"].strip().title()

    @loom.hookimpl
    def after_record_create(self, entity, record, principal, connection):
        self.calls.append(("after_create", record["name"]))
        connection.execute(sa.text("INSERT INTO hook_log (note) VALUES (:n)"), {"n": f"created {record['id']}"})

    @loom.hookimpl
    def before_record_update(self, entity, record, changes, principal, connection):
        self.calls.append(("before_update", record["name"], dict(changes)))
        if "qty" in changes and changes["qty"] < 0:
            raise loom.Conflict("quantities do not go below zero")
        if "name" in changes:
            changes["name"] = changes["name"].upper()

    @loom.hookimpl
    def after_record_update(self, entity, record, changes, principal, connection):
        self.calls.append(("after_update", record["name"], changes))

    @loom.hookimpl
    def before_record_delete(self, entity, record, principal, connection):
        self.calls.append(("before_delete", record["name"]))
        if record["name"] == "KEEP":
            raise loom.Conflict("this one stays")

    @loom.hookimpl
    def after_record_delete(self, entity, record, principal, connection):
        self.calls.append(("after_delete", record["name"]))
        connection.execute(sa.text("INSERT INTO hook_log (note) VALUES (:n)"), {"n": f"deleted {record['id']}"})

    @loom.hookimpl
    def after_record_commit(self, entity, action, record, principal):
        self.calls.append(("commit", action, record["name"]))
        if record["name"] == "Fragile":
            raise RuntimeError("notification failed")


@pytest.fixture
def lifecycle():
    return Lifecycle()


@pytest.fixture
def loom_plugins(lifecycle):
    return [lifecycle]


@pytest.fixture
def things(apply_metadata, make_entity, loom_engine):
    apply_metadata(make_entity("thing", [{"name": "name", "type": "string"}, {"name": "qty", "type": "integer"}]))
    with loom_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE hook_log (note VARCHAR(100))"))


def log_notes(engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(sa.text("SELECT note FROM hook_log"))]


def create(client, **values):
    return client.post("/api/v1/thing", json=values)


def test_before_record_create_changes_values_or_refuses(things, loom_client, lifecycle):
    record = create(loom_client, name="  acme ").get_json()["data"]
    assert record["name"] == "Acme"
    assert lifecycle.calls[0] == ("before_create", "thing", {"name": "  acme "}, "admin")
    refused = create(loom_client, name="refuse me")
    assert refused.status_code == 422
    assert [(e["field"], e["message"]) for e in refused.get_json()["errors"]] == [("name", "not here")]


def test_after_record_create_writes_with_the_change_or_not_at_all(things, loom_client, loom_engine, lifecycle):
    record = create(loom_client, name="widget").get_json()["data"]
    assert ("after_create", "Widget") in lifecycle.calls
    assert log_notes(loom_engine) == [f"created {record['id']}"]
    assert create(loom_client, name="refuse me").status_code == 422
    assert log_notes(loom_engine) == [f"created {record['id']}"]


def test_before_record_update_changes_or_refuses_the_change(things, loom_client, lifecycle):
    record = create(loom_client, name="widget", qty=1).get_json()["data"]
    updated = loom_client.patch(f"/api/v1/thing/{record['id']}", json={"name": "gadget"}).get_json()["data"]
    assert updated["name"] == "GADGET"
    assert ("before_update", "Widget", {"name": "gadget"}) in lifecycle.calls
    refused = loom_client.patch(f"/api/v1/thing/{record['id']}", json={"qty": -5})
    assert refused.status_code == 409
    assert loom_client.get(f"/api/v1/thing/{record['id']}").get_json()["data"]["qty"] == 1


def test_after_record_update_sees_old_and_new(things, loom_client, lifecycle):
    record = create(loom_client, name="widget", qty=1).get_json()["data"]
    loom_client.patch(f"/api/v1/thing/{record['id']}", json={"qty": 3})
    assert ("after_update", "Widget", {"qty": [1, 3]}) in lifecycle.calls


def test_before_record_delete_keeps_a_record(things, loom_client, lifecycle):
    record = create(loom_client, name="keep").get_json()["data"]
    assert record["name"] == "Keep"
    loom_client.patch(f"/api/v1/thing/{record['id']}", json={"name": "keep"})  # stored as KEEP
    assert loom_client.delete(f"/api/v1/thing/{record['id']}").status_code == 409
    assert loom_client.get(f"/api/v1/thing/{record['id']}").status_code == 200


def test_after_record_delete_writes_with_the_delete(things, loom_client, loom_engine, lifecycle):
    record = create(loom_client, name="gone").get_json()["data"]
    assert loom_client.delete(f"/api/v1/thing/{record['id']}").status_code in (200, 204)
    assert ("after_delete", "Gone") in lifecycle.calls
    assert log_notes(loom_engine)[-1] == f"deleted {record['id']}"


def test_after_record_commit_runs_after_commit_and_its_failure_is_no_500(things, loom_client, lifecycle):
    assert create(loom_client, name="refuse me").status_code == 422
    assert not [c for c in lifecycle.calls if c[0] == "commit"]  # nothing committed, nothing told
    response = create(loom_client, name="fragile")
    assert response.status_code == 201
    assert ("commit", "created", "Fragile") in lifecycle.calls
