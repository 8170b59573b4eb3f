"""Inbound webhooks: public, CSRF-free and signature-checked; every call audited. Attacked
with no signature, a wrong secret, a replayed old call, a tampered body and a forged
session."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

import loom
from loom.testing import sign_webhook

SECRET = "whsec-0123456789"


class ShopPlugin:
    """Receives paid orders from a web shop and records them as the webhook's principal."""

    def __init__(self):
        self.calls = []

    @loom.hookimpl
    def plugin_settings_schema(self):
        return ("shop", {"type": "object", "properties": {"webhook_secret": {"type": "string", "secret": True}}})

    @loom.hookimpl
    def webhooks(self):
        return [loom.Webhook("shop", "paid", secret="webhook_secret", handler=self.paid),
                loom.Webhook("shop", "broken", secret="webhook_secret", handler=self.broken)]

    def paid(self, call):
        payload = call.json()
        if "order" not in payload:
            raise loom.ValidationError("order is missing", errors=[{"field": "order", "message": "required"}])
        self.calls.append((payload, call.principal.name))
        return {"received": payload["order"]}

    def broken(self, call):
        raise RuntimeError("handler bug")


@pytest.fixture
def plugin():
    return ShopPlugin()


@pytest.fixture
def loom_plugins(plugin):
    return [plugin]


@pytest.fixture
def shop(set_plugin_settings):
    set_plugin_settings("shop", webhook_secret=SECRET)


def post(client, body: bytes, signature: str | None, path="/hooks/shop/paid", **headers):
    if signature is not None:
        headers["X-Loom-Signature"] = signature
    return client.post(path, data=body, headers=headers, content_type="application/json")


def audited(engine) -> list[tuple[str, str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT actor, outcome, detail FROM loom_audit WHERE action = 'webhook.receive' "
                                    "ORDER BY seq")).all()
    return [(actor, outcome, detail if isinstance(detail, dict) else json.loads(detail))
            for actor, outcome, detail in rows]


def test_a_signed_call_reaches_the_handler_without_a_session_and_is_audited(shop, anonymous_client, plugin,
                                                                          loom_engine):
    body = b'{"order": 42}'
    response = post(anonymous_client, body, sign_webhook(SECRET, body))
    assert response.status_code == 200 and response.get_json() == {"received": 42}
    assert plugin.calls == [({"order": 42}, "system:webhook:shop.paid")]
    [(actor, outcome, detail)] = audited(loom_engine)
    assert (actor, outcome) == ("system:webhook:shop.paid", "ok")
    assert detail == {"plugin": "shop", "name": "paid", "bytes": len(body), "id": detail["id"]}
    assert isinstance(detail["id"], int)


def problem_of(response) -> dict:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.get_json()


def test_an_unsigned_call_is_refused(shop, anonymous_client, plugin, loom_engine):
    assert "not signed" in problem_of(post(anonymous_client, b'{"order": 1}', None))["detail"]
    assert plugin.calls == []
    assert [outcome for _, outcome, _ in audited(loom_engine)] == ["denied"]


def test_a_call_signed_with_the_wrong_secret_is_refused(shop, anonymous_client, plugin):
    body = b'{"order": 1}'
    assert "does not match" in problem_of(post(anonymous_client, body, sign_webhook("guessed-secret", body)))["detail"]
    assert plugin.calls == []


def test_a_replayed_old_call_is_refused(shop, anonymous_client, plugin, loom_engine):
    body = b'{"order": 1}'
    old = sign_webhook(SECRET, body, timestamp=int(time.time()) - 301)
    assert "more than 5 minutes" in problem_of(post(anonymous_client, body, old))["detail"]
    ahead = sign_webhook(SECRET, body, timestamp=int(time.time()) + 600)
    problem_of(post(anonymous_client, body, ahead))
    assert plugin.calls == []
    assert "more than 5 minutes" in audited(loom_engine)[0][2]["reason"]


def test_a_fresh_call_sent_again_is_refused(shop, anonymous_client, plugin, loom_engine):
    """A captured call replayed within the minutes its timestamp is accepted: taken once."""
    body = b'{"order": 7}'
    signature = sign_webhook(SECRET, body)
    assert post(anonymous_client, body, signature).status_code == 200
    again = post(anonymous_client, body, signature)
    assert again.status_code == 409 and again.mimetype == "application/problem+json"
    assert "received already" in again.get_json()["detail"]
    assert plugin.calls == [({"order": 7}, "system:webhook:shop.paid")]
    assert [outcome for _, outcome, _ in audited(loom_engine)] == ["ok", "denied"]
    # the sender signing its retry anew is heard (a second later: a new timestamp)
    retry = sign_webhook(SECRET, body, timestamp=int(time.time()) + 1)
    assert post(anonymous_client, body, retry).status_code == 200


def test_the_same_call_sent_twice_at_once_is_taken_once(shop, loom_app, plugin):
    body = b'{"order": 8}'
    signature = sign_webhook(SECRET, body)
    barrier = threading.Barrier(2)

    def send():
        client = loom_app.test_client()
        barrier.wait()
        return post(client, body, signature).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda _: send(), range(2)))
    assert statuses == [200, 409]
    assert len(plugin.calls) == 1


def test_a_tampered_body_or_timestamp_is_refused(shop, anonymous_client, plugin):
    signature = sign_webhook(SECRET, b'{"order": 1}')
    assert "does not match" in problem_of(post(anonymous_client, b'{"order": 1000}', signature))["detail"]
    stamp, digest = signature.split(",")
    moved = f"t={int(stamp[2:]) + 1},{digest}"
    assert "does not match" in problem_of(post(anonymous_client, b'{"order": 1}', moved))["detail"]
    for garbage in ("v1=abc", "t=now,v1=abc", "t=1", ""):
        problem_of(post(anonymous_client, b'{"order": 1}', garbage))
    assert plugin.calls == []


def test_no_secret_configured_means_no_call_is_accepted(anonymous_client, plugin):
    body = b'{"order": 1}'
    assert "no secret configured" in problem_of(post(anonymous_client, body, sign_webhook("", body)))["detail"]
    assert plugin.calls == []


def test_credentials_are_neither_needed_nor_read(shop, loom_client, anonymous_client, plugin):
    """A browser's session cookie or a stray Authorization header does not make a call
    count as the user's, and the missing CSRF token does not refuse it."""
    body = b'{"order": 7}'
    signed = post(anonymous_client, body, sign_webhook(SECRET, body), Authorization="Basic c2hvcDpwYXNz")
    assert signed.status_code == 200
    assert post(loom_client, body, None).status_code == 401  # a valid token is no signature
    assert plugin.calls == [({"order": 7}, "system:webhook:shop.paid")]


def test_the_handlers_refusals_and_failures_are_problems_and_audited(shop, anonymous_client, loom_engine):
    body = b'{"no_order": true}'
    refused = post(anonymous_client, body, sign_webhook(SECRET, body))
    assert refused.status_code == 422
    assert [(e["field"], e["message"]) for e in refused.get_json()["errors"]] == [("order", "required")]
    not_json = b"order=1"
    assert post(anonymous_client, not_json, sign_webhook(SECRET, not_json)).status_code == 400
    failed = post(anonymous_client, body, sign_webhook(SECRET, body), path="/hooks/shop/broken")
    # the call is stored, so a failing handler is tried again by the worker, not lost
    assert failed.status_code == 202 and "handler bug" not in failed.get_data(as_text=True)
    assert failed.get_json() == {"id": failed.get_json()["id"], "status": "queued"}
    assert [outcome for _, outcome, _ in audited(loom_engine)] == ["denied", "denied", "error"]


def test_unknown_webhooks_are_404(shop, anonymous_client):
    body = b"{}"
    assert post(anonymous_client, body, sign_webhook(SECRET, body), path="/hooks/shop/refunded").status_code == 404
    assert anonymous_client.get("/hooks/shop/paid").status_code == 405


def test_two_webhooks_at_one_address_stop_the_app(loom_engine, tmp_path):
    from loom.app import create_app

    with pytest.raises(ValueError, match="two webhooks are declared at /hooks/shop/paid"):
        create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                    "PLUGINS": [ShopPlugin(), type("Again", (), {"webhooks": ShopPlugin().webhooks})()],
                    "DISCOVER_PLUGINS": False})


def test_a_secret_that_cannot_be_read_refuses_calls_without_telling_the_caller_why(shop, loom_engine, tmp_path,
                                                                                    plugin):
    from loom.app import create_app

    rotated = create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "rotated"), "SECRET_KEY": "rotated",
                          "PLUGINS": [plugin], "DISCOVER_PLUGINS": False}).test_client()
    body = b'{"order": 1}'
    response = post(rotated, body, sign_webhook(SECRET, body))
    assert "no secret configured" in problem_of(response)["detail"]
    assert "loom plugin set" not in response.get_data(as_text=True)
    assert plugin.calls == []
