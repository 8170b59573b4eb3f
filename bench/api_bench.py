"""Loom's generated REST API against a hand-written Flask + SQLAlchemy Core baseline.

Both serve the Customer entity from the same table, each in its own waitress process
(4 threads, 127.0.0.1 only), and a bounded load generator drives them one after the
other with the same requests: a fixed number of client threads with persistent HTTP
connections, for a fixed time (and at most a fixed number of requests). Every request
carries the same API token, which both servers check (Loom through its identity service
and a role, the baseline by hand). It reports requests/s, p50 and p99 per operation and
the Loom/baseline ratios; with ``--rounds`` each operation is measured several times,
alternating which server goes first, so drift on a shared machine hits both alike.

Before measuring it checks that both servers give the same answers, so the ratio
compares equal work, and counts the SQL statements each spends per request. On
PostgreSQL it also measures keyset pagination through the record service, page by
page (the issue's target: p99 < 30 ms at 1,000,000 rows), and shows the query plan.

    python bench/api_bench.py --db sqlite --rows 2000 --seconds 2
    python bench/api_bench.py --db postgresql --rows 1000000 --seconds 10 --rounds 2

Everything it creates (a temporary SQLite file, or the PostgreSQL schema ``bench_api``)
is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from benchlib import (
    BENCH_USER,
    DEFAULT_PG_URL,
    REGIONS,
    USERS,
    create_api_user,
    customer_document,
    fill_customers,
    insert_users,
    loom_revision,
    machine,
    percentile,
    role_document,
    scratch_database,
    stop_process,
)

OPERATIONS = ("list", "get", "create", "update")
LIST_PATH = "/api/v1/customer"
#: a list walk follows this many pages, then starts again on another region
PAGES_PER_WALK = 20
SCHEMA = "bench_api"
JSON_HEADERS = {"Content-Type": "application/json"}


# -- the servers --------------------------------------------------------------------------------

def serve(kind: str, url: str, port: int, instance: str, secret: str, check_interval: float) -> None:
    """Run one server in this process (called in the subprocess): Loom's app, or the
    baseline, under the same waitress settings and the same engine factory."""
    import waitress

    from loom.db import create_engine

    if kind == "loom":
        from loom.app import create_app

        app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": instance, "SECRET_KEY": secret,
                          "DISCOVER_PLUGINS": False, "METADATA_CHECK_INTERVAL": check_interval})
    else:
        import baseline_app

        app = baseline_app.create_app(create_engine(url), secret)
    waitress.serve(app, host="127.0.0.1", port=port, threads=4)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server subprocess and where it listens."""

    kind: str
    port: int
    process: subprocess.Popen
    log_path: str

    def stop(self) -> None:
        stop_process(self.process)


def start_server(kind: str, url: str, workdir: str, secret: str, check_interval: float, token: str) -> Server:
    """Start ``kind`` in a subprocess and wait until it answers."""
    port = _free_port()
    log_path = os.path.join(workdir, f"{kind}.log")
    instance = os.path.join(workdir, f"{kind}-instance")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", kind, "--database-url", url,
             "--port", str(port), "--instance", instance, "--secret", secret,
             "--metadata-check-interval", str(check_interval)],
            stdout=log, stderr=subprocess.STDOUT)
    server = Server(kind, port, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        probe = Http(port, token)
        try:
            status, _ = probe.request("GET", f"{LIST_PATH}/1")
            if status == 200:
                return server
        except OSError:
            pass
        finally:
            probe.close()
        time.sleep(0.2)
    server.stop()
    with open(log_path) as log:
        raise RuntimeError(f"the {kind} server did not start:\n{log.read()[-3000:]}")


# -- the client ---------------------------------------------------------------------------------

class Http:
    """One persistent HTTP/1.1 connection (reopened if the server closed it) that sends
    the API token with every request."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.auth = {"Authorization": f"Bearer {token}"}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, payload: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, body=payload, headers={**self.auth, **(headers or {})})
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        status, data = self.request(method, path, payload, {**JSON_HEADERS, **(headers or {})})
        return status, json.loads(data) if data else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


@dataclass
class Shared:
    """State the workloads share across servers and phases: the loaded row count, each
    record's current version (each client updates its own ids, so no two clients race
    for one record) and a phase number that keeps created credit codes unique."""

    rows: int
    clients: int
    versions: dict[int, int] = field(default_factory=dict)
    update_position: dict[int, int] = field(default_factory=dict)
    phase: int = 0


@dataclass
class Worker:
    """One client thread's connection and workload state."""

    index: int
    http: Http
    shared: Shared
    rng: Any = None
    region: int = 0
    cursor: str | None = None
    pages: int = 0
    counter: int = 0
    record_id: int = 0


Request = tuple[str, str, Any, dict[str, str]]


def list_request(w: Worker) -> Request:
    """The next page of the worker's current walk through one region, newest first."""
    params = {"filter[region][eq]": REGIONS[w.region], "sort": "-created_at,-id", "limit": "50"}
    if w.cursor:
        params["cursor"] = w.cursor
    return "GET", f"{LIST_PATH}?{urlencode(params)}", None, {}


def list_answer(w: Worker, status: int, data: bytes) -> None:
    """Follow ``next_cursor``; after PAGES_PER_WALK pages (or the last) switch region."""
    w.cursor = json.loads(data)["next_cursor"] if status == 200 else None
    w.pages += 1
    if w.cursor is None or w.pages >= PAGES_PER_WALK:
        w.region = (w.region + 1) % len(REGIONS)
        w.cursor, w.pages = None, 0


def get_request(w: Worker) -> Request:
    """One loaded customer, picked at random (the same sequence for both servers)."""
    return "GET", f"{LIST_PATH}/{w.rng.randint(1, w.shared.rows)}", None, {}


def create_request(w: Worker) -> Request:
    """A valid new customer with a credit code no other request uses."""
    w.counter += 1
    code = f"N{w.shared.phase:03d}{w.index:02d}{w.counter:09d}"
    body = {"name": f"New customer {code}", "credit_code": code, "level": "B",
            "region": REGIONS[w.rng.randrange(len(REGIONS))], "credit_limit": "12345.67",
            "mobile": "13800138000", "email": "new.customer@example.com", "city": "Hangzhou",
            "notes": "created by the benchmark", "account_manager": w.rng.randint(1, USERS)}
    return "POST", LIST_PATH, json.dumps(body).encode(), JSON_HEADERS


def _update_target(w: Worker) -> int:
    """The next of this client's own records (ids congruent to its index)."""
    owned = (w.shared.rows - w.index - 1) // w.shared.clients + 1
    position = w.shared.update_position.get(w.index, 0)
    w.shared.update_position[w.index] = (position + 1) % owned
    return w.index + 1 + position * w.shared.clients


def update_request(w: Worker) -> Request:
    """Change two fields of the worker's next record, sending its version as If-Match."""
    w.counter += 1
    record_id = w.record_id = _update_target(w)
    body = {"notes": f"updated {w.counter}", "credit_limit": f"{w.rng.randint(0, 10**6)}.{w.counter % 100:02d}"}
    headers = {**JSON_HEADERS, "If-Match": f'"{w.shared.versions.get(record_id, 1)}"'}
    return "PATCH", f"{LIST_PATH}/{record_id}", json.dumps(body).encode(), headers


def update_answer(w: Worker, status: int, data: bytes) -> None:
    """Remember the record's new version (re-read it if the update was refused)."""
    record_id = w.record_id
    if status == 200:
        w.shared.versions[record_id] = json.loads(data)["data"]["version"]
    else:
        _, record = w.http.json("GET", f"{LIST_PATH}/{record_id}")
        w.shared.versions[record_id] = record["data"]["version"]


@dataclass(frozen=True)
class Workload:
    """An operation: how to build the next request, what to do with the answer, and the
    status that counts as success."""

    build: Callable[[Worker], Request]
    answer: Callable[[Worker, int, bytes], None] | None
    expected: int


WORKLOADS = {
    "list": Workload(list_request, list_answer, 200),
    "get": Workload(get_request, None, 200),
    "create": Workload(create_request, None, 201),
    "update": Workload(update_request, update_answer, 200),
}


@dataclass
class Result:
    """One server's measurement of one operation (``latencies`` in seconds)."""

    server: str
    operation: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    first_error: str = ""
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def merged(self, other: Result) -> Result:
        """This measurement and a later one of the same server and operation, as one."""
        latencies = self.latencies + other.latencies
        return Result(self.server, self.operation, self.requests + other.requests, self.errors + other.errors,
                      self.seconds + other.seconds, percentile(latencies, 0.50) * 1000,
                      percentile(latencies, 0.99) * 1000, self.first_error or other.first_error, latencies)


def run_phase(workers: list[Worker], server: str, operation: str, seconds: float, max_requests: int,
              seed: int) -> Result:
    """Drive ``operation`` from every worker at once for ``seconds`` (or until
    ``max_requests`` were sent); only the HTTP exchange itself is timed."""
    import random

    workload = WORKLOADS[operation]
    for w in workers:
        w.rng = random.Random(seed * 1000 + w.index)
        w.region, w.cursor, w.pages = w.index % len(REGIONS), None, 0
    issued = itertools.count()
    latencies: list[list[float]] = [[] for _ in workers]
    errors = [0] * len(workers)
    first_error: list[str] = []
    start = threading.Barrier(len(workers) + 1)
    deadline = [0.0]

    def loop(w: Worker) -> None:
        start.wait()
        own = latencies[w.index]
        clock = time.perf_counter
        while clock() < deadline[0] and next(issued) < max_requests:
            method, path, body, headers = workload.build(w)
            began = clock()
            status, data = w.http.request(method, path, body, headers)
            own.append(clock() - began)
            if status != workload.expected:
                errors[w.index] += 1
                if not first_error:
                    first_error.append(f"{status} {data[:300]!r}")
            if workload.answer:
                workload.answer(w, status, data)

    threads = [threading.Thread(target=loop, args=(w,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    merged = [x for own in latencies for x in own]
    return Result(server, operation, len(merged), sum(errors), elapsed,
                  percentile(merged, 0.50) * 1000, percentile(merged, 0.99) * 1000,
                  first_error[0] if first_error else "", merged)


# -- same answers from both servers ---------------------------------------------------------

def check_same_answers(loom: Http, base: Http) -> list[str]:
    """Differences between the two servers' answers to the benchmark's requests (empty
    when they agree); the records they create here are extra rows, not loaded ones."""
    problems = []
    for path in (f"{LIST_PATH}/1", f"{LIST_PATH}/2",
                 f"{LIST_PATH}?{urlencode({'filter[region][eq]': 'north', 'sort': '-created_at,-id', 'limit': 50})}"):
        a, b = loom.json("GET", path), base.json("GET", path)
        if a[0] != b[0] or a[1]["data"] != b[1]["data"]:
            problems.append(f"GET {path}: Loom {a[0]} {str(a[1])[:300]} != baseline {b[0]} {str(b[1])[:300]}")
    volatile = {"id", "created_at", "updated_at", "credit_code", "name"}
    created = {}
    for label, client in (("loom", loom), ("base", base)):
        code = f"CHECK{label}"
        status, body = client.json("POST", LIST_PATH, {
            "name": f"Check {label}", "credit_code": code, "level": "A", "region": "west",
            "credit_limit": "99.90", "mobile": "13912345678", "email": "check@example.com",
            "city": "Suzhou", "notes": "", "account_manager": 3})
        if status != 201:
            problems.append(f"POST on {label}: {status} {body}")
            continue
        status, body = client.json("PATCH", f"{LIST_PATH}/{body['data']['id']}", {"city": "Wuxi"},
                                   {"If-Match": '"1"'})
        created[label] = (status, {k: v for k, v in body["data"].items() if k not in volatile})
    if len(created) == 2 and created["loom"] != created["base"]:
        problems.append(f"POST+PATCH differ: Loom {created['loom']} != baseline {created['base']}")
    bad = {"name": "", "level": "Z", "mobile": "12345", "email": "nope", "credit_limit": "1.234"}
    answers = []
    for client in (loom, base):
        status, body = client.json("POST", LIST_PATH, bad)
        answers.append((status, sorted(e["field"] for e in body.get("errors", []))))
    if answers[0] != answers[1]:
        problems.append(f"invalid POST: Loom {answers[0]} != baseline {answers[1]}")
    return problems


# -- database work per request ------------------------------------------------------------------

class _Counter:
    """Counts the SQL statements and pool checkouts of one engine."""

    def __init__(self, engine: sa.Engine):
        self.statements = self.checkouts = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def reset(self) -> tuple[int, int]:
        counted = (self.statements, self.checkouts)
        self.statements = self.checkouts = 0
        return counted


def _count_requests(kind: str, client: Any, counter: _Counter, token: str) -> dict[str, tuple[int, int]]:
    """One warm request of each operation through ``client``: (statements, checkouts)."""
    auth = {"Authorization": f"Bearer {token}"}

    def call(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None):
        counter.reset()
        response = client.open(path, method=method, json=body, headers={**auth, **(headers or {})})
        if response.status_code >= 400:
            raise RuntimeError(f"{kind} {method} {path}: {response.status_code} {response.get_data(as_text=True)}")
        return counter.reset(), response.get_json()

    def customer(tag: str) -> dict[str, Any]:
        return {"name": f"Count {kind} {tag}", "credit_code": f"COUNT{kind[:4]}{tag}", "region": "east",
                "mobile": "13912345678", "email": "count@example.com", "account_manager": 2}

    page = f"{LIST_PATH}?{urlencode({'filter[region][eq]': 'east', 'sort': '-created_at,-id', 'limit': 50})}"
    found: dict[str, tuple[int, int]] = {}
    for _ in range(2):
        found["list"], _ = call("GET", page)
        found["get"], _ = call("GET", f"{LIST_PATH}/3")
    call("POST", LIST_PATH, customer("a"))
    found["create"], created = call("POST", LIST_PATH, customer("b"))
    record = created["data"]
    for i in range(2):
        found["update"], updated = call("PATCH", f"{LIST_PATH}/{record['id']}", {"notes": f"n{i}"},
                                        {"If-Match": f'"{record["version"]}"'})
        record = updated["data"]
    return found


def statement_counts(url: str, token: str, workdir: str) -> dict[str, dict[str, tuple[int, int]]]:
    """(SQL statements, pool checkouts) that one request of each operation costs on each
    server, counted in process with Flask's test client after a warm-up request (so
    caches are filled). On PostgreSQL every checkout also pays a ping (pool_pre_ping)."""
    import baseline_app

    from loom.app import create_app
    from loom.db import create_engine

    result = {}
    for kind in ("loom", "baseline"):
        engine = create_engine(url)
        counter = _Counter(engine)
        if kind == "loom":
            app = create_app({"DATABASE_URL": url, "ENGINE": engine, "SECRET_KEY": "count",
                              "INSTANCE_PATH": os.path.join(workdir, "count"), "DISCOVER_PLUGINS": False})
        else:
            app = baseline_app.create_app(engine, "count")
        try:
            result[kind] = _count_requests(kind, app.test_client(), counter, token)
        finally:
            engine.dispose()
    return result


# -- keyset pagination in process ------------------------------------------------------------

def keyset_latency(url: str, pages: int) -> dict[str, Any]:
    """Walk ``pages`` pages of each region's customers, newest first, through the record
    service (no HTTP) as the API user under its role, timing each page; then EXPLAIN
    ANALYZE the last page's query."""
    from loom.db import create_engine
    from loom.identity.service import IdentityService
    from loom.permissions import Policy
    from loom.plugins import plugin_manager
    from loom.records.query import Cursors
    from loom.records.service import Context, RecordService
    from loom.schema.service import MetadataService

    engine = create_engine(url)
    statements: list[tuple[str, Any]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _remember(conn, cursor, statement, parameters, context, executemany):
        if "FROM e_customer" in statement and "ORDER BY" in statement:
            statements[:] = [(statement, parameters)]

    live = MetadataService(engine).live()
    context = Context(engine=engine, live=live, principal=IdentityService(engine).principal_for(BENCH_USER),
                      hooks=plugin_manager(discover=False).hook, cursors=Cursors(secrets.token_hex(16)),
                      policy=Policy(live.model))
    timings: list[float] = []
    try:
        for region in REGIONS:
            cursor = None
            for _ in range(pages):
                args = {"filter[region][eq]": region, "sort": "-created_at,-id", "limit": "50"}
                if cursor:
                    args["cursor"] = cursor
                began = time.perf_counter()
                page = RecordService(context, "customer").list(args)
                timings.append(time.perf_counter() - began)
                cursor = page.next_cursor
                if cursor is None:
                    break
        statement, parameters = statements[-1]
        with engine.connect() as conn:
            plan = [row[0] for row in conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + statement, parameters)]
    finally:
        engine.dispose()
    return {"pages": len(timings), "p50_ms": percentile(timings, 0.50) * 1000,
            "p99_ms": percentile(timings, 0.99) * 1000, "max_ms": max(timings) * 1000, "plan": plan}


# -- the run ----------------------------------------------------------------------------------

def prepare(url: str, rows: int, workdir: str) -> tuple[float, str]:
    """Create Loom's tables, publish the Customer entity and the API user's role through
    the app's metadata service, add users (and the API user's token) and load ``rows``
    customers; returns the load time in seconds and the token."""
    from loom.app import create_app
    from loom.db import create_engine, upgrade
    from loom.schema.service import model_from_documents

    engine = create_engine(url)
    try:
        upgrade(engine)
        app = create_app({"DATABASE_URL": url, "ENGINE": engine, "INSTANCE_PATH": os.path.join(workdir, "setup"),
                          "SECRET_KEY": "setup", "DISCOVER_PLUGINS": False})
        model = model_from_documents([customer_document(), role_document()])
        app.extensions["loom"].metadata.apply(model, author="bench")
        insert_users(engine)
        token = create_api_user(engine)
        began = time.perf_counter()
        fill_customers(engine, rows)
        return time.perf_counter() - began, token
    finally:
        engine.dispose()


def ratio_table(results: dict[tuple[str, str], Result], operations: list[str]) -> list[str]:
    """The results as a Markdown table, Loom next to the baseline."""
    lines = ["| operation | Loom req/s | baseline req/s | Loom/baseline | Loom p50 ms | baseline p50 ms "
             "| Loom p99 ms | baseline p99 ms | errors (L/b) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for op in operations:
        a, b = results[("loom", op)], results[("baseline", op)]
        ratio = a.rps / b.rps if b.rps else float("nan")
        lines.append(f"| {op} | {a.rps:.0f} | {b.rps:.0f} | {ratio:.2f}x | {a.p50_ms:.1f} | {b.p50_ms:.1f} "
                     f"| {a.p99_ms:.1f} | {b.p99_ms:.1f} | {a.errors}/{b.errors} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=2000, help="customers to load (default 2000)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per operation and server")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every operation this many times per server, alternating which server "
                             "goes first; the samples are merged (default 1)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="request bound per measurement")
    parser.add_argument("--operations", default=",".join(OPERATIONS), help="comma-separated subset of "
                        + ", ".join(OPERATIONS))
    parser.add_argument("--keyset-pages", type=int, default=100, help="pages walked per region in process")
    parser.add_argument("--metadata-check-interval", type=float, default=0.0,
                        help="Loom's METADATA_CHECK_INTERVAL (default 0, Loom's own default)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (a schema bench_api is used)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--serve", choices=("loom", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--instance", help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.database_url, args.port, args.instance, args.secret, args.metadata_check_interval)
        return 0
    operations = [op.strip() for op in args.operations.split(",") if op.strip()]
    unknown = set(operations) - set(OPERATIONS)
    if unknown or args.rows < max(args.clients, 2):
        parser.error(f"unknown operations {sorted(unknown)}" if unknown else "--rows must exceed --clients")

    print(f"# Loom API benchmark: {args.db}, {args.rows:,} rows, {args.clients} clients, "
          f"{args.rounds} x {args.seconds:g} s per operation and server", flush=True)
    print(f"machine: {machine()}", flush=True)
    print(f"loom: {loom_revision()}", flush=True)
    report: dict[str, Any] = {"db": args.db, "rows": args.rows, "clients": args.clients, "seconds": args.seconds,
                              "rounds": args.rounds, "machine": machine(), "loom": loom_revision()}
    with scratch_database(args.db, args.pg_url, SCHEMA) as database:
        report["load_seconds"], token = prepare(database.url, args.rows, database.workdir)
        print(f"loaded {args.rows:,} customers in {report['load_seconds']:.1f} s", flush=True)
        secret = secrets.token_hex(16)
        servers: dict[str, Server] = {}
        try:
            for kind in ("loom", "baseline"):
                servers[kind] = start_server(kind, database.url, database.workdir, secret,
                                             args.metadata_check_interval, token)
            checkers = (Http(servers["loom"].port, token), Http(servers["baseline"].port, token))
            problems = check_same_answers(*checkers)
            for checker in checkers:
                checker.close()
            if problems:
                print("the servers answer differently; the comparison would be meaningless:", *problems,
                      sep="\n  ")
                return 1
            print("both servers give the same answers (records, pages, ETags, validation fields)", flush=True)
            report["statements"] = statement_counts(database.url, token, database.workdir)
            print("SQL statements / pool checkouts per request (in process, warm):", flush=True)
            for op in OPERATIONS:
                (ls, lc), (bs, bc) = report["statements"]["loom"][op], report["statements"]["baseline"][op]
                print(f"  {op:6}  Loom {ls:2} / {lc}   baseline {bs:2} / {bc}", flush=True)
            shared = Shared(rows=args.rows, clients=args.clients)
            workers = {kind: [Worker(i, Http(s.port, token), shared) for i in range(args.clients)]
                       for kind, s in servers.items()}
            results: dict[tuple[str, str], Result] = {}
            for round_no in range(args.rounds):
                for n, op in enumerate(operations):
                    order = ("loom", "baseline") if (n + round_no) % 2 == 0 else ("baseline", "loom")
                    for kind in order:
                        seed = n * 100 + round_no
                        shared.phase += 1
                        if args.warmup > 0:
                            run_phase(workers[kind], kind, op, args.warmup, args.max_requests, seed)
                        shared.phase += 1
                        result = run_phase(workers[kind], kind, op, args.seconds, args.max_requests, seed)
                        earlier = results.get((kind, op))
                        results[(kind, op)] = earlier.merged(result) if earlier else result
                        print(f"  round {round_no + 1} {kind:8} {op:6} {result.rps:8.0f} req/s  "
                              f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  "
                              f"errors {result.errors} {result.first_error}", flush=True)
            for ws in workers.values():
                for w in ws:
                    w.http.close()
        finally:
            for server in servers.values():
                server.stop()
        print()
        print("\n".join(ratio_table(results, operations)))
        report["results"] = [{**{k: v for k, v in asdict(r).items() if k != "latencies"}, "rps": r.rps}
                             for r in results.values()]
        if args.db == "postgresql":
            keyset = keyset_latency(database.url, args.keyset_pages)
            report["keyset"] = keyset
            print(f"\nkeyset list page through the record service at {args.rows:,} rows: {keyset['pages']} pages, "
                  f"p50 {keyset['p50_ms']:.1f} ms, p99 {keyset['p99_ms']:.1f} ms, max {keyset['max_ms']:.1f} ms")
            print("plan of the last page:", *keyset["plan"], sep="\n    ")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
