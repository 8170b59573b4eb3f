"""The outbox reader: plugins' consumers get each committed event once it is due; a
failure is retried with a growing wait and given up after several attempts; deliverers
running at once never hand one event out twice."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import loom
from loom.db import utcnow, write_transaction
from loom.events import emit
from loom.plugins import plugin_manager
from loom.plugins.outbox import FIRST_BACKOFF, MAX_ATTEMPTS, backoff, deliver_pending


class Recorder:
    """Records every event it consumes; fails while ``failing`` is set."""

    def __init__(self, pattern="record.*"):
        self.pattern = pattern
        self.seen = []
        self.failing = False

    @loom.hookimpl
    def outbox_consumers(self):
        return [(self.pattern, self.consume)]

    def consume(self, event):
        self.seen.append((event.id, event.topic, event.payload, event.attempts))
        if self.failing:
            raise ConnectionError("ERP is down")


def add_event(engine, topic="record.created", **payload) -> int:
    with engine.begin() as conn:
        emit(conn, topic=topic, actor="test", payload=payload, entity="thing", record_id=1)
        return conn.execute(sa.text("SELECT max(id) FROM loom_outbox")).scalar()


def state(engine, event_id) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT status, attempts, last_error, available_at FROM loom_outbox "
                                         "WHERE id = :id"), {"id": event_id}).mappings().one())


def test_outbox_consumers_get_the_events_their_pattern_matches(loom_engine):
    records, metadata = Recorder("record.*"), Recorder("metadata.published")
    manager = plugin_manager([records, metadata], discover=False)
    created = add_event(loom_engine, "record.created", name="a")
    published = add_event(loom_engine, "metadata.published", version=2)
    other = add_event(loom_engine, "user.created")
    report = deliver_pending(loom_engine, manager)
    assert report.delivered == [created, published, other]
    assert records.seen == [(created, "record.created", {"name": "a"}, 0)]
    assert metadata.seen == [(published, "metadata.published", {"version": 2}, 0)]
    assert {state(loom_engine, i)["status"] for i in (created, published, other)} == {"delivered"}
    assert deliver_pending(loom_engine, manager).claimed == 0  # delivered once


def test_a_record_change_reaches_a_consumer_after_commit(loom_engine, loom_client, apply_metadata, make_entity):
    recorder = Recorder("record.created")
    apply_metadata(make_entity("thing", [{"name": "name", "type": "string"}]))
    record = loom_client.post("/api/v1/thing", json={"name": "widget"}).get_json()["data"]
    deliver_pending(loom_engine, plugin_manager([recorder], discover=False))
    [(_, topic, payload, _)] = recorder.seen
    assert topic == "record.created" and payload["record"]["name"] == "widget"
    assert payload["record"]["id"] == record["id"]


def test_a_failing_consumer_gets_the_event_again_later_and_it_dies_in_the_end(loom_engine):
    recorder = Recorder()
    recorder.failing = True
    manager = plugin_manager([recorder], discover=False)
    event = add_event(loom_engine)
    now = utcnow()
    report = deliver_pending(loom_engine, manager, now=now)
    assert report.retried == [event]
    after = state(loom_engine, event)
    assert after["status"] == "pending" and after["attempts"] == 1
    assert "Recorder: ConnectionError: ERP is down" in after["last_error"]
    assert deliver_pending(loom_engine, manager, now=now + FIRST_BACKOFF / 2).claimed == 0  # not due yet
    for attempt in range(2, MAX_ATTEMPTS + 1):
        now += backoff(attempt - 1)
        deliver_pending(loom_engine, manager, now=now)
    assert state(loom_engine, event)["status"] == "dead"
    assert [seen[3] for seen in recorder.seen] == list(range(MAX_ATTEMPTS))
    assert deliver_pending(loom_engine, manager, now=now + dt.timedelta(days=1)).claimed == 0
    assert backoff(1) == FIRST_BACKOFF and backoff(2) == 2 * FIRST_BACKOFF and backoff(30) == dt.timedelta(hours=1)


def test_what_a_consumer_wrote_commits_with_the_delivery_or_rolls_back_with_its_failure(loom_engine):
    """A consumer's own writes join the delivery's transaction (as a savepoint)."""
    class Writer:
        def __init__(self):
            self.fail = True

        @loom.hookimpl
        def outbox_consumers(self):
            return [("order.paid", self.consume)]

        def consume(self, event):
            with write_transaction(loom_engine) as conn:
                emit(conn, topic="invoice.requested", actor="system:writer", payload={"order": event.payload["n"]})
            if self.fail:
                raise RuntimeError("after writing")

    writer = Writer()
    manager = plugin_manager([writer], discover=False)
    event = add_event(loom_engine, "order.paid", n=1)

    def follow_ups():
        with loom_engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM loom_outbox WHERE topic = 'invoice.requested'")).scalar()

    deliver_pending(loom_engine, manager)
    assert follow_ups() == 0 and state(loom_engine, event)["attempts"] == 1
    writer.fail = False
    deliver_pending(loom_engine, manager, now=utcnow() + dt.timedelta(minutes=5))
    assert follow_ups() == 1 and state(loom_engine, event)["status"] == "delivered"


def test_two_deliverers_at_once_never_deliver_an_event_twice(loom_engine):
    """PostgreSQL: the second skips the rows the first holds; SQLite: it waits for the
    first's write lock, then finds them delivered."""
    release = threading.Event()
    calls: list[int] = []

    class Slow:
        @loom.hookimpl
        def outbox_consumers(self):
            return [("*", self.consume)]

        def consume(self, event):
            calls.append(event.id)
            if event.id == first:
                release.wait(10)

    manager = plugin_manager([Slow()], discover=False)
    first, second = add_event(loom_engine), add_event(loom_engine)
    reports = {}
    a = threading.Thread(target=lambda: reports.setdefault("a", deliver_pending(loom_engine, manager, limit=1)))
    b = threading.Thread(target=lambda: reports.setdefault("b", deliver_pending(loom_engine, manager)))
    a.start()
    while first not in calls:
        time.sleep(0.01)
    b.start()
    time.sleep(0.3)
    release.set()
    a.join(10)
    b.join(10)
    assert sorted(calls) == [first, second]
    assert reports["a"].delivered == [first] and reports["b"].delivered == [second]


@pytest.fixture
def outbox_cli(loom_engine, tmp_path, monkeypatch):
    from loom.app import create_app
    from loom.cli import main

    recorder = Recorder()
    monkeypatch.setattr(main, "create_app", lambda: create_app({
        "ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "cli"), "SECRET_KEY": "cli",
        "PLUGINS": [recorder], "DISCOVER_PLUGINS": False}))
    return lambda *args: CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_loom_outbox_deliver(outbox_cli, loom_engine):
    add_event(loom_engine)
    add_event(loom_engine)
    result = outbox_cli("outbox", "deliver", "--limit", "1")
    assert result.exit_code == 0 and result.output == "1 event(s): 1 delivered, 0 to try again, 0 dead\n"
    assert outbox_cli("outbox", "deliver").output.startswith("1 event(s): 1 delivered")
