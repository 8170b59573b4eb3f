"""Plugins change, refuse and observe record operations through the documented hooks."""

from __future__ import annotations

import pytest

import loom
from loom.errors import LoomError


@pytest.fixture
def customers(apply_metadata, customer_doc):
    apply_metadata(customer_doc)


def create(client, entity, body):
    response = client.post(f"/api/v1/{entity}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


class Recorder:
    """A plugin that stamps, refuses and records, through the documented hooks."""

    def __init__(self):
        self.committed = []

    @loom.hookimpl
    def before_record_create(self, entity, values):
        if values.get("name") == "forbidden":
            raise loom.ValidationError("refused by plugin", errors=[{"field": "name", "message": "not allowed"}])
        values["level"] = "B" if values.get("level") == "C" else values.get("level")

    @loom.hookimpl
    def after_record_create(self, record):
        if record["name"] == "explode":
            raise LoomError("plugin failed after insert")

    @loom.hookimpl
    def after_record_commit(self, entity, action, record):
        self.committed.append((entity.name, action, record["name"]))


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def loom_plugins(recorder):
    return [recorder]


def test_plugin_hooks_can_change_refuse_and_see_commits(customers, loom_client, loom_engine, recorder):
    made = create(loom_client, "customer", {"name": "ok"})
    assert made["level"] == "B"
    refused = loom_client.post("/api/v1/customer", json={"name": "forbidden"})
    assert refused.status_code == 422 and refused.get_json()["errors"] == [{"field": "name", "message": "not allowed"}]
    failed = loom_client.post("/api/v1/customer", json={"name": "explode"})
    assert failed.status_code == 500
    assert "Traceback" not in failed.get_data(as_text=True)
    assert recorder.committed == [("customer", "created", "ok")]
    with loom_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM e_customer").scalar() == 1
        assert conn.exec_driver_sql("SELECT count(*) FROM loom_outbox WHERE entity='customer'").scalar() == 1


