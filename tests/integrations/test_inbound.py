"""Inbound webhooks lose nothing: an accepted call is stored, with the deliveries of the
rules it triggers and a standby of its handler, in one transaction, before it is
answered. A handler that fails is run again by the worker as the webhook's system
principal; a process that dies mid-handler leaves the standby, due five minutes later.
Refused calls store nothing."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
import sqlalchemy as sa

import loom
from loom.db import utcnow
from loom.integrations import triggers
from loom.integrations.actions import Action, register_action, unregister_action
from loom.integrations.admin import ReplayRange, replay
from loom.integrations.models import attempts, deliveries
from loom.integrations.worker import Worker
from loom.plugins.webhooks import inbound_calls, receipts, store
from loom.principal import Principal
from loom.testing import sign_webhook

SECRET = "whsec-inbound-42"


class CrmPlugin:
    """Two webhooks: ``lead`` only feeds rules; ``order`` has a handler that fails as told."""

    def __init__(self):
        self.calls = []
        #: what the handler does on each call, first to last: "ok", "crash" or "refuse"
        self.script = []

    @loom.hookimpl
    def plugin_settings_schema(self):
        return ("crm", {"type": "object", "properties": {"webhook_secret": {"type": "string", "secret": True}}})

    @loom.hookimpl
    def webhooks(self):
        return [loom.Webhook("crm", "lead", secret="webhook_secret"),
                loom.Webhook("crm", "order", secret="webhook_secret", handler=self.order)]

    def order(self, call):
        self.calls.append(call)
        step = self.script.pop(0) if self.script else "ok"
        if step == "crash":
            raise ConnectionError("the ERP is down")
        payload = call.json()
        if step == "refuse" or "order" not in payload:
            raise loom.ValidationError("order is missing", errors=[{"field": "order", "message": "required"}])
        return {"taken": payload["order"]}


@pytest.fixture
def plugin():
    return CrmPlugin()


@pytest.fixture
def loom_plugins(plugin):
    return [plugin]


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, call):
        self.calls.append(call)
        return {"seen": call.idempotency_key}


@pytest.fixture
def recorder():
    """An action registered for the test, which the rules name."""
    name = f"test.inbound_{uuid.uuid4().hex[:8]}"
    calls = Recorder()
    calls.name = name
    register_action(Action(name, calls, plugin="loom"))
    yield calls
    unregister_action(name)


@pytest.fixture
def crm(loom_app, set_plugin_settings, make_user, apply_metadata, recorder):
    set_plugin_settings("crm", webhook_secret=SECRET)
    make_user("bot")

    def rule(name, webhook, **extra):
        return {"kind": "rule", "name": name, "on": {"webhook": webhook}, "action": recorder.name,
                "run_as": "bot", "with": {"source": "crm", "tags": ["inbound"]}, **extra}

    apply_metadata(rule("lead_in", "crm/lead"), rule("lead_copy", "crm/lead", retry={"max_attempts": 3}),
                   rule("lead_off", "crm/lead", enabled=False), rule("order_in", "crm/order"))
    return loom_app


def post(client, body: bytes, signature: str | None, path="/hooks/crm/lead", **headers):
    if signature is not None:
        headers["X-Loom-Signature"] = signature
    return client.post(path, data=body, headers=headers, content_type="application/json")


def calls_stored(app) -> list[dict]:
    with app.extensions["loom"].engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(inbound_calls).order_by(inbound_calls.c.id)).mappings()]


def delivery_rows(app, **where) -> list[dict]:
    query = sa.select(deliveries).order_by(deliveries.c.id)
    for name, value in where.items():
        query = query.where(deliveries.c[name] == value)
    with app.extensions["loom"].engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def count(app, table) -> int:
    with app.extensions["loom"].engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def audited(app) -> list[tuple[str, dict]]:
    with app.extensions["loom"].engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT outcome, detail FROM loom_audit WHERE action = 'webhook.receive' "
                                    "ORDER BY seq")).all()
    return [(outcome, detail if isinstance(detail, dict) else json.loads(detail)) for outcome, detail in rows]


def utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def test_a_call_is_stored_with_harmless_headers_only_and_its_rules_deliveries(crm, anonymous_client, recorder):
    body = b'{"lead": {"name": "Ada", "email": "ada@example.com"}}'
    signature = sign_webhook(SECRET, body)
    response = post(anonymous_client, body, signature, **{
        "Authorization": "Bearer stolen-token", "Cookie": "session=abc", "User-Agent": "crm-sender/2.1",
        "X-Request-Id": "req-77", "Idempotency-Key": "lead-1", "X-Api-Key": "key-123"})
    assert response.status_code == 202
    [call] = calls_stored(crm)
    assert response.get_json() == {"id": call["id"], "status": "received"}
    assert bytes(call["body"]) == body and call["status"] == "received"
    assert (call["plugin"], call["name"], call["content_type"]) == ("crm", "lead", "application/json")
    assert call["headers"] == {"Content-Type": "application/json", "User-Agent": "crm-sender/2.1",
                               "X-Request-Id": "req-77", "Idempotency-Key": "lead-1"}
    stored_text = json.dumps(call["headers"]) + json.dumps(call["query"])
    for secret in ("stolen-token", "session=abc", "key-123", signature.split("v1=")[1]):
        assert secret not in stored_text

    # each enabled rule on this webhook, and no other, has a delivery with the body in its context
    made = delivery_rows(crm, trigger="webhook")
    assert sorted(d["rule"] for d in made) == ["lead_copy", "lead_in"]
    lead_in = next(d for d in made if d["rule"] == "lead_in")
    assert lead_in["context"] == {"body": {"lead": {"name": "Ada", "email": "ada@example.com"}},
                                  "headers": call["headers"], "inbound_id": call["id"],
                                  "with": {"source": "crm", "tags": ["inbound"]}, "chain": []}
    assert lead_in["idempotency_key"] == f"lead_in:inbound:{call['id']}"
    assert (lead_in["action"], lead_in["run_as"], lead_in["status"]) == (recorder.name, "bot", "pending")
    assert next(d for d in made if d["rule"] == "lead_copy")["max_attempts"] == 3
    # no handler: no handler delivery
    assert delivery_rows(crm, action="webhook.handle") == []
    assert audited(crm) == [("ok", {"plugin": "crm", "name": "lead", "id": call["id"], "bytes": len(body),
                                    "status": "received"})]

    # the worker runs them as the rule's user
    report = Worker(crm).run_once()
    assert (report.claimed, report.succeeded) == (2, 2)
    assert sorted(c.idempotency_key for c in recorder.calls) == [f"lead_copy:inbound:{call['id']}",
                                                                 f"lead_in:inbound:{call['id']}"]
    assert {c.principal.name for c in recorder.calls} == {"bot"}
    assert recorder.calls[0].arguments == {"source": "crm", "tags": ["inbound"]}


def test_a_body_that_is_not_json_reaches_rules_as_text(crm, anonymous_client):
    body = "name=Zoë&source=fair".encode()
    assert post(anonymous_client, body, sign_webhook(SECRET, body)).status_code == 202
    [delivery, _copy] = delivery_rows(crm, trigger="webhook")
    assert delivery["context"]["body"] == {"text": "name=Zoë&source=fair"}


def test_a_call_whose_deliveries_cannot_be_written_is_not_taken_at_all(crm, anonymous_client, monkeypatch):
    """Call, receipt and deliveries are one transaction: when the deliveries fail, the call
    is neither kept nor marked received, and the sender's retry of the same call is taken."""
    body = b'{"lead": {"name": "Grace"}}'
    signature = sign_webhook(SECRET, body)

    def broken(conn, rows):
        raise sa.exc.OperationalError("INSERT INTO loom_deliveries", {}, Exception("disk full"))

    monkeypatch.setattr(triggers, "write", broken)
    failed = post(anonymous_client, body, signature)
    assert failed.status_code == 503 and failed.mimetype == "application/problem+json"
    assert "send it again" in failed.get_json()["detail"]
    assert "disk full" not in failed.get_data(as_text=True)
    assert calls_stored(crm) == [] and count(crm, receipts) == 0 and count(crm, deliveries) == 0
    assert audited(crm)[-1][0] == "error"

    monkeypatch.undo()
    again = post(anonymous_client, body, signature)
    assert again.status_code == 202, again.get_json()
    assert [c["id"] for c in calls_stored(crm)] == [again.get_json()["id"]]
    assert len(delivery_rows(crm, trigger="webhook")) == 2


def test_a_handled_call_keeps_its_reply_and_no_standby(crm, anonymous_client, plugin):
    body = b'{"order": 5001}'
    response = post(anonymous_client, body, sign_webhook(SECRET, body), path="/hooks/crm/order",
                    **{"X-Request-Id": "r-1"})
    assert response.status_code == 200 and response.get_json() == {"taken": 5001}
    [call] = calls_stored(crm)
    assert call["status"] == "handled" and call["reply"] == {"taken": 5001} and call["handled_at"] is not None
    assert plugin.calls[0].id == call["id"] and plugin.calls[0].principal.name == "system:webhook:crm.order"
    # the standby written with the call is gone; the rule on the webhook still has its delivery
    assert delivery_rows(crm, action="webhook.handle") == []
    assert [d["rule"] for d in delivery_rows(crm, trigger="webhook")] == ["order_in"]


def test_a_refused_call_is_stored_as_refused_with_no_standby(crm, anonymous_client):
    body = b'{"no_order": true}'
    response = post(anonymous_client, body, sign_webhook(SECRET, body), path="/hooks/crm/order")
    assert response.status_code == 422
    [call] = calls_stored(crm)
    assert call["status"] == "refused" and call["error"] == "order is missing" and call["handled_at"] is not None
    assert delivery_rows(crm, action="webhook.handle") == []
    assert audited(crm)[-1][0] == "denied" and audited(crm)[-1][1]["id"] == call["id"]


def test_a_failing_handler_is_queued_and_the_worker_handles_the_call(crm, anonymous_client, plugin):
    plugin.script = ["crash"]
    body = b'{"order": 7002}'
    before = utcnow()
    response = post(anonymous_client, body, sign_webhook(SECRET, body), path="/hooks/crm/order",
                    **{"Authorization": "Basic c2VjcmV0", "User-Agent": "erp/1"})
    assert response.status_code == 202
    [call] = calls_stored(crm)
    assert response.get_json() == {"id": call["id"], "status": "queued"}
    assert call["status"] == "queued" and call["error"] == "ConnectionError"
    assert "the ERP is down" not in response.get_data(as_text=True)

    [standby] = delivery_rows(crm, action="webhook.handle")
    assert standby["run_as"] == "system:webhook:crm.order" and standby["status"] == "pending"
    assert standby["idempotency_key"] == f"webhook.handle:inbound:{call['id']}"
    assert "ConnectionError: the ERP is down" in standby["last_error"]
    due = utc(standby["available_at"])
    assert before + dt.timedelta(seconds=25) <= due <= utcnow() + dt.timedelta(seconds=31)
    assert audited(crm)[-1] == ("error", {"plugin": "crm", "name": "order", "id": call["id"],
                                          "error": "ConnectionError", "status": "queued"})

    worker = Worker(crm)
    assert worker.run_once(now=utcnow()).claimed == 1  # only the rule's delivery is due now
    report = worker.run_once(now=due + dt.timedelta(seconds=1))
    assert (report.claimed, report.succeeded) == (1, 1)
    [stored] = calls_stored(crm)
    assert stored["status"] == "handled" and stored["reply"] == {"taken": 7002} and stored["error"] is None
    again = plugin.calls[-1]
    assert len(plugin.calls) == 2 and again.body == body and again.id == call["id"]
    assert again.principal.name == "system:webhook:crm.order" and again.principal.is_system
    # the worker's call has the stored headers only: never the credentials the sender added
    assert "Authorization" not in again.headers and again.headers["User-Agent"] == "erp/1"
    assert again.timestamp == plugin.calls[0].timestamp
    [done] = delivery_rows(crm, action="webhook.handle")
    assert done["status"] == "succeeded" and done["result"] == {"taken": 7002}

    # an admin's replay of the handler's delivery runs the handler on the stored call again
    span = ReplayRange.parse({"since": (before - dt.timedelta(minutes=1)).isoformat(),
                              "until": (utcnow() + dt.timedelta(minutes=1)).isoformat(),
                              "action": "webhook.handle"})
    [replayed] = replay(crm.extensions["loom"].engine, crm.extensions["loom"].audit, span,
                        principal=Principal.system("test"))
    assert Worker(crm).run_once(now=utcnow() + dt.timedelta(seconds=1)).succeeded == 1
    assert len(plugin.calls) == 3 and plugin.calls[-1].id == call["id"]
    assert delivery_rows(crm, id=replayed)[0]["status"] == "succeeded"


def test_a_handler_the_worker_runs_can_still_refuse_the_call(crm, anonymous_client, plugin):
    plugin.script = ["crash", "crash", "refuse"]
    body = b'{"order": 8}'
    call_id = post(anonymous_client, body, sign_webhook(SECRET, body), path="/hooks/crm/order").get_json()["id"]
    later = utcnow() + dt.timedelta(seconds=31)
    assert Worker(crm).run_once(now=later).retried == 1  # crashed again: still queued, tried later
    assert calls_stored(crm)[0]["status"] == "queued"
    [standby] = delivery_rows(crm, action="webhook.handle")
    report = Worker(crm).run_once(now=utc(standby["available_at"]) + dt.timedelta(seconds=1))
    assert report.dead == 1
    [call] = calls_stored(crm)
    assert (call["id"], call["status"], call["error"]) == (call_id, "refused", "order is missing")
    [dead] = delivery_rows(crm, action="webhook.handle")
    assert dead["status"] == "dead" and "order is missing" in dead["last_error"]


def test_a_process_dying_before_the_handler_ends_leaves_a_standby_due_five_minutes_later(crm, plugin):
    """The first transaction happened; the handler never ended (the process died)."""
    body = b'{"order": 99}'
    loom_ext = crm.extensions["loom"]
    webhook = loom_ext.webhooks[("crm", "order")]
    with crm.app_context():
        call_id = store(loom_ext, webhook, signature=sign_webhook(SECRET, body), body=body,
                        content_type="application/json", headers={"Content-Type": "application/json"}, query={},
                        timestamp=int(time.time()))
    [call] = calls_stored(crm)
    assert call["status"] == "received"
    [standby] = delivery_rows(crm, action="webhook.handle")
    received = utc(call["received_at"])
    assert utc(standby["available_at"]) - received == dt.timedelta(minutes=5)

    worker = Worker(crm)
    worker.run_once(now=received + dt.timedelta(minutes=4, seconds=59))
    assert plugin.calls == [] and calls_stored(crm)[0]["status"] == "received"
    report = worker.run_once(now=received + dt.timedelta(minutes=5, seconds=1))
    assert (report.claimed, report.succeeded) == (1, 1)
    assert [c.id for c in plugin.calls] == [call_id]
    assert calls_stored(crm)[0]["status"] == "handled"
    with crm.extensions["loom"].engine.connect() as conn:
        outcomes = conn.execute(sa.select(attempts.c.outcome).where(
            attempts.c.delivery_id == standby["id"])).scalars().all()
    assert outcomes == ["succeeded"]


def test_a_rule_naming_the_handler_action_cannot_run_a_stored_call(crm, anonymous_client, plugin):
    """webhook.handle runs only the deliveries Loom writes for its stored calls."""
    body = b'{"order": 1}'
    assert post(anonymous_client, body, sign_webhook(SECRET, body), path="/hooks/crm/order").status_code == 200
    [call] = calls_stored(crm)
    call_id = call["id"]
    with crm.extensions["loom"].engine.begin() as conn:
        conn.execute(deliveries.insert().values(
            created_at=utcnow(), rule="sneaky", trigger="webhook", action="webhook.handle", plugin="loom",
            context={"with": {"inbound_id": call_id}, "chain": []}, run_as="bot", depth=0,
            idempotency_key=f"sneaky:inbound:{call_id}", status="pending", attempts=0, max_attempts=3,
            backoff="fixed", backoff_seconds=30, available_at=utcnow() - dt.timedelta(seconds=1)))
    with crm.extensions["loom"].engine.begin() as conn:  # as if the request had not ended yet
        conn.execute(inbound_calls.update().values(status="received"))
    before = len(plugin.calls)
    Worker(crm).run_once()
    [sneaky] = delivery_rows(crm, rule="sneaky")
    assert sneaky["status"] == "dead" and "not a rule's" in sneaky["last_error"]
    assert len(plugin.calls) == before


def test_refused_calls_store_nothing(crm, anonymous_client, plugin):
    body = b'{"order": 3}'
    signature = sign_webhook(SECRET, body)
    assert post(anonymous_client, body, None, path="/hooks/crm/order").status_code == 401
    assert post(anonymous_client, body, sign_webhook("wrong", body), path="/hooks/crm/order").status_code == 401
    stale = sign_webhook(SECRET, body, timestamp=int(time.time()) - 600)
    assert post(anonymous_client, body, stale, path="/hooks/crm/order").status_code == 401
    assert calls_stored(crm) == [] and count(crm, deliveries) == 0
    assert post(anonymous_client, body, signature, path="/hooks/crm/order").status_code == 200
    replay = post(anonymous_client, body, signature, path="/hooks/crm/order")
    assert replay.status_code == 409
    assert len(calls_stored(crm)) == 1 and len(plugin.calls) == 1
    assert [d["rule"] for d in delivery_rows(crm)] == ["order_in"]


def test_a_webhook_rules_mapping_reads_the_calls_body_and_headers(crm, anonymous_client, apply_metadata, recorder):
    apply_metadata({"kind": "rule", "name": "lead_named", "on": {"webhook": "crm/lead"}, "action": recorder.name,
                    "run_as": "bot", "with": {"name": "{{ body.lead.name }}", "sender": "{{ headers['User-Agent'] }}",
                                              "emails": "{{ body.lead.emails }}"}})
    body = b'{"lead": {"name": "Ada", "emails": ["ada@example.com", "a@example.org"]}}'
    assert post(anonymous_client, body, sign_webhook(SECRET, body), **{"User-Agent": "crm-sender/2.1"}).status_code \
        == 202
    assert Worker(crm).run_once().succeeded == 1
    [call] = recorder.calls
    assert call.arguments == {"name": "Ada", "sender": "crm-sender/2.1",
                              "emails": ["ada@example.com", "a@example.org"]}
