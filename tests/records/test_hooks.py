"""Plugins change, refuse and observe record operations through the documented hooks."""

from __future__ import annotations

import copy
import json
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa

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
    assert refused.status_code == 422
    assert [(e["field"], e["message"]) for e in refused.get_json()["errors"]] == [("name", "not allowed")]
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


# -- every record hook, its arguments, refusals and changes ------------------------------

WIDGET = {"kind": "entity", "name": "widget", "title_field": "name", "fields": [
    {"name": "name", "type": "string", "required": True},
    {"name": "qty", "type": "integer"},
    {"name": "price", "type": "decimal", "precision": 10, "scale": 2},
    {"name": "status", "type": "select", "options": [{"value": "new"}, {"value": "stamped"}, {"value": "edited"}]},
]}


def _stored_name(connection, record_id):
    """The widget's name as ``connection`` (the change's own transaction) sees it."""
    return connection.execute(sa.text("SELECT name FROM e_widget WHERE id = :id"), {"id": record_id}).scalar()


class Spy:
    """Records every record hook with what it was given (copied, as the hook saw it)."""

    def __init__(self):
        self.calls = []

    def _saw(self, hook, entity, principal, **seen):
        if entity.name == "widget":
            self.calls.append((hook, {"entity": entity.name, "principal": principal.name, **copy.deepcopy(seen)}))

    @loom.hookimpl
    def before_record_create(self, entity, values, principal, connection):
        self._saw("before_record_create", entity, principal, values=values, open=connection.in_transaction())

    @loom.hookimpl
    def after_record_create(self, entity, record, principal, connection):
        self._saw("after_record_create", entity, principal, record=record,
                  stored=_stored_name(connection, record["id"]) if entity.name == "widget" else None)

    @loom.hookimpl
    def before_record_update(self, entity, record, changes, principal, connection):
        self._saw("before_record_update", entity, principal, record=record, changes=changes,
                  open=connection.in_transaction())

    @loom.hookimpl
    def after_record_update(self, entity, record, changes, principal, connection):
        self._saw("after_record_update", entity, principal, record=record, changes=changes,
                  open=connection.in_transaction())

    @loom.hookimpl
    def before_record_delete(self, entity, record, principal, connection):
        self._saw("before_record_delete", entity, principal, record=record,
                  stored=_stored_name(connection, record["id"]) if entity.name == "widget" else None)

    @loom.hookimpl
    def after_record_delete(self, entity, record, principal, connection):
        self._saw("after_record_delete", entity, principal, record=record,
                  stored=_stored_name(connection, record["id"]) if entity.name == "widget" else None)

    @loom.hookimpl
    def after_record_commit(self, entity, action, record, principal):
        self._saw("after_record_commit", entity, principal, action=action, id=record["id"], name=record["name"])

    def hooks(self):
        return [hook for hook, _ in self.calls]


@pytest.fixture
def widgets(apply_metadata, make_user, client_for, loom_app):
    """The widget entity, a spy on every record hook, and a client for "writer" (not a superuser)."""
    apply_metadata(WIDGET, {"kind": "role", "name": "maker",
                            "permissions": {"widget": {"actions": ["read", "create", "update", "delete"]}}})
    make_user("writer", roles=["maker"])
    spy = Spy()
    loom_app.extensions["loom"].plugins.register(spy)
    return {"client": client_for("writer"), "spy": spy, "app": loom_app}


def widget_rows(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT name, qty, status, version FROM e_widget ORDER BY id")).all()


def widget_events(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM loom_outbox WHERE entity = 'widget'")).scalar()


def test_create_calls_its_hooks_with_typed_values_the_record_and_the_open_transaction(widgets):
    client, spy = widgets["client"], widgets["spy"]
    made = create(client, "widget", {"name": "bolt", "qty": "2", "price": 1.5})
    assert spy.hooks() == ["before_record_create", "after_record_create", "after_record_commit"]
    before, after, commit = (seen for _, seen in spy.calls)
    assert before["entity"] == after["entity"] == commit["entity"] == "widget"
    assert before["principal"] == after["principal"] == commit["principal"] == "writer"
    # values are typed (text "2" became 2, 1.5 the exact decimal) and not yet stored
    assert before["values"]["name"] == "bolt" and before["values"]["qty"] == 2
    assert before["values"]["price"] == Decimal("1.50") and before["open"] is True
    # the record in its JSON form, already visible through the hook's connection
    assert after["record"]["id"] == made["id"] and after["record"]["price"] == "1.50"
    assert after["stored"] == "bolt"
    assert (commit["action"], commit["id"]) == ("created", made["id"])


def test_update_calls_its_hooks_with_the_record_before_and_after_and_the_changes(widgets):
    client, spy = widgets["client"], widgets["spy"]
    made = create(client, "widget", {"name": "bolt", "qty": 2})
    spy.calls.clear()
    assert client.patch(f"/api/v1/widget/{made['id']}", json={"qty": 3, "name": "bolt"}).status_code == 200
    assert spy.hooks() == ["before_record_update", "after_record_update", "after_record_commit"]
    before, after, commit = (seen for _, seen in spy.calls)
    assert before["principal"] == after["principal"] == commit["principal"] == "writer"
    assert before["record"]["qty"] == 2 and before["record"]["version"] == 1
    assert before["changes"] == {"qty": 3, "name": "bolt"}  # as sent, typed; unchanged fields drop out later
    assert after["record"]["qty"] == 3 and after["record"]["version"] == 2
    assert after["changes"] == {"qty": [2, 3]}
    assert before["open"] is after["open"] is True
    assert (commit["action"], commit["id"]) == ("updated", made["id"])


def test_delete_calls_its_hooks_with_the_records_last_values(widgets):
    client, spy = widgets["client"], widgets["spy"]
    made = create(client, "widget", {"name": "bolt", "qty": 2})
    spy.calls.clear()
    assert client.delete(f"/api/v1/widget/{made['id']}").status_code == 204
    assert spy.hooks() == ["before_record_delete", "after_record_delete", "after_record_commit"]
    before, after, commit = (seen for _, seen in spy.calls)
    assert before["principal"] == after["principal"] == commit["principal"] == "writer"
    assert before["record"]["id"] == after["record"]["id"] == made["id"]
    assert after["record"]["qty"] == 2
    # before: still there; after: gone, both seen inside the delete's transaction
    assert before["stored"] == "bolt" and after["stored"] is None
    assert (commit["action"], commit["id"], commit["name"]) == ("deleted", made["id"], "bolt")


def test_bulk_create_calls_the_create_hooks_once_per_row(widgets):
    client, spy = widgets["client"], widgets["spy"]
    response = client.post("/api/v1/widget/_bulk", json=[{"name": "nut", "qty": 1}, {"name": "washer", "qty": 2}])
    assert response.status_code == 201
    ids = [row["id"] for row in response.get_json()["data"]]
    assert spy.hooks() == ["before_record_create"] * 2 + ["after_record_create"] * 2 + ["after_record_commit"] * 2
    befores, afters, commits = spy.calls[:2], spy.calls[2:4], spy.calls[4:]
    assert [seen["values"]["name"] for _, seen in befores] == ["nut", "washer"]
    assert [seen["record"]["id"] for _, seen in afters] == ids
    assert [seen["stored"] for _, seen in afters] == ["nut", "washer"]
    assert [(seen["action"], seen["id"]) for _, seen in commits] == [("created", i) for i in ids]
    assert {seen["principal"] for _, seen in spy.calls} == {"writer"}


class Refuser:
    """Refuses, from each before_* hook, a widget named "refused" (or, to delete, one named "keep")."""

    @staticmethod
    def _refuse(what):
        raise loom.ValidationError(f"the plugin refuses to {what} it",
                                   errors=[{"field": "name", "message": f"may not {what}"}])

    @loom.hookimpl
    def before_record_create(self, entity, values):
        if entity.name == "widget" and values.get("name") == "refused":
            self._refuse("create")

    @loom.hookimpl
    def before_record_update(self, entity, changes):
        if entity.name == "widget" and changes.get("name") == "refused":
            self._refuse("update")

    @loom.hookimpl
    def before_record_delete(self, entity, record):
        if entity.name == "widget" and record["name"] == "keep":
            self._refuse("delete")


def assert_refused_by_plugin(response, what):
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert problem["detail"] == f"the plugin refuses to {what} it"
    assert [(e["field"], e["message"]) for e in problem["errors"]] == [("name", f"may not {what}")]


@pytest.mark.parametrize("request_", ["create", "bulk create", "update", "delete"])
def test_a_before_hook_raising_validation_error_refuses_with_422_and_writes_nothing(widgets, loom_engine, request_):
    client, spy, app = widgets["client"], widgets["spy"], widgets["app"]
    kept = create(client, "widget", {"name": "keep", "qty": 1})
    app.extensions["loom"].plugins.register(Refuser())
    rows, events = widget_rows(loom_engine), widget_events(loom_engine)
    spy.calls.clear()
    if request_ == "create":
        assert_refused_by_plugin(client.post("/api/v1/widget", json={"name": "refused"}), "create")
    elif request_ == "bulk create":
        # the first row would be fine: all rows or none
        assert_refused_by_plugin(client.post("/api/v1/widget/_bulk", json=[{"name": "fine"}, {"name": "refused"}]),
                                 "create")
    elif request_ == "update":
        assert_refused_by_plugin(client.patch(f"/api/v1/widget/{kept['id']}", json={"name": "refused", "qty": 5}),
                                 "update")
    else:
        assert_refused_by_plugin(client.delete(f"/api/v1/widget/{kept['id']}"), "delete")
    assert widget_rows(loom_engine) == rows == [("keep", 1, None, 1)]
    assert widget_events(loom_engine) == events
    # no after_* hook heard of a change that did not happen
    assert [hook for hook in spy.hooks() if not hook.startswith("before_")] == []


class Stamper:
    """Sets the status of every widget created, and of every widget changed."""

    @loom.hookimpl
    def before_record_create(self, entity, values):
        if entity.name == "widget":
            values["status"] = "stamped"

    @loom.hookimpl
    def before_record_update(self, entity, changes):
        if entity.name == "widget":
            changes["status"] = "edited"


def test_what_a_before_hook_changes_is_what_is_stored(widgets, loom_engine):
    client, spy, app = widgets["client"], widgets["spy"], widgets["app"]
    app.extensions["loom"].plugins.register(Stamper())
    made = create(client, "widget", {"name": "bolt", "status": "new"})
    assert made["status"] == "stamped"
    assert client.post("/api/v1/widget/_bulk", json=[{"name": "nut"}, {"name": "washer"}]).status_code == 201
    spy.calls.clear()
    changed = client.patch(f"/api/v1/widget/{made['id']}", json={"qty": 4})
    assert changed.status_code == 200 and changed.get_json()["data"]["status"] == "edited"
    assert widget_rows(loom_engine) == [("bolt", 4, "edited", 2), ("nut", None, "stamped", 1),
                                        ("washer", None, "stamped", 1)]
    # the after hook sees the change the before hook made as part of the change
    after = next(seen for hook, seen in spy.calls if hook == "after_record_update")
    assert after["changes"] == {"qty": [None, 4], "status": ["stamped", "edited"]}
