"""Integration rules and the worker, measured:

- ``write``: what a matching rule adds to the write that triggers it, in process through
  the record service: single creates and a bulk create on two entities alike but for one
  rule (``on: created``, an ``http.request``), rounds alternating which goes first;
- ``throughput``: deliveries per second, each an ``http.request`` to a local HTTP server
  that answers at once, run by the in-process worker (``--threads`` workers) and by a
  Celery worker on Redis (``celery -A loom.commands.celery_worker worker``, threads pool)
  fed by ``loom.integrations.tasks.dispatch_due``;
- ``latency``: time from a record's commit to its delivery reaching the remote, with the
  worker running in process as ``loom serve`` runs it and records created at ``--rate``
  per second for ``--seconds``;
- ``soak``: ``loom worker`` as a process of its own for ``--minutes``, records created at
  ``--rate`` per second; the worker's RSS sampled every 30 s, every delivery checked.

    python bench/integrations_bench.py --db sqlite write throughput latency
    python bench/integrations_bench.py --db postgresql soak --minutes 60 --rate 20

Everything it creates (a temporary SQLite file, the PostgreSQL schema ``bench_rules``) is
removed at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import sqlalchemy as sa
from benchlib import loom_revision, machine, percentile, scratch_database, stop_process

from loom.app import create_app
from loom.db import create_engine
from loom.integrations.models import deliveries
from loom.integrations.tasks import dispatch_due
from loom.integrations.worker import request_stop, run_threads
from loom.plugins import plugin_manager
from loom.plugins.migrations import upgrade
from loom.principal import Principal
from loom.records.door import record_service
from loom.schema.service import model_from_documents

SYSTEM = Principal.system("bench")
FIELDS = [{"name": "name", "type": "string"}, {"name": "amount", "type": "integer"},
          {"name": "region", "type": "string"}]


class Remote:
    """A local HTTP server that answers 200 at once and notes when each delivery arrived
    (the record's ``created_at`` travels in the body)."""

    def __init__(self):
        self.keys: Counter = Counter()
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        remote = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                with remote.lock:
                    remote.keys[self.headers["Idempotency-Key"]] += 1
                    marker = b'"created_at":"'
                    if marker in body:
                        start = body.index(marker) + len(marker)
                        text = body[start:body.index(b'"', start)].decode()
                        created = dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
                        remote.latencies.append(arrived - created)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.keys.clear()
            self.latencies.clear()


def rule(name: str, entity: str, url: str) -> dict:
    return {"kind": "rule", "name": name, "on": {"entity": entity, "event": "created"}, "action": "http.request",
            "run_as": "bench_bot", "with": {"url": url, "body": {"id": "{{ record.id }}", "name": "{{ record.name }}",
                                                                  "created_at": "{{ record.created_at }}"}}}


def make_app(url: str, folder: str, remote: Remote, broker: str | None = None):
    engine = create_engine(url)
    upgrade(engine, plugin_manager([], discover=False))
    config = {"ENGINE": engine, "DATABASE_URL": url, "INSTANCE_PATH": f"{folder}/instance", "SECRET_KEY": "bench",
              "PLUGINS": [], "DISCOVER_PLUGINS": False}
    if broker:
        config.update(BROKER_URL=broker, BROKER_QUEUE="loom-bench")
    app = create_app(config)
    app.extensions["loom"].identity.create_user("bench_bot", is_superuser=True)
    documents = [{"kind": "entity", "name": "plain_deal", "fields": FIELDS},
                 {"kind": "entity", "name": "ruled_deal", "fields": FIELDS},
                 rule("announce_deal", "ruled_deal", remote.url)]
    app.extensions["loom"].metadata.apply(model_from_documents(documents), author="bench")
    return app


def count(app, **where) -> int:
    query = sa.select(sa.func.count()).select_from(deliveries)
    for name, value in where.items():
        query = query.where(deliveries.c[name] == value)
    with app.extensions["loom"].engine.connect() as conn:
        return conn.execute(query).scalar_one()


def clear(app) -> None:
    with app.extensions["loom"].engine.begin() as conn:
        conn.execute(deliveries.delete())
        conn.execute(sa.text("DELETE FROM loom_delivery_attempts"))


def measure_write(app, args) -> None:
    clear(app)
    timings: dict[str, dict[str, list[float]]] = {}
    with app.app_context():
        for round_ in range(args.rounds):
            for entity in (("plain_deal", "ruled_deal") if round_ % 2 == 0 else ("ruled_deal", "plain_deal")):
                service = record_service(entity, SYSTEM)
                started = time.perf_counter()
                for i in range(args.singles):
                    service.create({"name": f"d{i}", "amount": i, "region": "east"})
                timings.setdefault("create", {}).setdefault(entity, []).append(
                    args.singles / (time.perf_counter() - started))
                rows = [{"name": f"b{i}", "amount": i, "region": "east"} for i in range(args.bulk)]
                started = time.perf_counter()
                service.bulk_create(rows)
                timings.setdefault("bulk", {}).setdefault(entity, []).append(
                    args.bulk / (time.perf_counter() - started))
        written = count(app, rule="announce_deal")
    expected = args.rounds * (args.singles + args.bulk)
    print(f"write: {args.rounds} rounds of {args.singles} single creates and a bulk create of {args.bulk}; "
          f"deliveries written {written} of {expected}")
    for what, by in timings.items():
        plain, ruled = statistics.median(by["plain_deal"]), statistics.median(by["ruled_deal"])
        print(f"  {what:<7} without a rule {plain:8.0f}/s  with one {ruled:8.0f}/s  ratio {ruled / plain:.2f} "
              f"(rounds: {', '.join(f'{v:.0f}' for v in by['ruled_deal'])} / "
              f"{', '.join(f'{v:.0f}' for v in by['plain_deal'])})")
    clear(app)


def fill(app, n: int) -> None:
    with app.app_context():
        service = record_service("ruled_deal", SYSTEM)
        for start in range(0, n, 500):
            service.bulk_create([{"name": f"t{i}", "amount": i, "region": "east"}
                                 for i in range(start, min(n, start + 500))])


def measure_throughput(app, args, remote: Remote, url: str, folder: str) -> None:
    results = []
    for round_ in range(args.rounds):
        clear(app)
        remote.reset()
        fill(app, args.deliveries)
        stop = threading.Event()
        started = time.perf_counter()
        report = run_threads(app, concurrency=args.threads, stop=stop, once=True)
        seconds = time.perf_counter() - started
        assert report.succeeded == args.deliveries and len(remote.keys) == args.deliveries, report.summary
        results.append(args.deliveries / seconds)
        print(f"  round {round_ + 1} in-process worker, {args.threads} threads: "
              f"{args.deliveries / seconds:,.0f} deliveries/s")
    print(f"throughput in process: median {statistics.median(results):,.0f} deliveries/s")
    if not args.broker:
        return
    results = []
    environment = {**os.environ, "LOOM_DATABASE_URL": url, "LOOM_INSTANCE_PATH": f"{folder}/instance",
                   "LOOM_SECRET_KEY": "bench", "LOOM_BROKER_URL": args.broker, "LOOM_BROKER_QUEUE": "loom-bench"}
    celery = subprocess.Popen([sys.executable, "-m", "celery", "-A", "loom.commands.celery_worker", "worker",
                               "--pool", "threads", "--concurrency", str(args.threads), "--loglevel", "WARNING",
                               "--without-heartbeat", "--without-mingle", "--without-gossip"], env=environment)
    try:
        time.sleep(3)
        for round_ in range(args.rounds):
            clear(app)
            remote.reset()
            fill(app, args.deliveries)
            started = time.perf_counter()
            while count(app, status="succeeded") < args.deliveries:
                if not dispatch_due(app, limit=200, lease=dt.timedelta(minutes=5)):
                    time.sleep(0.01)
            seconds = time.perf_counter() - started
            assert len(remote.keys) == args.deliveries
            results.append(args.deliveries / seconds)
            print(f"  round {round_ + 1} Celery ({args.broker.split(':')[0]}), {args.threads} threads: "
                  f"{args.deliveries / seconds:,.0f} deliveries/s")
    finally:
        stop_process(celery)
    print(f"throughput on Celery: median {statistics.median(results):,.0f} deliveries/s")


def measure_latency(app, args, remote: Remote) -> None:
    clear(app)
    remote.reset()
    stop = threading.Event()
    workers = threading.Thread(target=run_threads, kwargs={"app": app, "concurrency": args.threads, "stop": stop})
    workers.start()
    total = int(args.rate * args.seconds)
    with app.app_context():
        service = record_service("ruled_deal", SYSTEM)
        started = time.perf_counter()
        for i in range(total):
            service.create({"name": f"l{i}", "amount": i, "region": "east"})
            pause = started + (i + 1) / args.rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    deadline = time.monotonic() + 60
    while len(remote.keys) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    request_stop(stop)
    workers.join(30)
    values = [v * 1000 for v in remote.latencies]
    print(f"latency, commit to delivery, {total} records at {args.rate}/s, {args.threads} worker threads: "
          f"p50 {percentile(values, 0.5):.1f} ms, p90 {percentile(values, 0.9):.1f} ms, "
          f"p99 {percentile(values, 0.99):.1f} ms, max {max(values):.1f} ms; delivered {len(remote.keys)} of {total}")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def soak(app, args, remote: Remote, url: str, folder: str) -> None:
    clear(app)
    remote.reset()
    environment = {**os.environ, "LOOM_DATABASE_URL": url, "LOOM_INSTANCE_PATH": f"{folder}/instance",
                   "LOOM_SECRET_KEY": "bench"}
    worker = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "loom"), "worker", "--concurrency",
                               str(args.threads)],
                              env=environment)
    samples: list[tuple[float, float]] = []
    created = 0
    try:
        with app.app_context():
            service = record_service("ruled_deal", SYSTEM)
            started = time.perf_counter()
            next_sample = started + 60  # after a minute: the worker has loaded Loom and warmed up
            while time.perf_counter() - started < args.minutes * 60:
                service.create({"name": f"s{created}", "amount": created, "region": "east"})
                created += 1
                now = time.perf_counter()
                if now >= next_sample:
                    samples.append(((now - started) / 60, rss_mib(worker.pid)))
                    print(f"  {samples[-1][0]:5.1f} min: worker RSS {samples[-1][1]:6.1f} MiB, "
                          f"{created} records, {len(remote.keys)} delivered", flush=True)
                    next_sample += 30
                pause = started + created / args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        deadline = time.monotonic() + 120
        while len(remote.keys) < created and time.monotonic() < deadline:
            time.sleep(0.2)
        samples.append((args.minutes, rss_mib(worker.pid)))
    finally:
        stop_process(worker, timeout=30)
    rss = [r for _m, r in samples]
    tenth = max(1, len(rss) // 10)
    print(f"soak: {args.minutes} min at {args.rate} records/s, {created} records, {len(remote.keys)} delivered "
          f"({sum(remote.keys.values()) - len(remote.keys)} repeats), {count(app, status='succeeded')} succeeded; "
          f"worker RSS first {statistics.median(rss[:tenth]):.1f} MiB (median of the first tenth), last "
          f"{statistics.median(rss[-tenth:]):.1f} MiB, max {max(rss):.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="+", choices=["write", "throughput", "latency", "soak"])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--singles", type=int, default=300)
    parser.add_argument("--bulk", type=int, default=2000)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--broker", default=None, help="e.g. redis://127.0.0.1:6379/14: also measure Celery")
    parser.add_argument("--rate", type=float, default=20.0, help="records per second (latency, soak)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"loom: {loom_revision()}")
    remote = Remote()
    with scratch_database(args.db, schema="bench_rules") as database:
        app = make_app(database.url, database.workdir, remote, args.broker)
        for what in args.what:
            if what == "write":
                measure_write(app, args)
            elif what == "throughput":
                measure_throughput(app, args, remote, database.url, database.workdir)
            elif what == "latency":
                measure_latency(app, args, remote)
            else:
                soak(app, args, remote, database.url, database.workdir)
        app.extensions["loom"].engine.dispose()
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
