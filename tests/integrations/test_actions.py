"""Loom's own rule actions, called as the worker calls them (one ``ActionCall`` each):
``http.request`` against a real HTTP server on 127.0.0.1 that records what it receives,
and ``record.create`` / ``record.update`` as users whose roles allow and refuse."""

from __future__ import annotations

import decimal
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

import loom
from loom.errors import Conflict
from loom.integrations import http, records
from loom.integrations.actions import ActionCall, PermanentFailure, action
from loom.plugins.settings import PluginSettings, PluginSettingsError
from loom.plugins.webhooks import SignatureRefused, verify
from loom.records.service import RecordService

SECRET = "partner-signing-secret-0123456789"
TOKEN = "Bearer tok-very-private-4711"
SYSTEM = loom.Principal.system("rule:test")


# -- a receiver ----------------------------------------------------------------------------

class Receiver(BaseHTTPRequestHandler):
    """Answers ``/status/<code>``, ``/slow``, ``/trickle`` (a reply sent a little at a time),
    ``/echo/<code>`` (the request's headers and body
    back), ``/redirect/same`` and ``/redirect/other``; keeps every request it got."""

    def handle_one(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append({"method": self.command, "path": self.path, "headers": self.headers, "body": body})
        parts = urlsplit(self.path).path.strip("/").split("/")
        if parts[0] == "slow":
            time.sleep(1.5)
            return self.reply(200, b"late")
        if parts[0] == "trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(50):
                self.wfile.write(b"x" * 10)
                self.wfile.flush()
                time.sleep(0.1)
            return None
        if parts[0] == "echo":
            echoed = json.dumps({"headers": dict(self.headers), "body": body.decode()}).encode()
            return self.reply(int(parts[1]), echoed)
        if parts[0] == "redirect":
            host = "127.0.0.1" if parts[1] == "same" else "localhost"
            self.send_response(307)
            self.send_header("Location", f"http://{host}:{self.server.server_port}/status/201")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        code = int(parts[1])
        return self.reply(code, b"" if code == 204 else json.dumps({"got": code}).encode())

    def reply(self, code: int, payload: bytes):
        self.send_response(code)
        if code != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if code != 204:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.daemon_threads = True
    server.block_on_close = False
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.base = f"http://127.0.0.1:{server.server_port}"
    yield server
    server.shutdown()
    server.server_close()


def call(arguments, *, app=None, settings=None, principal=SYSTEM, delivery_id=7):
    return ActionCall(arguments=arguments, idempotency_key=f"delivery-{delivery_id}-6f1c", delivery_id=delivery_id,
                      attempt=1, rule="push_orders", principal=principal, app=app,
                      settings={"signing_keys": {"partner": SECRET}} if settings is None else settings)


def send(**arguments):
    return http.request(call(arguments))


# -- http.request --------------------------------------------------------------------------

def test_a_signed_post_carries_its_json_body_key_timestamp_and_a_signature_the_receiver_verifies(receiver):
    before = int(time.time())
    result = send(url=f"{receiver.base}/status/201", signing_key="partner", headers={"X-Order": "SO-1"},
                  body={"order": 5, "total": decimal.Decimal("12.50"), "customer": "上海通达", "lines": [1, 2]})
    assert result == {"status": 201, "body": '{"got": 201}'}
    [got] = receiver.seen
    headers, body = got["headers"], got["body"]
    assert got["method"] == "POST" and got["path"] == "/status/201"
    assert json.loads(body) == {"order": 5, "total": "12.50", "customer": "上海通达", "lines": [1, 2]}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Order"] == "SO-1"
    assert headers["Idempotency-Key"] == "delivery-7-6f1c"
    assert headers["X-Loom-Delivery"] == "7"
    stamp = int(headers["X-Loom-Timestamp"])
    assert before <= stamp <= time.time()
    # what a receiver does by hand, following docs/plugins.md ...
    signature = headers["X-Loom-Signature"]
    assert signature.startswith(f"t={stamp},v1=")
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature.partition(",v1=")[2], expected)
    # ... and what another Loom's inbound webhook checks: the same scheme
    assert verify(signature, body, SECRET) == stamp
    with pytest.raises(SignatureRefused):
        verify(signature, body.replace(b"12.50", b"99.50"), SECRET)
    with pytest.raises(SignatureRefused):
        verify(signature, body, "another-secret-0123456789")


def test_the_idempotency_key_is_loom_s_whatever_headers_the_rule_gives(receiver):
    send(url=f"{receiver.base}/status/200", headers={"idempotency-key": "forged", "X-Loom-Delivery": "1"},
         body={"a": 1})
    [got] = receiver.seen
    assert got["headers"].get_all("Idempotency-Key") == ["delivery-7-6f1c"]
    assert got["headers"].get_all("X-Loom-Delivery") == ["7"]
    # unsigned unless the rule names a key
    assert got["headers"].get("X-Loom-Signature") is None


@pytest.mark.parametrize(("method", "status"), [("GET", 200), ("PUT", 200), ("PATCH", 201), ("DELETE", 204),
                                                ("POST", 204)])
def test_each_method_is_sent_and_a_2xx_is_done(receiver, method, status):
    result = send(method=method, url=f"{receiver.base}/status/{status}")
    assert result == {"status": status, "body": "" if status == 204 else json.dumps({"got": status})}
    assert [r["method"] for r in receiver.seen] == [method]
    assert receiver.seen[0]["body"] == b""


def test_a_long_reply_is_kept_to_its_first_2000_characters(receiver):
    result = send(url=f"{receiver.base}/echo/200", body={"text": "x" * 5000})
    assert len(result["body"]) == 2000
    assert result["body"].startswith('{"headers"')


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_refusal_is_permanent_and_names_the_status_and_url(receiver, status):
    with pytest.raises(PermanentFailure) as failure:
        send(url=f"{receiver.base}/status/{status}", body={"a": 1})
    assert str(status) in str(failure.value)
    assert f"{receiver.base}/status/{status}" in str(failure.value)


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_busy_or_broken_receiver_is_tried_again(receiver, status):
    with pytest.raises(Exception) as failure:
        send(url=f"{receiver.base}/status/{status}", body={"a": 1})
    assert not isinstance(failure.value, PermanentFailure)
    assert str(status) in str(failure.value)
    assert f"{receiver.base}/status/{status}" in str(failure.value)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_is_tried_again():
    url = f"http://127.0.0.1:{closed_port()}/hook"
    with pytest.raises(Exception) as failure:
        send(url=url, body={"a": 1})
    assert not isinstance(failure.value, PermanentFailure)
    assert url in str(failure.value)


def test_a_slow_receiver_times_out_and_is_tried_again(receiver):
    started = time.monotonic()
    with pytest.raises(Exception) as failure:
        send(url=f"{receiver.base}/slow", timeout=0.3)
    assert time.monotonic() - started < 1.2
    assert not isinstance(failure.value, PermanentFailure)
    assert "0.3 seconds" in str(failure.value) and f"{receiver.base}/slow" in str(failure.value)


def test_a_reply_that_trickles_in_is_cut_off_at_the_timeout(receiver):
    """Each piece comes well within the timeout, the whole does not."""
    started = time.monotonic()
    with pytest.raises(Exception) as failure:
        send(url=f"{receiver.base}/trickle", timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert not isinstance(failure.value, PermanentFailure)
    assert "0.5 seconds" in str(failure.value)


def test_a_redirect_is_followed_on_the_same_host_only(receiver):
    assert send(url=f"{receiver.base}/redirect/same", body={"a": 1})["status"] == 201
    assert [r["path"] for r in receiver.seen] == ["/redirect/same", "/status/201"]
    receiver.seen.clear()
    # localhost is the same server, but another host: the second request is never sent
    with pytest.raises(PermanentFailure, match="redirected to another host"):
        send(url=f"{receiver.base}/redirect/other", body={"a": 1})
    assert [r["path"] for r in receiver.seen] == ["/redirect/other"]


@pytest.mark.parametrize("status", [400, 500])
def test_no_error_quotes_the_signing_secret_or_a_credential(receiver, status):
    """The receiver echoes everything it got; the error quotes its reply, redacted."""
    port = receiver.server_port
    with pytest.raises(Exception) as failure:
        send(url=f"http://robot:pass-word-42@127.0.0.1:{port}/echo/{status}?api_key=query-secret-9",
             headers={"Authorization": TOKEN, "X-Api-Key": "key-secret-77"}, body={"secret": SECRET},
             signing_key="partner")
    message = str(failure.value)
    assert str(status) in message and "/echo/" in message
    for private in (SECRET, "tok-very-private-4711", "key-secret-77", "pass-word-42", "query-secret-9"):
        assert private not in message
    assert "***" in message
    with pytest.raises(Exception) as failure:
        send(url=f"http://robot:pass-word-42@127.0.0.1:{closed_port()}/x?api_key=query-secret-9",
             headers={"Authorization": TOKEN}, signing_key="partner")
    assert not {"pass-word-42", "query-secret-9", "tok-very-private-4711"} & set(str(failure.value).split())
    assert "pass-word-42" not in str(failure.value) and "query-secret-9" not in str(failure.value)


def test_a_header_http_does_not_allow_is_refused_without_quoting_it(receiver):
    with pytest.raises(PermanentFailure) as failure:
        send(url=f"{receiver.base}/status/200", headers={"Authorization": "Bearer a\r\nX-Evil: 1"})
    assert "Bearer" not in str(failure.value)
    assert receiver.seen == []


@pytest.mark.parametrize(("arguments", "says"), [
    ({"url": "ftp://example.com/x"}, "http:// or https://"),
    ({"url": "http:///nohost"}, "http:// or https://"),
    ({"url": "http://127.0.0.1:1/x", "method": "TRACE"}, "TRACE"),
    ({"url": "http://127.0.0.1:1/x", "timeout": 600}, "at most 60"),
    ({"url": "http://127.0.0.1:1/x", "signing_key": "nobody"}, "'nobody'"),
    ({"url": "http://127.0.0.1:1/x", "body": {"when": object()}}, "JSON"),
])
def test_a_request_that_cannot_be_sent_as_given_is_permanent(arguments, says):
    with pytest.raises(PermanentFailure, match=says) as failure:
        send(**arguments)
    assert SECRET not in str(failure.value)


def test_the_built_in_registration_describes_the_arguments():
    from jsonschema import Draft202012Validator

    schema = action("http.request").arguments
    assert action("http.request").plugin == "loom"
    ok = {"url": "https://erp.example.com/orders", "method": "PUT", "body": [1], "timeout": 5, "signing_key": "erp"}
    assert not list(Draft202012Validator(schema).iter_errors(ok))
    for bad in ({"url": "file:///etc/passwd"}, {"url": "https://x", "timeout": 61}, {"url": "https://x", "method": "X"},
                {"url": "https://x", "headers": {"A": 1}}, {"method": "GET"}):
        assert list(Draft202012Validator(schema).iter_errors(bad)), bad
    # record.update finds its record by id or by external_id, which it checks itself
    assert action("record.update").arguments["required"] == ["entity", "values"]
    assert {"id", "external_id"} <= set(action("record.update").arguments["properties"])


# -- the signing keys, sealed in the settings of http ---------------------------------------

def test_signing_keys_are_read_from_the_settings_of_http_each_one_sealed(receiver, loom_app, loom_engine,
                                                                       set_plugin_settings):
    set_plugin_settings("http", signing_keys={"partner": SECRET, "erp": "erp-secret-abcdefghijkl"})
    settings = loom_app.extensions["loom"].settings
    assert settings.masked("http") == {"signing_keys": {"erp": "***", "partner": "***"}}
    with loom_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT \"values\" FROM loom_plugin_settings WHERE plugin = 'http'")).scalar()
        logged = " ".join(str(row) for row in conn.execute(sa.text("SELECT changes FROM loom_audit")))
    assert SECRET not in str(stored) and "erp-secret" not in str(stored) and "partner" in str(stored)
    assert SECRET not in logged and "partner" in logged
    # a change names only the keys it sets (null removes one); the others keep their secret
    set_plugin_settings("http", signing_keys={"erp": None, "crm": "crm-secret-abcdefghijkl"})
    assert settings.values("http")["signing_keys"] == {"partner": SECRET, "crm": "crm-secret-abcdefghijkl"}
    with pytest.raises(loom.ValidationError) as refused:
        set_plugin_settings("http", signing_keys={"short": "tiny-secret"})
    assert "tiny-secret" not in str(refused.value.errors) and "tiny-secret" not in refused.value.detail
    # sealed under this app's secret key: another key cannot open them, and says how to mend it
    with pytest.raises(PluginSettingsError) as unreadable:
        PluginSettings(loom_engine, "another-secret-key", loom_app.extensions["loom"].plugins).values("http")
    assert "loom plugin set http signing_keys='{\"" in unreadable.value.detail

    # Loom's own actions are given no plugin settings: http.request reads its keys itself
    http.request(call({"url": f"{receiver.base}/status/200", "body": {"n": 1}, "signing_key": "partner"},
                      app=loom_app, settings={}))
    [got] = receiver.seen
    assert verify(got["headers"]["X-Loom-Signature"], got["body"], SECRET)
    with pytest.raises(PermanentFailure, match="'erp'") as failure:
        http.request(call({"url": f"{receiver.base}/status/200", "signing_key": "erp"}, app=loom_app, settings={}))
    assert "crm, partner" in str(failure.value) and SECRET not in str(failure.value)


# -- record.create and record.update ----------------------------------------------------------

@pytest.fixture
def desk(apply_metadata, make_entity, make_user, loom_app):
    """A ticket entity; an agent may create and update tickets but only read their
    priority, a viewer may only read them."""
    apply_metadata(
        make_entity("ticket", [
            {"name": "title", "type": "string", "required": True, "max_length": 40},
            {"name": "code", "type": "string", "unique": True},
            {"name": "priority", "type": "integer", "min": 1, "max": 5},
            {"name": "status", "type": "select", "options": [{"value": "open"}, {"value": "closed"}],
             "default": "open"},
        ], title_field="title"),
        {"kind": "role", "name": "agent", "permissions": {
            "ticket": {"actions": ["read", "create", "update"], "fields": {"*": "write", "priority": "read"}}}},
        {"kind": "role", "name": "viewer", "permissions": {"ticket": {"actions": ["read"]}}},
    )
    make_user("agent", roles=["agent"])
    make_user("viewer", roles=["viewer"])
    identity = loom_app.extensions["loom"].identity
    return {name: identity.principal_for(name) for name in ("agent", "viewer")}


def tickets(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT id, title, priority, status, version FROM e_ticket "
                                                      "ORDER BY id")).mappings()]


def audited(engine, where: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT action, actor, record_id, outcome FROM loom_audit "
                                                       f"WHERE entity = 'ticket' AND {where} ORDER BY seq"))]


def test_record_create_writes_as_the_principal_and_is_audited_as_that_user(desk, loom_app, loom_engine):
    made = records.create(call({"entity": "ticket", "values": {"title": "Printer on fire", "code": "T-1"}},
                               app=loom_app, principal=desk["agent"], settings={}))
    assert set(made) == {"id", "version"} and made["version"] == 1
    [row] = tickets(loom_engine)
    assert (row["id"], row["title"], row["status"]) == (made["id"], "Printer on fire", "open")
    assert audited(loom_engine, "action = 'record.create'") == [("record.create", "agent", made["id"], "ok")]


def test_record_create_refused_by_the_role_is_permanent_and_writes_nothing(desk, loom_app, loom_engine):
    with pytest.raises(PermanentFailure) as failure:
        records.create(call({"entity": "ticket", "values": {"title": "Sneaky"}}, app=loom_app,
                            principal=desk["viewer"], settings={}))
    assert "403" in str(failure.value) and "create" in str(failure.value)
    assert tickets(loom_engine) == []
    # the refusal is in the audit log, as the viewer
    assert [(a, who, outcome) for a, who, _id, outcome in audited(loom_engine, "outcome = 'denied'")] == [
        ("record.create", "viewer", "denied")]


def test_invalid_values_are_permanent_and_name_each_field(desk, loom_app, loom_engine):
    with pytest.raises(PermanentFailure) as failure:
        records.create(call({"entity": "ticket", "values": {"title": "x" * 41, "status": "lost"}}, app=loom_app,
                            principal=desk["agent"], settings={}))
    message = str(failure.value)
    assert "422" in message and "title:" in message and "status:" in message
    assert {e["field"] for e in failure.value.errors} == {"title", "status"}
    assert tickets(loom_engine) == []


def test_a_duplicate_of_a_unique_value_is_permanent(desk, loom_app, loom_engine):
    arguments = {"entity": "ticket", "values": {"title": "One", "code": "T-9"}}
    records.create(call(arguments, app=loom_app, principal=desk["agent"], settings={}))
    with pytest.raises(PermanentFailure, match="code"):
        records.create(call(arguments, app=loom_app, principal=desk["agent"], settings={}))
    assert len(tickets(loom_engine)) == 1


def test_record_update_takes_an_id_rendered_as_text(desk, loom_app, loom_engine):
    made = records.create(call({"entity": "ticket", "values": {"title": "Slow laptop"}}, app=loom_app,
                               principal=desk["agent"], settings={}))
    changed = records.update(call({"entity": "ticket", "id": str(made["id"]), "values": {"status": "closed"}},
                                  app=loom_app, principal=desk["agent"], settings={}))
    assert changed == {"id": made["id"], "version": 2}
    assert tickets(loom_engine)[0]["status"] == "closed"
    assert audited(loom_engine, "action = 'record.update'") == [("record.update", "agent", made["id"], "ok")]


def test_record_update_of_a_field_the_role_may_only_read_is_refused(desk, loom_app, loom_engine):
    made = records.create(call({"entity": "ticket", "values": {"title": "Keyboard"}}, app=loom_app,
                               principal=desk["agent"], settings={}))
    with pytest.raises(PermanentFailure) as failure:
        records.update(call({"entity": "ticket", "id": made["id"], "values": {"priority": 1, "status": "closed"}},
                            app=loom_app, principal=desk["agent"], settings={}))
    assert "priority" in str(failure.value) and "403" in str(failure.value)
    [row] = tickets(loom_engine)
    assert (row["priority"], row["status"], row["version"]) == (None, "open", 1)


def test_record_update_by_a_read_only_role_or_of_a_missing_record_is_permanent(desk, loom_app, loom_engine):
    made = records.create(call({"entity": "ticket", "values": {"title": "Mouse"}}, app=loom_app,
                               principal=desk["agent"], settings={}))
    with pytest.raises(PermanentFailure, match="update"):
        records.update(call({"entity": "ticket", "id": made["id"], "values": {"title": "Rat"}}, app=loom_app,
                            principal=desk["viewer"], settings={}))
    assert tickets(loom_engine)[0]["title"] == "Mouse"
    with pytest.raises(PermanentFailure, match="404"):
        records.update(call({"entity": "ticket", "id": made["id"] + 100, "values": {"title": "Rat"}}, app=loom_app,
                            principal=desk["agent"], settings={}))
    for bad_id in ("12a", -3, None, True):
        with pytest.raises(PermanentFailure, match="id must be"):
            records.update(call({"entity": "ticket", "id": bad_id, "values": {}}, app=loom_app,
                                principal=desk["agent"], settings={}))
    with pytest.raises(PermanentFailure, match="no entity named 'tiket'"):
        records.create(call({"entity": "tiket", "values": {}}, app=loom_app, principal=desk["agent"], settings={}))


def test_a_write_that_met_another_one_is_tried_again(desk, loom_app, loom_engine, monkeypatch):
    """PostgreSQL ends one of two transactions that meet head-on; the record service
    refuses that write as a write_conflict, which a retry mends."""
    made = records.create(call({"entity": "ticket", "values": {"title": "Chair"}}, app=loom_app,
                               principal=desk["agent"], settings={}))

    def met_another(self, record_id, data, **kwargs):
        raise Conflict("another change to the same ticket records was being saved at the same moment",
                       code="write_conflict")

    monkeypatch.setattr(RecordService, "update", met_another)
    with pytest.raises(Conflict) as failure:
        records.update(call({"entity": "ticket", "id": made["id"], "values": {"title": "Desk"}}, app=loom_app,
                            principal=desk["agent"], settings={}))
    assert not isinstance(failure.value, PermanentFailure)


# -- actions plugins add ----------------------------------------------------------------------

def push_order(call):
    return {"pushed": call.arguments["order"]}


def push_elsewhere(call):
    return None


class Erp:
    @loom.hookimpl
    def plugin_settings_schema(self):
        return ("erp", {"type": "object", "properties": {"endpoint": {"type": "string"}}})

    @loom.hookimpl
    def rule_actions(self):
        return [loom.Action("erp.push_order", push_order, description="Push an order to the ERP")]


class Rival:
    @loom.hookimpl
    def rule_actions(self):
        return [loom.Action("erp.push_order", push_elsewhere)]


class Hijacker:
    @loom.hookimpl
    def rule_actions(self):
        return [loom.Action("http.request", push_elsewhere)]


class Confused:
    @loom.hookimpl
    def rule_actions(self):
        return [("erp.push", push_order)]


def test_plugin_actions_are_registered_under_their_plugin_and_a_taken_name_stops_the_load():
    from loom.integrations.actions import ActionError, unregister_action
    from loom.plugins import plugin_manager

    try:
        plugin_manager([Erp()], discover=False)
        registered = action("erp.push_order")
        assert registered.plugin == "erp" and registered.description == "Push an order to the ERP"
        assert registered.function()(call({"order": 5})) == {"pushed": 5}
        # the same plugin loaded again (another app in the process) is no clash
        plugin_manager([Erp()], discover=False)
        with pytest.raises(ActionError) as clash:
            plugin_manager([Rival()], discover=False)
        assert "'erp.push_order'" in str(clash.value) and "Rival" in str(clash.value) and "erp" in str(clash.value)
        assert action("erp.push_order").function() is push_order
        with pytest.raises(ActionError, match="plugin Hijacker is already registered by loom"):
            plugin_manager([Hijacker()], discover=False)
        assert action("http.request").plugin == "loom"
        with pytest.raises(ActionError, match="must return loom.Action objects"):
            plugin_manager([Confused()], discover=False)
    finally:
        unregister_action("erp.push_order")
