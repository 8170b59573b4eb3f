"""The public door: ``loom.record_service(entity, principal, connection)`` gives plugins
and other work the record service, inside their own transaction when they pass one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import loom
from loom.errors import LoomError
from loom.permissions import Forbidden


@pytest.fixture
def ledger(apply_metadata, make_entity, make_user):
    """Two entities nobody here wrote the code for: an invoice, and the notes a plugin
    keeps beside each one; a clerk may read invoices and nothing else."""
    apply_metadata(
        make_entity("invoice", [{"name": "number", "type": "string", "required": True},
                                {"name": "amount", "type": "decimal", "precision": 12, "scale": 2}],
                    title_field="number"),
        make_entity("invoice_note", [{"name": "text", "type": "string"}], title_field="text"),
        {"kind": "role", "name": "clerk", "permissions": {"invoice": {"actions": ["read"]}}},
    )
    make_user("clerk", roles=["clerk"])


def count(engine, table: str, where: str = "1=1") -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE {where}").scalar()


def clerk(app):
    return app.extensions["loom"].identity.principal_for("clerk")


SYSTEM = loom.Principal.system("door-test")


def test_the_door_needs_an_app_and_says_who_acts(ledger, loom_app):
    with pytest.raises(LoomError, match="app"):
        loom.record_service("invoice", SYSTEM)
    with loom_app.app_context(), pytest.raises(LoomError, match="who acts"):
        loom.record_service("invoice")
    with loom_app.app_context():
        made = loom.record_service("invoice", SYSTEM).create({"number": "A-1"})
    assert made["number"] == "A-1"
    # the app may be given instead of entered
    assert loom.record_service("invoice", SYSTEM, app=loom_app).get(made["id"])["number"] == "A-1"


def test_a_write_joins_the_callers_transaction_and_rolls_back_with_it(ledger, loom_app, loom_engine):
    seen = []

    class Boom(Exception):
        pass

    with pytest.raises(Boom), loom_engine.begin() as conn:
        svc = loom.record_service("invoice", SYSTEM, connection=conn, app=loom_app)
        made = svc.create({"number": "B-1"})
        # reads through the door see what the transaction wrote
        seen.append(svc.get(made["id"])["number"])
        conn.execute(sa.text("SELECT 1"))
        raise Boom
    assert seen == ["B-1"]
    assert count(loom_engine, "e_invoice") == 0
    # nothing of the rolled-back change reached the outbox or the audit log
    assert count(loom_engine, "loom_outbox", "entity = 'invoice'") == 0
    assert count(loom_engine, "loom_audit", "entity = 'invoice'") == 0


class Observer:
    """Hears commits, so a test can tell when after_record_commit ran."""

    def __init__(self):
        self.commits = []

    @loom.hookimpl
    def after_record_commit(self, entity, action, record):
        self.commits.append((entity.name, action, record["id"]))


@pytest.fixture
def observer():
    return Observer()


@pytest.fixture
def loom_plugins(observer):
    return [observer]


def test_after_record_commit_waits_for_the_callers_commit(ledger, loom_app, loom_engine, observer):
    with loom_engine.begin() as conn:
        made = loom.record_service("invoice", SYSTEM, connection=conn, app=loom_app).create({"number": "C-1"})
        assert observer.commits == []
    # SQLAlchemy announces a commit before it happens: the hooks run once the connection
    # is back in the pool (or begins its next transaction), after the commit
    assert observer.commits == [("invoice", "created", made["id"])]
    with loom_engine.connect() as conn:
        with conn.begin() as outer:
            loom.record_service("invoice", SYSTEM, connection=conn, app=loom_app).create({"number": "C-2"})
            outer.rollback()
        with conn.begin():
            second = loom.record_service("invoice", SYSTEM, connection=conn, app=loom_app).create({"number": "C-3"})
        with conn.begin():
            assert observer.commits == [("invoice", "created", made["id"]), ("invoice", "created", second["id"])]
    assert count(loom_engine, "e_invoice") == 2


class NoteTaker:
    """Writes a note through the door for every invoice, in the invoice's transaction, and
    refuses invoices numbered X-... after the note was written."""

    @loom.hookimpl
    def after_record_create(self, entity, record, principal, connection):
        if entity.name != "invoice":
            return
        notes = loom.record_service("invoice_note", loom.Principal.system("notes"), connection=connection)
        notes.create({"text": f"invoice {record['number']} created by {principal.name}"})
        if record["number"].startswith("X-"):
            raise loom.ValidationError("refused after the note", errors=[{"field": "number", "message": "no X"}])


@pytest.mark.parametrize("loom_plugins", [[NoteTaker()]])
def test_a_hook_writes_through_the_door_in_the_changes_transaction(ledger, loom_client, loom_engine):
    ok = loom_client.post("/api/v1/invoice", json={"number": "N-1"})
    assert ok.status_code == 201, ok.get_json()
    assert count(loom_engine, "e_invoice_note", "text = 'invoice N-1 created by admin'") == 1
    refused = loom_client.post("/api/v1/invoice", json={"number": "X-1"})
    assert refused.status_code == 422
    # the note written inside the refused change went with it
    assert count(loom_engine, "e_invoice") == 1
    assert count(loom_engine, "e_invoice_note") == 1


def test_a_refusal_inside_a_rolled_back_transaction_is_still_audited(ledger, loom_app, loom_engine):
    with pytest.raises(Forbidden), loom_engine.begin() as conn:
        loom.record_service("invoice", SYSTEM, connection=conn, app=loom_app).create({"number": "D-1"})
        loom.record_service("invoice", clerk(loom_app), connection=conn, app=loom_app).create({"number": "D-2"})
    assert count(loom_engine, "e_invoice") == 0
    assert count(loom_engine, "loom_audit",
                 "action = 'record.create' AND outcome = 'denied' AND actor = 'clerk'") == 1


def test_the_gate_answers_and_audits_for_every_caller(ledger, loom_app, loom_engine):
    with loom_app.app_context():
        svc = loom.record_service("invoice", clerk(loom_app))
        assert svc.allowed("read") and not svc.allowed("create")
        assert "number" in svc.readable() and svc.writable("create") == frozenset()
        with pytest.raises(Forbidden):
            svc.require("delete", 7)
    assert count(loom_engine, "loom_audit",
                 "action = 'record.delete' AND outcome = 'denied' AND record_id = 7") == 1


def test_comments_and_history_are_the_services_own(ledger, loom_app, observer):
    with loom_app.app_context():
        svc = loom.record_service("invoice", SYSTEM)
        made = svc.create({"number": "E-1"})
        svc.update(made["id"], {"amount": "12.50"})
        svc.add_comment(made["id"], "checked")
        assert [c["body"] for c in svc.comments(made["id"])] == ["checked"]
        assert [h["action"] for h in svc.history(made["id"])] == ["record.create", "record.update"]
        hidden = loom.record_service("invoice_note", clerk(loom_app))
        with pytest.raises(Forbidden):
            hidden.history(made["id"])
    assert ("invoice", "commented", made["id"]) in observer.commits
