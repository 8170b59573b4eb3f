"""The worker: a due delivery runs once, as its rule's user, with only what that user may
read; failures come back after a growing wait and die after the last attempt; a worker
that dies mid-delivery has it taken over once its lease runs out, and its late outcome is
dropped; workers running at once never run one delivery twice. Every attempt is recorded
and audited."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import loom
from loom.app import create_app
from loom.audit.models import audit_log
from loom.db import create_engine, utcnow
from loom.events import emit
from loom.integrations import execute
from loom.integrations import worker as worker_module
from loom.integrations.actions import Action, PermanentFailure, register_action, unregister_action
from loom.integrations.context import running
from loom.integrations.execute import Outcome
from loom.integrations.models import attempts, deliveries, job_schedules
from loom.integrations.worker import Worker, claim, finish, notify, request_stop, run_due_jobs
from loom.principal import Principal

LEASE = dt.timedelta(minutes=5)
SYSTEM = Principal.system("test")
GADGET = {"kind": "entity", "name": "gadget", "title_field": "label", "fields": [
    {"name": "label", "type": "string"},
    {"name": "price", "type": "integer"},
    {"name": "cost", "type": "integer"},
]}
#: may read gadgets, but not their cost
CLERK = {"kind": "role", "name": "clerk",
         "permissions": {"gadget": {"actions": ["read"], "scope": "all", "fields": {"cost": "none"}}}}


class Calls:
    """An action registered for one test: records each call, answers as told."""

    def __init__(self, name: str):
        self.name = name
        self.calls = []
        self.lock = threading.Lock()
        self.answer = lambda call: {"ok": call.delivery_id}

    def __call__(self, call):
        with self.lock:
            self.calls.append(call)
        return self.answer(call)

    def per_delivery(self) -> Counter:
        return Counter(call.delivery_id for call in self.calls)


@pytest.fixture
def make_action():
    names = []

    def make(arguments=None) -> Calls:
        name = f"test.act_{uuid.uuid4().hex[:8]}"
        calls = Calls(name)
        register_action(Action(name, calls, plugin="loom", arguments=arguments))
        names.append(name)
        return calls
    yield make
    for name in names:
        unregister_action(name)


@pytest.fixture
def bot(make_user):
    make_user("bot", superuser=True)
    return "bot"


def add_delivery(app, action: str, *, run_as: str = "bot", with_=None, record=None, changes=None,
                 entity=None, max_attempts: int = 3, backoff: str = "exponential", backoff_seconds: int = 30,
                 available_at: dt.datetime | None = None, rule: str = "push") -> int:
    context = {"record": record or {}, "with": with_ or {}, "chain": []}
    if changes is not None:
        context["changes"] = changes
    with app.extensions["loom"].engine.begin() as conn:
        return conn.execute(deliveries.insert().values(
            rule=rule, trigger="record.updated", action=action, plugin="loom", entity=entity,
            record_id=(record or {}).get("id"), context=context, run_as=run_as, depth=0,
            idempotency_key=f"{rule}:{uuid.uuid4().hex}", status="pending", attempts=0,
            max_attempts=max_attempts, backoff=backoff, backoff_seconds=backoff_seconds,
            available_at=available_at or utcnow() - dt.timedelta(seconds=1),
        )).inserted_primary_key[0]


def delivery(app, delivery_id: int) -> dict:
    with app.extensions["loom"].engine.connect() as conn:
        return dict(conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).mappings().one())


def attempt_rows(app, delivery_id: int) -> list[dict]:
    with app.extensions["loom"].engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(attempts).where(attempts.c.delivery_id == delivery_id)
                                              .order_by(attempts.c.attempt)).mappings()]


def audited(app, delivery_id: int) -> list[dict]:
    with app.extensions["loom"].engine.connect() as conn:
        rows = conn.execute(sa.select(audit_log).where(audit_log.c.action == "delivery.attempt")
                            .order_by(audit_log.c.seq)).mappings().all()
    entries = [{**r, "detail": json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"]}
               for r in rows]
    return [e for e in entries if e["detail"]["delivery"] == delivery_id]


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def test_a_due_delivery_runs_once_as_its_rule_user_and_is_recorded_and_audited(loom_app, bot, make_action):
    act = make_action()
    due = add_delivery(loom_app, act.name, with_={"label": "{{ record.label }}", "n": "{{ record.price * 2 }}",
                                                  "who": "{{ delivery.attempt }}/{{ rule }}"},
                       record={"id": 7, "label": "Widget", "price": 21})
    later = add_delivery(loom_app, act.name, available_at=utcnow() + dt.timedelta(hours=1))
    report = Worker(loom_app).run_once()
    assert (report.claimed, report.succeeded) == (1, 1)
    assert [call.delivery_id for call in act.calls] == [due]
    call = act.calls[0]
    assert call.arguments == {"label": "Widget", "n": 42, "who": "1/push"}
    assert call.principal.name == "bot" and call.attempt == 1 and call.rule == "push"
    assert call.idempotency_key == delivery(loom_app, due)["idempotency_key"]
    row = delivery(loom_app, due)
    assert row["status"] == "succeeded" and row["attempts"] == 1 and row["result"] == {"ok": due}
    assert row["lease_owner"] is None and row["finished_at"] is not None and row["last_error"] is None
    [attempt] = attempt_rows(loom_app, due)
    assert attempt["outcome"] == "succeeded" and attempt["finished_at"] is not None
    assert attempt["duration_ms"] >= 0 and attempt["worker"]
    [entry] = audited(loom_app, due)
    assert entry["actor"] == "bot" and entry["actor_id"] is not None and entry["outcome"] == "ok"
    assert entry["detail"]["rule"] == "push" and entry["detail"]["action"] == act.name
    assert entry["detail"]["attempt"] == 1 and entry["detail"]["outcome"] == "succeeded"
    # done is done: nothing runs it again, and the later one waits for its time
    assert Worker(loom_app).run_once().claimed == 0
    assert len(act.calls) == 1 and delivery(loom_app, later)["status"] == "pending"


def test_the_action_runs_marked_as_the_delivery(loom_app, bot, make_action):
    act = make_action()
    seen = []
    act.answer = lambda call: seen.append(running()) or "done"
    due = add_delivery(loom_app, act.name, rule="chained")
    with loom_app.extensions["loom"].engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == due).values(
            depth=2, context={"record": {}, "with": {}, "chain": ["first", "second"]}))
    Worker(loom_app).run_once()
    assert seen[0].delivery_id == due and seen[0].depth == 2
    assert seen[0].chain == ("first", "second", "chained")
    assert running() is None


def test_a_failing_action_comes_back_later_each_time_and_is_dead_after_its_last_attempt(loom_app, bot,
                                                                                           make_action):
    act = make_action()

    def down(call):
        raise ConnectionError("ERP is down")
    act.answer = down
    failing = add_delivery(loom_app, act.name, max_attempts=4, backoff_seconds=30)
    worker = Worker(loom_app)
    now = utcnow()
    waits = []
    for attempt in range(1, 4):
        report = worker.run_once(now=now)
        assert (report.claimed, report.retried) == (1, 1), attempt
        row = delivery(loom_app, failing)
        assert row["status"] == "pending" and row["attempts"] == attempt
        assert row["last_error"] == "ConnectionError: ERP is down"
        wait = aware(row["available_at"]) - now
        ceiling = dt.timedelta(seconds=30 * 2 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling, (attempt, wait)
        waits.append(wait)
        # not due before its time
        assert worker.run_once(now=now + wait - dt.timedelta(seconds=1)).claimed == 0
        now += wait
    assert waits[0] < waits[2]
    report = worker.run_once(now=now)
    assert (report.claimed, report.dead) == (1, 1)
    row = delivery(loom_app, failing)
    assert row["status"] == "dead" and row["attempts"] == 4 and row["finished_at"] is not None
    assert [a["outcome"] for a in attempt_rows(loom_app, failing)] == ["failed", "failed", "failed", "dead"]
    assert all(a["error"] == "ConnectionError: ERP is down" for a in attempt_rows(loom_app, failing))
    entries = audited(loom_app, failing)
    assert [e["detail"]["outcome"] for e in entries] == ["failed", "failed", "failed", "dead"]
    assert {e["outcome"] for e in entries} == {"error"}
    assert worker.run_once(now=now + dt.timedelta(days=1)).claimed == 0
    assert len(act.calls) == 4


def test_a_fixed_backoff_waits_the_same_each_time(loom_app, bot, make_action):
    act = make_action()
    act.answer = lambda call: 1 / 0
    failing = add_delivery(loom_app, act.name, backoff="fixed", backoff_seconds=45, max_attempts=5)
    now = utcnow()
    for _ in range(3):
        Worker(loom_app).run_once(now=now)
        assert aware(delivery(loom_app, failing)["available_at"]) - now == dt.timedelta(seconds=45)
        now += dt.timedelta(seconds=45)


def test_a_permanent_failure_is_dead_at_once(loom_app, bot, make_action):
    act = make_action()

    def refuse(call):
        raise PermanentFailure("the ERP says order 7 does not exist (404)")
    act.answer = refuse
    refused = add_delivery(loom_app, act.name, max_attempts=8)
    report = Worker(loom_app).run_once()
    assert report.dead == 1 and report.retried == 0
    row = delivery(loom_app, refused)
    assert row["status"] == "dead" and row["attempts"] == 1
    assert row["last_error"] == "the ERP says order 7 does not exist (404)"
    assert [a["outcome"] for a in attempt_rows(loom_app, refused)] == ["permanent"]
    assert audited(loom_app, refused)[0]["detail"]["error"] == row["last_error"]


def test_a_crashed_worker_s_delivery_is_taken_over_after_its_lease_and_its_late_outcome_dropped(loom_app, bot,
                                                                                                make_action):
    act = make_action()
    engine = loom_app.extensions["loom"].engine
    item = add_delivery(loom_app, act.name)
    now = utcnow()
    [claimed] = claim(engine, "crashing-worker", limit=10, lease=LEASE, now=now)
    assert claimed.id == item and claimed.attempts == 1 and claimed.status == "running"
    # while the lease stands, nobody else gets it
    assert claim(engine, "other", limit=10, lease=LEASE, now=now + LEASE - dt.timedelta(seconds=1)) == []
    later = now + LEASE + dt.timedelta(seconds=1)
    [taken] = claim(engine, "rescuer", limit=10, lease=LEASE, now=later)
    assert taken.id == item and taken.attempts == 2 and taken.lease_owner == "rescuer"
    # the first worker comes back while the rescuer runs it: too late, its outcome is dropped
    assert not finish(engine, "crashing-worker", item, Outcome("dead", "gave up"), now=later)
    assert delivery(loom_app, item)["status"] == "running" and delivery(loom_app, item)["last_error"] is None
    assert finish(engine, "rescuer", item, execute.run(loom_app, taken), now=later)
    assert len(act.calls) == 1 and act.calls[0].attempt == 2
    first, second = attempt_rows(loom_app, item)
    assert first["outcome"] == "lost" and first["worker"] == "crashing-worker"
    assert "crashing-worker" in first["error"] and "lease" in first["error"]
    assert second["outcome"] == "succeeded" and second["worker"] == "rescuer"
    # and after the rescuer finished, nothing the first worker says changes anything
    assert not finish(engine, "crashing-worker", item, Outcome("failed", "timeout"), now=later)
    row = delivery(loom_app, item)
    assert row["status"] == "succeeded" and row["last_error"] is None and row["attempts"] == 2
    assert [e["detail"]["outcome"] for e in audited(loom_app, item)] == ["lost", "succeeded"]


def test_a_worker_that_dies_on_the_last_attempt_leaves_the_delivery_dead(loom_app, bot, make_action):
    act = make_action()
    engine = loom_app.extensions["loom"].engine
    item = add_delivery(loom_app, act.name, max_attempts=1)
    now = utcnow()
    claim(engine, "dies", limit=1, lease=LEASE, now=now)
    assert Worker(loom_app).run_once(now=now + 2 * LEASE).claimed == 0
    row = delivery(loom_app, item)
    assert row["status"] == "dead" and "lease" in row["last_error"] and act.calls == []
    assert [a["outcome"] for a in attempt_rows(loom_app, item)] == ["lost"]


def test_a_worker_finishing_within_its_lease_is_not_overtaken(loom_app, bot, make_action):
    act = make_action()
    engine = loom_app.extensions["loom"].engine
    item = add_delivery(loom_app, act.name)
    now = utcnow()
    claim(engine, "slow", limit=1, lease=LEASE, now=now)
    assert finish(engine, "slow", item, Outcome("succeeded", result=[1, 2]), now=now + LEASE / 2)
    assert delivery(loom_app, item)["result"] == [1, 2]
    # and a finish by a worker that never claimed it is refused
    other = add_delivery(loom_app, act.name)
    claim(engine, "owner", limit=1, lease=LEASE, now=now)
    assert not finish(engine, "intruder", other, Outcome("succeeded"), now=now)
    assert delivery(loom_app, other)["status"] == "running"


@pytest.mark.parametrize("workers", [2])
def test_workers_claiming_at_once_run_each_of_200_deliveries_exactly_once(loom_app, loom_database_url, bot,
                                                                         make_action, tmp_path, workers):
    act = make_action()

    def slow(call):
        time.sleep(0.001)
        return None
    act.answer = slow
    ids = [add_delivery(loom_app, act.name) for _ in range(200)]
    # each worker with an app, engine and connections of its own, as in another process
    apps = [loom_app] + [create_app({"ENGINE": create_engine(loom_database_url), "INSTANCE_PATH": str(tmp_path / f"w{i}"),
                                     "SECRET_KEY": "test-secret", "DISCOVER_PLUGINS": False})
                         for i in range(1, workers)]
    start = threading.Barrier(workers)
    reports = {}

    def work(i):
        w = Worker(apps[i], batch=5, housekeeping=False)
        start.wait()
        reports[i] = w.run_due()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for app in apps[1:]:
        app.extensions["loom"].engine.dispose()
    counts = act.per_delivery()
    assert set(counts) == set(ids) and set(counts.values()) == {1}
    assert sum(r.succeeded for r in reports.values()) == 200 and sum(r.dropped for r in reports.values()) == 0
    assert all(r.claimed > 0 for r in reports.values())  # both took part
    with loom_app.extensions["loom"].engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)
                            .where(deliveries.c.status != "succeeded")).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(attempts)).scalar() == 200


def test_a_rule_user_that_does_not_exist_makes_the_delivery_dead(loom_app, make_action):
    act = make_action()
    item = add_delivery(loom_app, act.name, run_as="ghost")
    Worker(loom_app).run_once()
    row = delivery(loom_app, item)
    assert row["status"] == "dead" and row["last_error"] == "the rule's user ghost does not exist"
    assert act.calls == []
    [entry] = audited(loom_app, item)
    assert entry["actor"] == "ghost" and entry["actor_id"] is None and entry["outcome"] == "error"


def test_a_deactivated_rule_user_makes_the_delivery_dead(loom_app, make_user, make_action):
    act = make_action()
    user_id = make_user("former", superuser=True)
    loom_app.extensions["loom"].identity.update_user(user_id, {"is_active": False}, actor="test")
    item = add_delivery(loom_app, act.name, run_as="former", max_attempts=8)
    Worker(loom_app).run_once()
    row = delivery(loom_app, item)
    assert row["status"] == "dead" and row["attempts"] == 1
    assert row["last_error"] == "the rule's user former is deactivated"
    assert act.calls == []


@pytest.fixture
def gadgets(loom_app, make_user, apply_metadata):
    apply_metadata(GADGET, CLERK)
    make_user("clerk", roles=["clerk"])
    make_user("nobody")
    with loom_app.app_context():
        return loom.record_service("gadget", SYSTEM).create({"label": "Widget", "price": 30, "cost": 12})


def test_the_mapping_reads_only_what_the_rule_user_may_read(loom_app, gadgets, make_action):
    act = make_action()
    record = {**gadgets}
    readable = add_delivery(loom_app, act.name, run_as="clerk", entity="gadget", record=record,
                            changes={"price": [20, 30], "cost": [10, 12]},
                            with_={"label": "{{ record.label }}", "price": "{{ record.price }}"})
    hidden = add_delivery(loom_app, act.name, run_as="clerk", entity="gadget", record=record,
                          with_={"margin": "{{ record.price - record.cost }}"})
    Worker(loom_app).run_once()
    assert delivery(loom_app, readable)["status"] == "succeeded"
    [call] = act.calls
    assert call.arguments == {"label": "Widget", "price": 30}
    assert "cost" not in call.context["record"] and call.context["record"]["price"] == 30
    assert call.context["changes"] == {"price": [20, 30]}
    row = delivery(loom_app, hidden)
    assert row["status"] == "dead" and "with.margin" in row["last_error"]
    assert "12" not in row["last_error"]


def test_a_rule_user_who_may_not_read_the_entity_sees_only_the_record_id(loom_app, gadgets, make_action):
    act = make_action()
    ok = add_delivery(loom_app, act.name, run_as="nobody", entity="gadget", record=gadgets,
                      with_={"id": "{{ record.id }}"})
    refused = add_delivery(loom_app, act.name, run_as="nobody", entity="gadget", record=gadgets,
                           with_={"label": "{{ record.label }}"})
    Worker(loom_app).run_once()
    assert delivery(loom_app, ok)["status"] == "succeeded"
    assert act.calls[0].arguments == {"id": gadgets["id"]} and act.calls[0].context["record"] == {"id": gadgets["id"]}
    assert delivery(loom_app, refused)["status"] == "dead"


def test_an_unknown_action_or_arguments_against_its_schema_are_permanent(loom_app, bot, make_action):
    act = make_action(arguments={"type": "object", "required": ["order"],
                                 "properties": {"order": {"type": "integer"}}})
    unknown = add_delivery(loom_app, "test.nobody_registered_this")
    wrong = add_delivery(loom_app, act.name, with_={"order": "{{ record.label }}"}, record={"id": 1, "label": "x"})
    missing = add_delivery(loom_app, act.name, with_={})
    right = add_delivery(loom_app, act.name, with_={"order": "{{ record.id }}"}, record={"id": 5})
    Worker(loom_app).run_once()
    assert delivery(loom_app, unknown)["last_error"].startswith("there is no action named test.nobody_registered_this")
    assert delivery(loom_app, wrong)["status"] == "dead"
    assert delivery(loom_app, wrong)["last_error"].startswith(f"argument 'order' of action {act.name}: 'x' is not")
    assert delivery(loom_app, missing)["last_error"] == f"argument 'order' of action {act.name}: is required"
    assert delivery(loom_app, right)["status"] == "succeeded"
    assert [call.arguments for call in act.calls] == [{"order": 5}]


def test_a_result_json_cannot_hold_is_kept_as_text(loom_app, bot, make_action):
    act = make_action()
    act.answer = lambda call: {1, 2}
    item = add_delivery(loom_app, act.name)
    Worker(loom_app).run_once()
    assert delivery(loom_app, item)["result"] == "{1, 2}"


def test_the_action_gets_its_plugin_settings(loom_app, bot):
    class Erp:
        @loom.hookimpl
        def plugin_settings_schema(self):
            return ("erp_test", {"type": "object", "properties": {"token": {"type": "string", "secret": True}}})

    app = create_app({"ENGINE": loom_app.extensions["loom"].engine, "INSTANCE_PATH": loom_app.instance_path,
                      "SECRET_KEY": "test-secret", "DISCOVER_PLUGINS": False, "PLUGINS": [Erp()]})
    app.extensions["loom"].settings.update("erp_test", {"token": "t0ken"}, actor="test")
    seen = []
    register_action(Action("erp_test.push", lambda call: seen.append((call.settings, call.arguments)), plugin="erp_test"))
    try:
        add_delivery(app, "erp_test.push", with_={"auth": "Bearer {{ settings.token }}"})
        Worker(app).run_once()
    finally:
        unregister_action("erp_test.push")
    assert seen == [({"token": "t0ken"}, {"auth": "Bearer t0ken"})]


def test_notify_wakes_a_waiting_worker_at_once(loom_app, bot, make_action):
    act = make_action()
    stop = threading.Event()
    thread = threading.Thread(target=Worker(loom_app, housekeeping=False).run_forever, args=(stop, 60.0))
    thread.start()
    try:
        time.sleep(0.3)  # it has looked once and waits for a minute
        add_delivery(loom_app, act.name)
        notify()
        deadline = time.monotonic() + 10
        while not act.calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(act.calls) == 1
    finally:
        request_stop(stop)
        thread.join(10)
    assert not thread.is_alive()


class Clock:
    """A plugin with one job every ten minutes and one at 08:00 every day."""

    def __init__(self):
        self.runs = Counter()

    @loom.hookimpl
    def scheduled_jobs(self):
        return [("clock.tick", dt.timedelta(minutes=10), lambda: self.runs.update(["tick"])),
                ("clock.morning", "0 8 * * *", lambda: self.runs.update(["morning"])),
                ("clock.broken", 3600, lambda: 1 / 0)]


@pytest.fixture
def clock_app(loom_engine, tmp_path):
    clock = Clock()
    app = create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "clock"), "SECRET_KEY": "t",
                      "DISCOVER_PLUGINS": False, "PLUGINS": [clock], "TIMEZONE": "Asia/Shanghai"})
    return app, clock


def test_scheduled_jobs_run_when_due_and_once_per_due_time(clock_app):
    app, clock = clock_app
    # 23:30 UTC is 07:30 in Shanghai: the morning job is half an hour away
    now = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)
    assert sorted(run_due_jobs(app, now=now)) == ["clock.broken", "clock.tick"]
    assert run_due_jobs(app, now=now) == [] and clock.runs == Counter(tick=1)
    assert run_due_jobs(app, now=now + dt.timedelta(minutes=9)) == []
    assert run_due_jobs(app, now=now + dt.timedelta(minutes=10)) == ["clock.tick"]
    assert run_due_jobs(app, now=now + dt.timedelta(minutes=31)) == ["clock.tick", "clock.morning"]
    assert clock.runs == Counter(tick=3, morning=1)
    with app.extensions["loom"].engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(job_schedules))}
    assert rows["clock.broken"].last_outcome == "error" and "ZeroDivisionError" in rows["clock.broken"].last_error
    assert rows["clock.tick"].last_outcome == "ok"
    # looking when nothing is due writes nothing
    statements = []
    engine = app.extensions["loom"].engine
    listener = lambda conn, cursor, statement, *args: statements.append(statement.upper())  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listener)
    try:
        assert run_due_jobs(app, now=now + dt.timedelta(minutes=32)) == []
    finally:
        sa.event.remove(engine, "before_cursor_execute", listener)
    assert statements and not [s for s in statements if s.startswith(("BEGIN IMMEDIATE", "UPDATE", "INSERT"))]
    assert aware(rows["clock.morning"].next_run_at) == dt.datetime(2026, 12, 3, 0, 0, tzinfo=dt.UTC)


def test_two_workers_seeing_a_job_due_at_once_run_it_once(clock_app, loom_database_url, tmp_path):
    app, clock = clock_app
    now = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)
    other = create_app({"ENGINE": create_engine(loom_database_url), "INSTANCE_PATH": str(tmp_path / "other"),
                        "SECRET_KEY": "t", "DISCOVER_PLUGINS": False, "PLUGINS": [clock]})
    barrier = threading.Barrier(2)
    ran = []

    def look(a):
        barrier.wait()
        for minute in range(0, 40, 10):
            ran.extend(run_due_jobs(a, now=now + dt.timedelta(minutes=minute)))

    threads = [threading.Thread(target=look, args=(a,)) for a in (app, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    other.extensions["loom"].engine.dispose()
    assert Counter(ran)["clock.tick"] == clock.runs["tick"] <= 4
    assert clock.runs["tick"] >= 1


def test_run_due_hands_out_outbox_events(loom_app, bot, make_action):
    seen = []

    class Consumer:
        @loom.hookimpl
        def outbox_consumers(self):
            return [("test.*", lambda event: seen.append(event.topic))]

    app = create_app({"ENGINE": loom_app.extensions["loom"].engine, "INSTANCE_PATH": loom_app.instance_path,
                      "SECRET_KEY": "test-secret", "DISCOVER_PLUGINS": False, "PLUGINS": [Consumer()]})
    Worker(app).run_due()  # the events of making the test's user
    seen.clear()
    with app.extensions["loom"].engine.begin() as conn:
        emit(conn, topic="test.happened", actor="test", payload={})
    assert Worker(app, housekeeping=False).run_due().events == 0 and seen == []
    report = Worker(app).run_due()
    assert report.events == 1 and seen == ["test.happened"]


@pytest.fixture
def worker_cli(loom_app, monkeypatch):
    from loom.cli import main

    monkeypatch.setattr(main, "create_app", lambda: loom_app)
    return lambda *args: CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_loom_worker_once_runs_what_is_due_and_exits(worker_cli, loom_app, bot, make_action):
    act = make_action()
    ok = [add_delivery(loom_app, act.name) for _ in range(3)]
    later = add_delivery(loom_app, act.name, available_at=utcnow() + dt.timedelta(hours=1))
    result = worker_cli("worker", "--once", "--concurrency", "2")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("3 delivery(ies): 3 succeeded, 0 to try again, 0 dead;")
    assert act.per_delivery() == Counter(ok)
    assert delivery(loom_app, later)["status"] == "pending"
    assert worker_cli("worker", "--once").output.startswith("0 delivery(ies)")
    assert "--concurrency" in worker_cli("worker", "--help").output


def test_loom_worker_stops_on_sigterm_after_finishing_its_delivery(loom_app, bot, make_action, monkeypatch):
    import os
    import signal

    from loom.cli import main

    act = make_action()
    started, ended = threading.Event(), []

    def long(call):
        started.set()
        time.sleep(0.5)
        ended.append(call.delivery_id)
        return "done"
    act.answer = long
    item = add_delivery(loom_app, act.name)
    monkeypatch.setattr(main, "create_app", lambda: loom_app)
    threading.Thread(target=lambda: started.wait(20) and os.kill(os.getpid(), signal.SIGTERM), daemon=True).start()
    result = CliRunner().invoke(main, ["worker", "--concurrency", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.endswith("worker stopped\n")
    assert ended == [item] and delivery(loom_app, item)["status"] == "succeeded"


def test_the_in_process_worker_starts_and_stops_with_its_process(loom_app, bot, make_action):
    act = make_action()
    stoppers = []
    handle = worker_module.start_in_process(loom_app, registrar=stoppers.append)
    try:
        add_delivery(loom_app, act.name)
        notify()
        deadline = time.monotonic() + 10
        while not act.calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(act.calls) == 1
    finally:
        assert stoppers == [handle.stop]
        assert handle.stop(10)


def test_a_record_change_that_triggers_a_rule_is_delivered_at_once_by_a_waiting_worker(loom_app, apply_metadata,
                                                                                       make_user, make_action):
    act = make_action()
    make_user("clerk", roles=["clerk"])
    apply_metadata(GADGET, CLERK, {
        "kind": "rule", "name": "gadget_priced", "on": {"entity": "gadget", "event": "created"},
        "action": act.name, "run_as": "clerk", "with": {"label": "{{ record.label }}", "price": "{{ record.price }}"}})
    stop = threading.Event()
    thread = threading.Thread(target=Worker(loom_app).run_forever, args=(stop, 60.0))
    thread.start()
    try:
        time.sleep(0.3)
        with loom_app.app_context():
            made = loom.record_service("gadget", SYSTEM).create({"label": "Sprocket", "price": 9, "cost": 4})
        deadline = time.monotonic() + 10
        while not act.calls and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        request_stop(stop)
        thread.join(10)
    [call] = act.calls
    assert call.arguments == {"label": "Sprocket", "price": 9} and call.principal.name == "clerk"
    assert call.context["record"]["id"] == made["id"] and "cost" not in call.context["record"]


def _serve(tmp_path, env: dict[str, str]):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / f"serve-{port}.log"
    command = [sys.executable, "-c", "import sys; from loom.cli import main; sys.argv[0] = 'loom'; main()",
               "serve", "--port", str(port), "--threads", "2"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until it answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return process, log


@pytest.mark.parametrize("switch", ["on", "off"])
def test_loom_serve_runs_a_worker_unless_it_is_turned_off(loom_database_url, tmp_path, monkeypatch, switch):
    import os
    import signal

    from loom.cli import main

    env = {"LOOM_DATABASE_URL": loom_database_url, "LOOM_INSTANCE_PATH": str(tmp_path / "instance"),
           "LOOM_SECRET_KEY": "serve-test", "LOOM_WORKER": switch, "LOOM_WORKER_POLL_INTERVAL": "0.2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert CliRunner().invoke(main, ["init"], catch_exceptions=False).exit_code == 0
    app = create_app()
    try:
        app.extensions["loom"].identity.create_user("bot", is_superuser=True)
        # an action no process has: the served worker can only make it dead, saying so
        item = add_delivery(app, "test.only_in_the_test_process")
        process, log = _serve(tmp_path, env)
        try:
            # a served worker looks every 0.2 s: a second is five looks
            deadline = time.monotonic() + (30 if switch == "on" else 1)
            while delivery(app, item)["status"] in ("pending", "running") and time.monotonic() < deadline:
                time.sleep(0.1)
            row = delivery(app, item)
            if switch == "on":
                assert row["status"] == "dead", (row, attempt_rows(app, item), log.read_text())
                assert row["last_error"].startswith("there is no action named test.only_in_the_test_process")
                worker = attempt_rows(app, item)[0]["worker"]
                assert worker.split(":")[1] != str(os.getpid()) and ":loom-worker:" in worker
            else:
                assert row["status"] == "pending" and row["attempts"] == 0
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        app.extensions["loom"].engine.dispose()


def test_a_scheduled_rule_fires_once_per_due_time_and_its_deliveries_run(loom_app, loom_database_url, bot,
                                                                        apply_metadata, make_action, tmp_path):
    act = make_action()
    apply_metadata(GADGET, {
        "kind": "rule", "name": "dear_gadgets", "on": {"schedule": "0 8 * * *", "entity": "gadget",
                                                       "filter": "price > 10"},
        "action": act.name, "run_as": "bot", "with": {"label": "{{ record.label }}"}})
    with loom_app.app_context():
        gadgets = loom.record_service("gadget", SYSTEM)
        dear = [gadgets.create({"label": f"dear {i}", "price": 20 + i})["id"] for i in range(3)]
        gadgets.create({"label": "cheap", "price": 5})
    other = create_app({"ENGINE": create_engine(loom_database_url), "INSTANCE_PATH": str(tmp_path / "other"),
                        "SECRET_KEY": "test-secret", "DISCOVER_PLUGINS": False})
    try:
        morning = dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.UTC)
        first = Worker(loom_app).run_due(now=morning)
        assert first.rules == {} and act.calls == []  # seen for the first time: it waits for 08:00
        at_eight = morning + dt.timedelta(minutes=30, seconds=20)
        report = Worker(loom_app).run_due(now=at_eight)
        assert report.rules == {"dear_gadgets": 3} and report.succeeded == 3
        # another worker looking at the same moment, or a little later, fires nothing again
        assert Worker(other).run_due(now=at_eight).rules == {}
        assert Worker(loom_app).run_due(now=at_eight + dt.timedelta(hours=3)).rules == {}
        assert sorted(call.arguments["label"] for call in act.calls) == ["dear 0", "dear 1", "dear 2"]
        assert sorted(call.context["record"]["id"] for call in act.calls) == dear
        # the next morning, again
        assert Worker(other).run_due(now=at_eight + dt.timedelta(days=1)).rules == {"dear_gadgets": 3}
        assert len(act.calls) == 6 and len(set(call.idempotency_key for call in act.calls)) == 6
    finally:
        other.extensions["loom"].engine.dispose()


def test_a_long_action_keeps_its_delivery_by_renewing_the_lease(loom_app, bot, make_action):
    act = make_action()
    engine = loom_app.extensions["loom"].engine
    lease = dt.timedelta(seconds=1.5)
    running_now, release = threading.Event(), threading.Event()

    def long(call):
        running_now.set()
        release.wait(20)
        return "done"
    act.answer = long
    item = add_delivery(loom_app, act.name)
    thread = threading.Thread(target=Worker(loom_app, worker_id="patient", lease=lease).run_once)
    thread.start()
    try:
        assert running_now.wait(20)
        for _ in range(4):  # well past the lease, three times over
            time.sleep(1.5)
            assert claim(engine, "eager", limit=10, lease=lease) == []
            assert aware(delivery(loom_app, item)["lease_until"]) > utcnow()
    finally:
        release.set()
        thread.join(20)
    row = delivery(loom_app, item)
    assert row["status"] == "succeeded" and row["attempts"] == 1 and len(act.calls) == 1


def test_a_stopping_worker_gives_back_the_deliveries_it_claimed_but_did_not_start(loom_app, bot, make_action):
    act = make_action()
    stop = threading.Event()
    act.answer = lambda call: stop.set()
    items = [add_delivery(loom_app, act.name) for _ in range(3)]
    report = Worker(loom_app, batch=3).run_due(stop=stop)
    assert report.claimed == report.succeeded == 1 and len(act.calls) == 1
    first, *rest = items
    assert delivery(loom_app, first)["status"] == "succeeded"
    for item in rest:
        row = delivery(loom_app, item)
        assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)
        assert attempt_rows(loom_app, item) == [] and audited(loom_app, item) == []
    assert Worker(loom_app).run_due().succeeded == 2


def test_loom_worker_once_says_in_one_line_when_the_database_fails(worker_cli, monkeypatch):
    def broken(*args, **kwargs):
        raise sa.exc.OperationalError("SELECT", None, Exception("server closed the connection unexpectedly"))
    monkeypatch.setattr(worker_module, "claim", broken)
    result = worker_cli("worker", "--once")
    assert result.exit_code == 1
    assert "the database did not answer as expected (server closed the connection unexpectedly)" in result.output
    assert "Traceback" not in result.output


MAKER = {"kind": "entity", "name": "maker", "title_field": "name", "fields": [{"name": "name", "type": "string"}]}
PART = {"kind": "entity", "name": "part", "title_field": "code", "fields": [
    {"name": "code", "type": "string"},
    {"name": "maker", "type": "link", "target": "maker"},
    {"name": "bins", "type": "table", "target": "part_bin"},
]}
PART_BIN = {"kind": "entity", "name": "part_bin", "child": True, "fields": [
    {"name": "place", "type": "string"}, {"name": "secret_note", "type": "string"}]}


def test_links_and_rows_are_cut_to_what_the_rule_user_may_read(loom_app, apply_metadata, make_user, make_action):
    act = make_action()
    blind = {"kind": "role", "name": "blind", "permissions": {
        "part": {"actions": ["read"], "scope": "all"},
        "part_bin": {"actions": ["read"], "fields": {"secret_note": "none"}}}}
    seeing = {"kind": "role", "name": "seeing", "permissions": {
        "part": {"actions": ["read"], "scope": "all"}, "maker": {"actions": ["read"], "scope": "all"}}}
    # may read makers, but only their own: a title could name one it may not see
    scoped = {"kind": "role", "name": "scoped", "permissions": {
        "part": {"actions": ["read"], "scope": "all"}, "maker": {"actions": ["read"], "scope": "own"}}}
    apply_metadata(MAKER, PART, PART_BIN, blind, seeing, scoped)
    make_user("scoped_bot", roles=["scoped"])
    make_user("blind_bot", roles=["blind"])
    make_user("seeing_bot", roles=["seeing"])
    with loom_app.app_context():
        acme = loom.record_service("maker", SYSTEM).create({"name": "Acme"})
        part = loom.record_service("part", SYSTEM).create({
            "code": "P-1", "maker": acme["id"], "bins": [{"place": "A1", "secret_note": "behind the door"}]})
    assert part["maker"] == {"id": acme["id"], "title": "Acme"}
    for user in ("blind_bot", "seeing_bot", "scoped_bot"):
        add_delivery(loom_app, act.name, run_as=user, entity="part", record=part,
                     changes={"maker": [None, part["maker"]]}, with_={"maker": "{{ record.maker.id }}"})
    Worker(loom_app).run_once()
    blind_call, scoped_call, seeing_call = sorted(act.calls, key=lambda call: call.principal.name)
    assert scoped_call.context["record"]["maker"] == {"id": acme["id"], "title": None}
    assert blind_call.arguments == seeing_call.arguments == {"maker": acme["id"]}
    assert blind_call.context["record"]["maker"] == {"id": acme["id"], "title": None}
    assert blind_call.context["changes"]["maker"] == [None, {"id": acme["id"], "title": None}]
    assert [{k: v for k, v in row.items() if k in ("place", "secret_note")}
            for row in blind_call.context["record"]["bins"]] == [{"place": "A1"}]
    assert seeing_call.context["record"]["maker"] == {"id": acme["id"], "title": "Acme"}
    assert seeing_call.context["record"]["bins"][0]["secret_note"] == "behind the door"


def test_an_idle_worker_writes_nothing_and_locks_nothing(loom_app, bot, make_action):
    act = make_action()
    add_delivery(loom_app, act.name)
    worker = Worker(loom_app)
    assert worker.run_due().succeeded == 1  # and the outbox events of making the user handed out
    engine = loom_app.extensions["loom"].engine
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        for _ in range(3):
            assert worker.run_due().claimed == 0
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert statements  # it did look
    writes = [s for s in statements if s.lstrip().upper().startswith(("BEGIN IMMEDIATE", "INSERT", "UPDATE", "DELETE"))
              or "FOR UPDATE" in s.upper()]
    assert writes == []


def test_loom_worker_with_a_broker_sends_due_deliveries_to_it_instead_of_running_them(worker_cli, loom_app, bot,
                                                                                     make_action):
    import redis

    act = make_action()
    queue = f"loom-test-{uuid.uuid4().hex[:12]}"
    loom_app.config.update(BROKER_URL="redis://127.0.0.1:6379/15", BROKER_QUEUE=queue)
    items = [add_delivery(loom_app, act.name) for _ in range(3)]
    try:
        result = worker_cli("worker", "--once")
        assert result.exit_code == 0, result.output
        assert result.output.startswith("3 delivery(ies): 3 sent to the broker;")
        assert act.calls == []  # Celery workers run them, not this one
        tokens = {delivery(loom_app, item)["lease_owner"] for item in items}
        assert {delivery(loom_app, item)["status"] for item in items} == {"running"}
        assert len(tokens) == 1 and tokens.pop().startswith("celery:")
        assert redis.Redis.from_url("redis://127.0.0.1:6379/15").llen(queue) == 3
    finally:
        redis.Redis.from_url("redis://127.0.0.1:6379/15").delete(queue)
