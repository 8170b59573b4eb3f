"""Writers on SQLite take turns in a queue of their process, first come first served,
instead of racing for SQLite's lock through its busy handler; PostgreSQL has no queue.

Most SQLite tests here use a busy timeout of zero: a writer that ever had to wait for
SQLite's lock behind another writer of this process would fail at once with "database is
locked", so writes that all succeed prove the queue kept them from SQLite's wait."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

import loom
from loom.app import create_app
from loom.audit.chain import verify
from loom.db import (
    WriteQueue,
    after_commit,
    after_end,
    create_engine,
    write_queue,
    write_transaction,
)
from loom.plugins import plugin_manager
from loom.plugins.migrations import upgrade
from loom.schema.service import model_from_documents

#: how long a test waits for something that, when the code is right, happens at once
PATIENCE = 10


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, "waited in vain"
        time.sleep(0.001)


def in_thread(work: Callable[[], None]) -> bool:
    """Run ``work`` in another thread; whether it finished (a writer that finds the turn
    taken would still be waiting)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(PATIENCE)
    if errors:
        raise errors[0]
    return not thread.is_alive()


@pytest.fixture
def engine(tmp_path):
    """A SQLite engine that never waits in SQLite's busy handler, with a table to write."""
    engine = create_engine(f"sqlite:///{tmp_path / 'fair.db'}", connect_args={"timeout": 0}, pool_size=20)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE writes (id INTEGER PRIMARY KEY, writer TEXT, n INTEGER)")
    # every connection the writers will use is opened (and WAL set) before they start
    connections = [engine.connect() for _ in range(20)]
    for conn in connections:
        conn.close()
    yield engine
    engine.dispose()


def insert(conn: sa.Connection, writer: str, n: int = 0) -> None:
    conn.execute(sa.text("INSERT INTO writes (writer, n) VALUES (:writer, :n)"), {"writer": writer, "n": n})


def write(engine: sa.Engine, writer: str) -> None:
    with write_transaction(engine) as conn:
        insert(conn, writer)


def writers(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT writer FROM writes ORDER BY id").scalars())


# -- the queue ------------------------------------------------------------------------

def test_turns_are_given_in_the_order_they_were_asked_for():
    queue = WriteQueue(timeout=PATIENCE)
    queue.acquire()
    order: list[str] = []

    def take_turn(name: str) -> None:
        queue.acquire()
        order.append(name)
        queue.release()

    threads = []
    for position, name in enumerate("abcdef"):
        thread = threading.Thread(target=take_turn, args=(name,))
        thread.start()
        threads.append(thread)
        until(lambda position=position: queue.waiting == position + 1)
    queue.release()
    # the thread that just ended its turn asks again: it goes behind everyone waiting,
    # although it runs while they are still being woken
    queue.acquire()
    order.append("again")
    queue.release()
    for thread in threads:
        thread.join(PATIENCE)
    assert order == ["a", "b", "c", "d", "e", "f", "again"]


def test_a_writer_that_waits_too_long_fails_as_sqlite_would_and_leaves_the_line():
    queue = WriteQueue(timeout=0.2)
    queue.acquire()
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        in_thread(queue.acquire)
    assert queue.waiting == 0
    queue.release()
    # the turn went to nobody: the next writer has it at once
    assert in_thread(lambda: (queue.acquire(), queue.release()))


def test_only_the_thread_whose_turn_it_is_can_end_it():
    queue = WriteQueue(timeout=PATIENCE)
    queue.acquire()
    with pytest.raises(RuntimeError, match="only the thread whose turn it is"):
        in_thread(queue.release)
    queue.release()


# -- write transactions ----------------------------------------------------------------

def test_many_writers_at_once_all_succeed_without_waiting_on_sqlite(engine):
    count, each = 8, 15
    start = threading.Barrier(count)
    errors: list[Exception] = []

    def writer(i: int) -> None:
        start.wait()
        try:
            for n in range(each):
                with write_transaction(engine) as conn:
                    insert(conn, f"w{i}", n)
                    # hold the lock a moment, so that the others are ready to write meanwhile
                    time.sleep(0.001)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "writers still waiting: a deadlock"
    assert errors == []
    done = writers(engine)
    assert len(done) == count * each
    # each writer's own writes are in its order
    with engine.connect() as conn:
        for i in range(count):
            ns = conn.exec_driver_sql(f"SELECT n FROM writes WHERE writer = 'w{i}' ORDER BY id").scalars().all()
            assert ns == list(range(each))


def test_a_nested_write_joins_the_open_one_instead_of_queueing_behind_it(engine):
    with write_transaction(engine) as outer:
        insert(outer, "outer")
        with write_transaction(engine) as nested:
            assert nested is outer
            insert(nested, "nested")
        assert write_queue(engine).waiting == 0
    assert writers(engine) == ["outer", "nested"]


def test_a_write_that_cannot_see_the_open_one_fails_at_once_rather_than_wait_for_itself(engine):
    with write_transaction(engine) as conn:
        insert(conn, "outer")
        # a context that does not carry this thread's open write (as a fresh one would not)
        with pytest.raises(RuntimeError, match="already has a write transaction open"):
            contextvars.Context().run(lambda: write_transaction(engine).__enter__())
    assert writers(engine) == ["outer"]


def test_follow_up_work_runs_once_the_turn_has_passed_on(engine):
    """Work after the commit (and after the end) may write: in this thread, or in another
    one that this thread waits for, which would wait for the turn if it were still held."""
    seen = {}

    def follow_up(label: str) -> None:
        seen[label] = in_thread(lambda: write(engine, f"{label} (other thread)"))
        write(engine, label)

    with write_transaction(engine) as conn:
        insert(conn, "change")
        after_commit(conn, lambda: follow_up("after commit"))
        after_end(engine, lambda: follow_up("after end"))
    assert seen == {"after commit": True, "after end": True}
    assert writers(engine) == ["change", "after commit (other thread)", "after commit",
                               "after end (other thread)", "after end"]


def test_a_failed_write_gives_up_its_turn_and_its_end_work_still_runs(engine):
    ran = []
    with pytest.raises(ZeroDivisionError):
        with write_transaction(engine) as conn:
            insert(conn, "rolled back")
            after_commit(conn, lambda: ran.append("after commit"))
            after_end(engine, lambda: ran.append("after end"))
            1 / 0  # noqa: B018 - the failure under test
    assert ran == ["after end"]
    assert in_thread(lambda: write(engine, "next"))
    assert writers(engine) == ["next"]


def test_a_writer_thread_that_dies_mid_write_gives_up_its_turn(engine):
    def dies() -> None:
        with write_transaction(engine) as conn:
            insert(conn, "dying")
            raise SystemExit

    with pytest.raises(SystemExit):
        in_thread(dies)
    assert write_queue(engine).waiting == 0
    assert in_thread(lambda: write(engine, "next"))
    assert writers(engine) == ["next"]


def test_reads_do_not_wait_for_the_turn(engine):
    with write_transaction(engine) as conn:
        insert(conn, "pending")
        # another thread reads while this one holds the turn, and sees the last commit
        assert in_thread(lambda: writers(engine))
    assert writers(engine) == ["pending"]


def test_only_sqlite_engines_queue_their_writers(loom_engine):
    queue = write_queue(loom_engine)
    if loom_engine.dialect.name == "sqlite":
        assert isinstance(queue, WriteQueue)
        return
    assert queue is None
    # on PostgreSQL two writers are inside their transactions at the same time
    inside = threading.Barrier(2, timeout=PATIENCE)

    def writer() -> None:
        with write_transaction(loom_engine) as conn:
            conn.execute(sa.text("SELECT 1"))
            inside.wait()

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE)
    assert not inside.broken


# -- through the app ---------------------------------------------------------------------

class Notary:
    """Writes twice more for every customer created, from inside the change: once through
    the door in the change's transaction, once through the door without naming it (the
    write joins the one this thread has open), and logs a refusal met on the way."""

    @loom.hookimpl
    def after_record_create(self, entity, record, principal, connection):
        if entity.name != "customer":
            return
        system = loom.Principal.system("notary")
        loom.record_service("note", system, connection=connection).create({"text": f"{record['name']} joined"})
        loom.record_service("note", system).create({"text": f"{record['name']} joined again"})
        with pytest.raises(loom.Forbidden):
            loom.record_service("note", loom.Principal(name="nobody")).create({"text": "x"})


@pytest.fixture
def busy_free_app(tmp_path):
    """A Loom app on SQLite that never waits in SQLite's busy handler, with customers
    and the notes the ``Notary`` plugin writes."""
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}", connect_args={"timeout": 0}, pool_size=30)
    plugins = [Notary()]
    upgrade(engine, plugin_manager(plugins, discover=False))
    app = create_app({"ENGINE": engine, "DATABASE_URL": str(engine.url), "INSTANCE_PATH": str(tmp_path / "instance"),
                      "SECRET_KEY": "test", "PLUGINS": plugins, "DISCOVER_PLUGINS": False})
    app.extensions["loom"].metadata.apply(model_from_documents([
        {"kind": "entity", "name": "customer", "title_field": "name",
         "fields": [{"name": "name", "type": "string", "required": True}]},
        {"kind": "entity", "name": "note", "title_field": "text", "fields": [{"name": "text", "type": "string"}]},
    ]), author="test")
    connections = [engine.connect() for _ in range(30)]
    for conn in connections:
        conn.close()
    yield app
    engine.dispose()


def test_a_publish_waits_its_turn_among_the_writers(busy_free_app):
    """A metadata publish waits in the queue while a record write holds the turn (with a
    busy timeout of zero, a publish that went straight to SQLite's lock would fail), and
    writers that ask after it wait for it."""
    loom_app = busy_free_app.extensions["loom"]
    engine, metadata = loom_app.engine, loom_app.metadata
    document = {"kind": "entity", "name": "memo", "title_field": "text", "fields": [{"name": "text", "type": "string"}]}
    queue = write_queue(engine)
    published: list[int] = []
    base = metadata.live().number
    publisher = threading.Thread(target=lambda: published.append(
        metadata.change({"put": [document]}, base, author="test").to_version))
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("INSERT INTO e_note (text, version, created_at, updated_at) "
                             "VALUES ('held', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)")
        publisher.start()
        until(lambda: queue.waiting == 1)
        assert not published
    publisher.join(PATIENCE)
    assert published and metadata.live().model.entity("memo")


def test_concurrent_api_writes_with_nested_writes_all_succeed_and_the_audit_chain_holds(busy_free_app):
    identity = busy_free_app.extensions["loom"].identity
    identity.create_user("admin", is_superuser=True)
    token = identity.create_token("admin").token
    clients, each = 6, 5
    start = threading.Barrier(clients)
    statuses: list[int] = []

    def client(i: int) -> None:
        http = busy_free_app.test_client()
        start.wait()
        for n in range(each):
            reply = http.post("/api/v1/customer", json={"name": f"c{i}-{n}"},
                              headers={"Authorization": f"Bearer {token}"})
            statuses.append(reply.status_code)
            if reply.status_code == 201:
                patched = http.patch(f"/api/v1/customer/{reply.get_json()['data']['id']}",
                                     json={"name": f"c{i}-{n} changed"}, headers={"Authorization": f"Bearer {token}"})
                statuses.append(patched.status_code)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "writers still waiting: a deadlock"
    assert sorted(set(statuses)) == [200, 201] and len(statuses) == 2 * clients * each
    engine = busy_free_app.extensions["loom"].engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM e_note").scalar() == 2 * clients * each
        logged = dict(conn.exec_driver_sql(
            "SELECT action || ':' || outcome, count(*) FROM loom_audit GROUP BY action, outcome").all())
    assert logged["record.create:ok"] == 3 * clients * each  # each customer and its two notes
    assert logged["record.update:ok"] == clients * each
    # the refusal met inside each change is logged once that change ended
    assert logged["record.create:denied"] == clients * each
    verdict = verify(engine)
    assert verdict.ok, verdict.problem
    assert verdict.checked == sum(logged.values())


# -- durability --------------------------------------------------------------------------

@pytest.mark.parametrize(("environment", "config", "expected"), [
    (None, None, 1), ("normal", None, 1), ("FULL", None, 2), (None, "full", 2), ("FULL", "NORMAL", 1)])
def test_sqlite_synchronous_is_normal_unless_set_to_full(tmp_path, monkeypatch, environment, config, expected):
    if environment is None:
        monkeypatch.delenv("LOOM_SQLITE_SYNCHRONOUS", raising=False)
    else:
        monkeypatch.setenv("LOOM_SQLITE_SYNCHRONOUS", environment)
    overrides = {"DATABASE_URL": f"sqlite:///{tmp_path / 'sync.db'}", "INSTANCE_PATH": str(tmp_path / "instance"),
                 "SECRET_KEY": "test", "DISCOVER_PLUGINS": False}
    if config is not None:
        overrides["SQLITE_SYNCHRONOUS"] = config
    engine = create_app(overrides).extensions["loom"].engine
    try:
        with engine.connect() as conn:
            # 1 is NORMAL, 2 is FULL
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
    finally:
        engine.dispose()


def test_an_unknown_synchronous_setting_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_SQLITE_SYNCHRONOUS", "OFF")
    with pytest.raises(ValueError, match="LOOM_SQLITE_SYNCHRONOUS: 'OFF' is not one of NORMAL, FULL"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'sync.db'}", "INSTANCE_PATH": str(tmp_path / "instance"),
                    "SECRET_KEY": "test", "DISCOVER_PLUGINS": False})
