"""A remote system down for the whole run, then back: record changes made meanwhile are
all delivered once it is back, each once (one idempotency key each), after retries with
growing waits; nothing is lost while it is down, and every attempt is in the audit log.
The same rules and changes end the same whichever path made the change."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from loom import record_service
from loom.audit.models import audit_log
from loom.principal import Principal

SYSTEM = Principal.system("test")
TICKET = {"kind": "entity", "name": "incident", "title_field": "summary", "fields": [
    {"name": "summary", "type": "string", "required": True},
    {"name": "severity", "type": "select", "options": [{"value": "low"}, {"value": "high"}]},
]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Remote:
    """The other system: down until ``start``, then answering 200 and counting each key."""

    def __init__(self, port: int):
        self.port = port
        self.keys: Counter = Counter()
        self.bodies: list[dict] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                remote.keys[self.headers["Idempotency-Key"]] += 1
                remote.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def remote():
    server = Remote(free_port())
    yield server
    server.stop()


def test_changes_made_while_the_remote_is_down_all_arrive_once_when_it_is_back(
        loom_app, make_user, apply_metadata, remote, run_deliveries, fake_clock, deliveries):
    make_user("bot", superuser=True)
    apply_metadata(TICKET, {"kind": "rule", "name": "page_on_call", "on": {"entity": "incident", "event": "created",
                                                                           "when": "severity == 'high'"},
                            "action": "http.request", "run_as": "bot", "retry": {"max_attempts": 10},
                            "with": {"url": f"http://127.0.0.1:{remote.port}/page",
                                     "body": {"incident": "{{ record.id }}", "summary": "{{ record.summary }}"}}})
    with loom_app.app_context():
        service = record_service("incident", SYSTEM)
        made = [service.create({"summary": f"disk full {i}", "severity": "high"}) for i in range(5)]
        made += service.bulk_create([{"summary": f"slow {i}", "severity": "high"} for i in range(5)])
        service.create({"summary": "typo", "severity": "low"})  # no delivery
    ids = sorted(r["id"] if isinstance(r, dict) else r for r in made)
    # the remote is down for four rounds: every delivery fails, waits longer each time, none is lost
    waits = []
    for _ in range(4):
        report = run_deliveries()
        assert report.retried == 10 and report.succeeded == 0
        pending = deliveries(rule="page_on_call")
        assert len(pending) == 10 and {d["status"] for d in pending} == {"pending"}
        due = min(d["available_at"] for d in pending)
        due = due if due.tzinfo else due.replace(tzinfo=dt.UTC)
        waits.append(due - fake_clock.now)
        fake_clock.set(max(d["available_at"] if d["available_at"].tzinfo else
                           d["available_at"].replace(tzinfo=dt.UTC) for d in pending) + dt.timedelta(seconds=1))
    assert waits[-1] > waits[0]  # the backoff grows
    remote.start()
    report = run_deliveries(until_settled=True)
    assert report.succeeded == 10
    assert sorted(int(b["incident"]) for b in remote.bodies) == ids
    assert sorted(remote.keys.values()) == [1] * 10
    assert {d["status"] for d in deliveries(rule="page_on_call")} == {"succeeded"}
    assert all([a["outcome"] for a in d["attempt_rows"]] == ["failed"] * 4 + ["succeeded"]
               for d in deliveries(rule="page_on_call"))
    with loom_app.extensions["loom"].engine.connect() as conn:
        outcomes = Counter(json.loads(r.detail)["outcome"] if isinstance(r.detail, str) else r.detail["outcome"]
                           for r in conn.execute(sa.select(audit_log.c.detail)
                                                 .where(audit_log.c.action == "delivery.attempt")))
    assert outcomes == Counter({"failed": 40, "succeeded": 10})
