"""Plugins change, refuse and observe record operations through the documented hooks."""

from __future__ import annotations

import json
import time

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
        if entity.name != "customer":
            return
        if values.get("name") == "forbidden":
            raise loom.ValidationError("refused by plugin", errors=[{"field": "name", "message": "not allowed"}])
        values["level"] = "B" if values.get("level") == "C" else values.get("level")

    @loom.hookimpl
    def after_record_create(self, record):
        if record.get("name") == "explode":
            raise LoomError("plugin failed after insert")

    @loom.hookimpl
    def after_record_commit(self, entity, action, record):
        if entity.name == "customer":
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




class FailingCommitHook:
    """A plugin whose after_record_commit always fails, registered before a second one
    that records what it heard."""

    @loom.hookimpl
    def after_record_commit(self, record):
        raise RuntimeError(f"mail server down while announcing {record['id']}")


def test_a_failing_commit_hook_does_not_turn_a_committed_change_into_an_error(customers, loom_app, loom_client,
                                                                              loom_engine, recorder, caplog):
    loom_app.extensions["loom"].plugins.register(FailingCommitHook())
    with caplog.at_level("ERROR"):
        made = loom_client.post("/api/v1/customer", json={"name": "first"})
        assert made.status_code == 201
        url = f"/api/v1/customer/{made.get_json()['data']['id']}"
        assert loom_client.post("/api/v1/customer/_bulk", json=[{"name": "second"}]).status_code == 201
        assert loom_client.patch(url, json={"name": "renamed"}).status_code == 200
        assert loom_client.delete(url).status_code == 204
    # the other plugin still heard of every commit
    assert recorder.committed == [("customer", "created", "first"), ("customer", "created", "second"),
                                  ("customer", "updated", "renamed"), ("customer", "deleted", "renamed")]
    assert sum("mail server down" in r.exc_text for r in caplog.records if r.exc_text) == 4
    with loom_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT name FROM e_customer").scalars().all() == ["second"]
        failures = conn.exec_driver_sql("SELECT detail FROM loom_audit WHERE action = 'record.commit_hook' "
                                        "AND outcome = 'error' ORDER BY seq").scalars().all()
    details = [json.loads(d) if isinstance(d, str) else d for d in failures]
    assert [d["action"] for d in details] == ["created", "created", "updated", "deleted"]
    assert all(d["error"] == "RuntimeError" for d in details)


class NestedWriter:
    """A plugin that, while a customer is written, writes a note through the record service."""

    def __init__(self):
        self.committed = []

    def _note(self, principal, text):
        from loom.records.door import record_context
        from loom.records.service import RecordService

        return RecordService(record_context(principal), "note").create({"text": text})

    @loom.hookimpl
    def after_record_create(self, entity, record, principal):
        if entity.name == "customer":
            self._note(principal, f"created {record['name']}")
            if record["name"] == "undo":
                raise loom.ValidationError("refused after the note", errors=[{"field": "name", "message": "no"}])

    @loom.hookimpl
    def before_record_update(self, entity, record, principal):
        if entity.name == "customer":
            self._note(principal, f"updating {record['name']}")

    @loom.hookimpl
    def after_record_commit(self, entity, action, record):
        self.committed.append((entity.name, action))


@pytest.fixture
def nested(apply_metadata, customer_doc, make_entity, loom_app):
    apply_metadata(customer_doc, make_entity("note", [{"name": "text", "type": "string"}]))
    writer = NestedWriter()
    loom_app.extensions["loom"].plugins.register(writer)
    return writer


def test_a_hook_writing_another_record_joins_the_write_instead_of_waiting_for_it(nested, loom_client, loom_engine):
    started = time.monotonic()
    made = loom_client.post("/api/v1/customer", json={"name": "Acme"})
    assert made.status_code == 201, made.get_json()
    assert loom_client.patch(f"/api/v1/customer/{made.get_json()['data']['id']}",
                             json={"name": "Acme 2"}).status_code == 200
    refused = loom_client.post("/api/v1/customer", json={"name": "undo"})
    assert time.monotonic() - started < 1
    assert refused.status_code == 422
    with loom_engine.connect() as conn:
        notes = conn.exec_driver_sql("SELECT text FROM e_note ORDER BY id").scalars().all()
        customers = conn.exec_driver_sql("SELECT name FROM e_customer").scalars().all()
    # the note written for "undo" rolled back with it
    assert notes == ["created Acme", "updating Acme"] and customers == ["Acme 2"]
    # commit hooks of the joined write ran once the outer write committed, never for "undo"
    assert nested.committed == [("note", "created"), ("customer", "created"), ("note", "created"),
                                ("customer", "updated")]
