"""Deliveries on Celery, with Redis and with RabbitMQ, run by Celery's own worker command
(`celery -A loom.commands.celery_worker worker`) against a remote HTTP server that counts
what reaches it by idempotency key: every delivery arrives, none is lost when the Celery
worker is killed mid-run or a task is lost, and a late copy of a task does nothing. The
worker's own threads and a Celery worker running at once deliver each one exactly once."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from loom.db import utcnow
from loom.integrations.models import deliveries
from loom.integrations.tasks import dispatch_due, run_dispatched
from loom.integrations.worker import Worker, claim

BROKERS = {"redis": "redis://127.0.0.1:6379/15", "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//"}
LEASE = dt.timedelta(minutes=5)


class Remote:
    """An HTTP server on 127.0.0.1 that answers 200 and counts each Idempotency-Key."""

    def __init__(self, delay: float = 0.0):
        self.keys: Counter = Counter()
        self.lock = threading.Lock()
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(remote.delay)
                with remote.lock:
                    remote.keys[self.headers["Idempotency-Key"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.delay = delay
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def remote():
    server = Remote()
    yield server
    server.close()


@pytest.fixture(params=sorted(BROKERS))
def broker_app(request, loom_app, make_user):
    make_user("bot", superuser=True)
    loom_app.config["BROKER_URL"] = BROKERS[request.param]
    # a queue of the test's own: tests running at once share the brokers
    loom_app.config["BROKER_QUEUE"] = f"loom-test-{uuid.uuid4().hex[:12]}"
    yield loom_app
    celery = loom_app.extensions.get("loom_celery")
    if celery is not None:
        with celery.connection_for_write() as connection:
            connection.default_channel.queue_delete(loom_app.config["BROKER_QUEUE"])


class CeleryWorker:
    """``celery -A loom.commands.celery_worker worker`` for the test's instance and queue."""

    def __init__(self, app, tmp_path):
        self.environment = {**os.environ, "LOOM_DATABASE_URL": app.config["DATABASE_URL"],
                            "LOOM_INSTANCE_PATH": app.config["INSTANCE_PATH"], "LOOM_SECRET_KEY": "test-secret",
                            "LOOM_BROKER_URL": app.config["BROKER_URL"], "LOOM_BROKER_QUEUE": app.config["BROKER_QUEUE"],
                            "LOOM_WORKER": "off"}
        self.log = tmp_path / f"celery-{uuid.uuid4().hex[:6]}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        command = [sys.executable, "-m", "celery", "-A", "loom.commands.celery_worker", "worker", "--pool", "threads",
                   "--concurrency", "4", "--loglevel", "INFO", "--without-heartbeat", "--without-mingle",
                   "--without-gossip"]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(command, env=self.environment, stdout=out, stderr=subprocess.STDOUT)
        # consuming before the test goes on: a task waiting in the queue longer than its
        # lease is (rightly) sent again
        wait_for(lambda: b" ready." in self.log.read_bytes() or self.process.poll() is not None, log=self.log)
        assert self.process.poll() is None, self.log.read_text()
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()  # the test is over: nothing left to finish


@pytest.fixture
def celery_worker(broker_app, tmp_path):
    workers: list[CeleryWorker] = []

    def start() -> CeleryWorker:
        worker = CeleryWorker(broker_app, tmp_path).start()
        workers.append(worker)
        return worker
    yield start
    for worker in workers:
        worker.stop()


def add(app, url: str, n: int) -> list[str]:
    now = utcnow() - dt.timedelta(seconds=1)
    rows = [{"rule": "push", "trigger": "record.created", "action": "http.request", "plugin": "loom", "entity": None,
             "record_id": None, "context": {"record": {}, "with": {"url": url, "body": {"n": i}}, "chain": []},
             "run_as": "bot", "depth": 0, "idempotency_key": f"push:{uuid.uuid4().hex}", "status": "pending",
             "attempts": 0, "max_attempts": 5, "backoff": "fixed", "backoff_seconds": 1, "available_at": now,
             "created_at": now} for i in range(n)]
    with app.extensions["loom"].engine.begin() as conn:
        conn.execute(deliveries.insert(), rows)
    return [row["idempotency_key"] for row in rows]


def statuses(app) -> Counter:
    with app.extensions["loom"].engine.connect() as conn:
        return Counter(conn.execute(sa.select(deliveries.c.status)).scalars())


def wait_for(check, timeout: float = 60.0, log=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out" + (f"; the Celery worker's log:\n{log.read_text()[-3000:]}" if log else ""))


def test_a_celery_worker_delivers_every_delivery_and_one_killed_mid_run_loses_none(broker_app, remote,
                                                                                  celery_worker):
    remote.delay = 0.2
    keys = add(broker_app, remote.url, 40)
    first = celery_worker()
    assert dispatch_due(broker_app, limit=100, lease=dt.timedelta(seconds=3)) == 40
    wait_for(lambda: sum(remote.keys.values()) >= 5, log=first.log)
    first.kill()  # mid-run: tasks taken and not acknowledged, some actions under way
    second = celery_worker()
    # the leases of what the killed worker held run out; later rounds send it again
    wait_for(lambda: dispatch_due(broker_app, limit=100, lease=dt.timedelta(seconds=3)) >= 0
             and statuses(broker_app)["succeeded"] == 40, timeout=90, log=second.log)
    # none lost; a delivery the killed worker had sent but not recorded may reach the remote
    # twice, under its one idempotency key, so the remote does it once
    assert set(remote.keys) == set(keys)
    assert sum(remote.keys.values()) - len(keys) <= 4 * 2  # at most what 4 threads held in flight (and prefetched)


def test_a_lost_task_is_sent_again_after_its_lease_and_its_late_copy_does_nothing(broker_app, remote,
                                                                                  celery_worker):
    [key] = add(broker_app, remote.url, 1)
    engine = broker_app.extensions["loom"].engine
    # claimed and sent into the void: the message never reaches a worker
    [lost] = claim(engine, "celery:lost-token", limit=1, lease=LEASE)
    assert dispatch_due(broker_app, limit=10, lease=LEASE) == 0  # still leased
    worker = celery_worker()
    later = utcnow() + LEASE + dt.timedelta(seconds=1)
    assert dispatch_due(broker_app, limit=10, lease=LEASE, now=later) == 1
    wait_for(lambda: statuses(broker_app)["succeeded"] == 1, log=worker.log)
    # the lost message turns up after all: its token no longer holds the claim
    with broker_app.app_context():
        assert run_dispatched(broker_app, lost.id, "celery:lost-token") == "dropped"
    assert remote.keys == Counter({key: 1})


def test_worker_threads_and_a_celery_worker_at_once_deliver_each_exactly_once(broker_app, remote, celery_worker):
    keys = add(broker_app, remote.url, 150)
    worker = celery_worker()
    stop = threading.Event()

    def own_worker():
        own = Worker(broker_app, housekeeping=False)
        while not stop.is_set() and statuses(broker_app)["succeeded"] < 150:
            own.run_once()

    def dispatcher():
        while not stop.is_set() and statuses(broker_app)["succeeded"] < 150:
            dispatch_due(broker_app, limit=5, lease=LEASE)
            time.sleep(0.05)

    threads = [threading.Thread(target=own_worker), threading.Thread(target=own_worker),
               threading.Thread(target=dispatcher)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: statuses(broker_app)["succeeded"] == 150, timeout=90, log=worker.log)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert remote.keys == Counter(dict.fromkeys(keys, 1))
    assert json.dumps(dict(statuses(broker_app))) == json.dumps({"succeeded": 150})


def test_a_task_longer_than_its_lease_keeps_its_claim_and_runs_once(broker_app, remote, celery_worker):
    remote.delay = 2.5
    keys = add(broker_app, remote.url, 3)
    worker = celery_worker()
    lease = dt.timedelta(seconds=1.5)
    # the dispatcher keeps looking for lapsed claims while the actions take longer than a lease
    wait_for(lambda: dispatch_due(broker_app, limit=10, lease=lease) >= 0
             and statuses(broker_app)["succeeded"] == 3, timeout=60, log=worker.log)
    assert remote.keys == Counter(dict.fromkeys(keys, 1))
