"""Bulk loads: rows per second through ``POST /api/v1/customer/_bulk``, and the memory of a
large import job.

**Bulk API.** A Loom server runs as ``loom serve`` runs it (waitress, 8 threads, the app
factory) on a fresh database holding Loom's tables, the Customer entity of ``benchlib``
(a unique credit code, a phone number checked by the ``cn_mobile`` validator, a link to a
user, a composite index), a role that may create customers and an API token. A client
sends ``--rows`` customers in requests of ``--batch`` rows each from ``--clients``
threads over persistent HTTP connections; the request bodies are encoded before the clock
starts. Every row is validated, link-checked, audited (one hash-chained entry each) and
gets its outbox event, as any API write does. After the load the script checks that the
table holds every row, that there is one ``record.create`` entry per row and that the
audit chain verifies (``loom audit verify``), and prints the server's peak RSS; on
PostgreSQL it also shows whether the table was analysed.

With ``--compare PYTHON`` each round also runs the same load against a server started by
another interpreter (a virtual environment with another Loom checkout installed, e.g. the
commit before a change), on its own fresh database; the two alternate which goes first
from round to round, and the ratio of the medians is printed.

**Import memory.** With ``--import-rows N`` it instead generates an N-row CSV file, stores
it as an import job and runs the job the way the import screen's background job does
(``loom.ui.importing.run_import``) in a subprocess, sampling that process's RSS twice a
second: a flat curve means memory does not grow with the rows imported.

    python bench/bulk_bench.py --db sqlite --rows 20000
    python bench/bulk_bench.py --db sqlite --db postgresql --rows 100000 --rounds 3 \\
        --compare /path/to/other/venv/bin/python
    python bench/bulk_bench.py --db sqlite --import-rows 1000000

Everything it creates (temporary SQLite files, the PostgreSQL schema ``bench_bulk``) is
removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from benchlib import (
    BENCH_USER,
    DEFAULT_PG_URL,
    LEVELS,
    REGIONS,
    ROLE,
    USERS,
    customer_document,
    loom_revision,
    machine,
    percentile,
    scratch_database,
    stop_process,
)

SCHEMA = "bench_bulk"
BULK_PATH = "/api/v1/customer/_bulk"
#: the threads ``loom serve`` gives waitress by default
SERVER_THREADS = 8
HERE = os.path.dirname(os.path.abspath(__file__))


# -- what every server is set up with -------------------------------------------------------------

def role_document() -> dict[str, Any]:
    """The loader's role: customers, every action a load needs, on every row."""
    return {"kind": "role", "name": ROLE,
            "permissions": {"customer": {"actions": ["read", "create", "update", "import"], "scope": "all"}}}


def set_up(app: Any) -> str:
    """Publish the Customer entity, make the users customers link to and the loader (with
    an API token); returns the token. Runs in the server's own interpreter, so it works
    with whichever Loom checkout that interpreter has."""
    from loom.schema.service import model_from_documents

    loom = app.extensions["loom"]
    loom.metadata.apply(model_from_documents([customer_document(), role_document()]), author="bench")
    for i in range(1, USERS + 1):
        loom.identity.create_user(f"manager{i}", display_name=f"Manager {i}")
    loom.identity.create_user(BENCH_USER, display_name="Bench User", roles=[ROLE])
    return loom.identity.create_token(BENCH_USER, name="bulk benchmark").token


def customer(i: int) -> dict[str, Any]:
    """Customer ``i`` as the API takes it: every field set, the link to one of the users."""
    return {"name": f"Customer {i}", "credit_code": f"BK{i:016d}", "level": LEVELS[i % 3],
            "region": REGIONS[i % 5], "credit_limit": f"{(i * 37) % 10_000_000 / 100:.2f}",
            "mobile": f"139{i % 100_000_000:08d}", "email": f"c{i}@example.com", "city": f"City {i % 300}",
            "notes": f"Loaded by the bulk benchmark, row {i}", "account_manager": i % USERS + 1}


def checkout_revision() -> str:
    """The commit of the Loom checkout this interpreter imports (which may not be the one
    this script lives in, with ``--compare``)."""
    import loom

    folder = os.path.dirname(os.path.abspath(loom.__file__))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"unknown ({folder})"
    return f"{commit} with {len(dirty)} changed files" if dirty else commit


def serve(url: str, port: int, instance: str, ready: str, workers: int = 0) -> None:
    """The server process: set up, say so in ``ready`` (the token and the checkout's
    commit), serve with waitress, or with ``workers`` > 0 as ``loom serve --workers``
    serves (granian)."""
    import waitress

    from loom.app import create_app
    from loom.db import upgrade

    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": instance, "SECRET_KEY": "bulk-bench",
                      "DISCOVER_PLUGINS": False})
    upgrade(app.extensions["loom"].engine)
    with app.app_context():
        token = set_up(app)
    with open(ready + ".part", "w") as out:
        out.write(f"{token}\n{checkout_revision()}")
    os.replace(ready + ".part", ready)
    if workers:
        from loom.cli import main as loom_command

        app.extensions["loom"].engine.dispose()
        os.environ.update({"LOOM_DATABASE_URL": url, "LOOM_INSTANCE_PATH": instance, "LOOM_SECRET_KEY": "bulk-bench"})
        loom_command(["serve", "--port", str(port), "--threads", str(SERVER_THREADS), "--workers", str(workers)])
        return
    waitress.serve(app, host="127.0.0.1", port=port, threads=SERVER_THREADS, ident="loom")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    python: str
    port: int
    token: str
    process: subprocess.Popen
    revision: str = ""

    def peak_rss_mib(self) -> float:
        return _proc_status(self.process.pid, "VmHWM") / 1024

    def stop(self) -> None:
        stop_process(self.process)


def _proc_status(pid: int, key: str) -> float:
    """A ``/proc/<pid>/status`` value in KiB (VmRSS, VmHWM), or NaN where there is none."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def start_server(python: str, url: str, workdir: str, label: str, workers: int = 0) -> Server:
    port = _free_port()
    ready = os.path.join(workdir, f"{label}.ready")
    log_path = os.path.join(workdir, f"{label}.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [python, os.path.join(HERE, "bulk_bench.py"), "--serve", "--database-url", url, "--port", str(port),
             "--instance", os.path.join(workdir, f"{label}-instance"), "--ready", ready,
             "--server-workers", str(workers)],
            stdout=log, stderr=subprocess.STDOUT, cwd=HERE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(ready):
            with open(ready) as f:
                token, revision = f.read().split("\n", 1)
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return Server(python, port, token, process, revision)
            except OSError:
                pass
        time.sleep(0.1)
    Server(python, port, "", process).stop()
    with open(log_path) as log:
        raise RuntimeError(f"the server ({python}) did not start:\n{log.read()[-3000:]}")


# -- the load ---------------------------------------------------------------------------------------

@dataclass
class Load:
    """One bulk load against one server."""

    server: str
    revision: str
    dialect: str
    rows: int
    seconds: float
    request_p50_ms: float
    request_max_ms: float
    peak_rss_mib: float
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


def bodies(rows: int, batch: int) -> list[bytes]:
    """The request bodies, encoded up front so the client's own work is not timed."""
    return [json.dumps([customer(i) for i in range(start, min(start + batch, rows + 1))]).encode()
            for start in range(1, rows + 1, batch)]


def run_load(server: Server, payloads: list[bytes], clients: int) -> tuple[float, list[float], int]:
    """Send every payload, ``clients`` at a time; returns (seconds, request latencies, ids
    created). Any refused request stops the benchmark: the numbers would not mean much."""
    queue = list(reversed(payloads))
    lock = threading.Lock()
    latencies: list[float] = []
    created = [0]
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
        try:
            while not failures:
                with lock:
                    if not queue:
                        return
                    payload = queue.pop()
                start = time.perf_counter()
                conn.request("POST", BULK_PATH, body=payload, headers=headers)
                response = conn.getresponse()
                data = response.read()
                took = time.perf_counter() - start
                if response.status != 201:
                    failures.append(f"{response.status}: {data[:500]!r}")
                    return
                with lock:
                    latencies.append(took)
                    created[0] += len(json.loads(data)["data"])
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"a bulk request failed: {failures[0]}")
    return seconds, latencies, created[0]


def check_load(url: str, rows: int) -> dict[str, Any]:
    """What the load left behind: every row stored, one audit entry per row, a chain that
    verifies, and (PostgreSQL) when the table was last analysed."""
    from loom.audit.chain import verify
    from loom.db import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM e_customer")).scalar_one()
            audited = conn.execute(sa.text("SELECT count(*) FROM loom_audit WHERE action = 'record.create' "
                                           "AND entity = 'customer'")).scalar_one()
            events = conn.execute(sa.text("SELECT count(*) FROM loom_outbox WHERE topic = 'record.created'")
                                  ).scalar_one()
            analyzed = None
            if engine.dialect.name == "postgresql":
                analyzed = conn.execute(sa.text(
                    "SELECT coalesce(last_analyze, last_autoanalyze) IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE relname = 'e_customer' AND schemaname = current_schema()")).scalar()
        started = time.perf_counter()
        verdict = verify(engine)
        checks = {"stored": stored, "audited": audited, "events": events, "chain_ok": verdict.ok,
                  "chain_entries": verdict.checked, "verify_seconds": round(time.perf_counter() - started, 2),
                  "analyzed": analyzed}
    finally:
        engine.dispose()
    problems = [name for name, good in (("stored", stored == rows), ("audited", audited == rows),
                                        ("events", events == rows), ("chain", verdict.ok)) if not good]
    if problems:
        raise RuntimeError(f"the load is incomplete ({', '.join(problems)}): {checks}")
    return checks


def measure(python: str, label: str, dialect: str, pg_url: str, payloads: list[bytes], rows: int,
            clients: int, flame: str | None = None, workers: int = 0) -> Load:
    with scratch_database(dialect, pg_url, SCHEMA) as database:
        server = start_server(python, database.url, database.workdir, label, workers)
        profiler = None
        try:
            if flame:
                kind = "flamegraph" if flame.endswith(".svg") else "raw"  # raw: collapsed stacks, as text
                profiler = subprocess.Popen([flame_tool(), "record", "--pid", str(server.process.pid), "--output", flame,
                                             "--format", kind, "--rate", "200", "--nonblocking"],
                                            stdout=subprocess.DEVNULL)
                time.sleep(1)  # py-spy attaches
            seconds, latencies, created = run_load(server, payloads, clients)
            peak = server.peak_rss_mib()
        finally:
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes the flame graph on an interrupt
                profiler.wait(timeout=60)
            server.stop()
        if created != rows:
            raise RuntimeError(f"{created} ids came back for {rows} rows")
        checks = check_load(database.url, rows)
    return Load(label, server.revision, dialect, rows, seconds, percentile(latencies, 0.5) * 1000,
                max(latencies) * 1000, peak, checks)


def flame_tool() -> str:
    """py-spy, from the PATH or beside this interpreter (``pip install py-spy``)."""
    found = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(found):
        raise SystemExit("--flame needs py-spy: pip install py-spy")
    return found


# -- import memory ----------------------------------------------------------------------------------

def csv_content(rows: int) -> bytes:
    """An N-row customer CSV as a person would export it (header of field names)."""
    out = io.StringIO()
    names = list(customer(1))
    writer = csv.writer(out)
    writer.writerow(names)
    for i in range(1, rows + 1):
        row = customer(i)
        row["account_manager"] = f"Manager {row['account_manager']}"  # a link given by its title
        writer.writerow([row[n] for n in names])
    return out.getvalue().encode()


def import_job(url: str, workdir: str, rows: int, report: str) -> None:
    """Run in its own process: store an N-row import job and run it as the screen's
    background job does, sampling this process's RSS; the samples go to ``report``."""
    from loom.app import create_app
    from loom.db import upgrade
    from loom.ui.importing import run_import, store_job
    from loom.ui.models import import_jobs

    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": os.path.join(workdir, "import-instance"),
                      "SECRET_KEY": "bulk-bench", "DISCOVER_PLUGINS": False})
    loom = app.extensions["loom"]
    upgrade(loom.engine)
    with app.app_context():
        set_up(app)
    principal = loom.identity.principal_for(BENCH_USER)
    content = csv_content(rows)
    with loom.engine.begin() as conn:
        job_id = store_job(conn, user_id=principal.user_id, entity="customer", filename="customers.csv",
                           file=io.BytesIO(content), mapping=list(customer(1)), total=rows, status="running")
    del content
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not done.is_set():
            samples.append((time.perf_counter() - start, _proc_status(os.getpid(), "VmRSS") / 1024))
            done.wait(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    try:
        run_import(app, job_id, principal, "en")
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    with loom.engine.connect() as conn:
        job = conn.execute(sa.select(import_jobs.c.status, import_jobs.c.imported, import_jobs.c.message)
                           .where(import_jobs.c.id == job_id)).one()
    with open(report, "w") as out:
        json.dump({"rows": rows, "revision": checkout_revision(), "seconds": seconds, "status": job.status,
                   "imported": job.imported,
                   "message": job.message, "samples": samples,
                   "peak_rss_mib": _proc_status(os.getpid(), "VmHWM") / 1024}, out)


def measure_import(python: str, dialect: str, pg_url: str, rows: int) -> dict[str, Any]:
    with scratch_database(dialect, pg_url, SCHEMA) as database:
        report = os.path.join(database.workdir, "import.json")
        subprocess.run([python, os.path.join(HERE, "bulk_bench.py"), "--import-job", "--database-url", database.url,
                        "--workdir", database.workdir, "--import-rows", str(rows), "--report", report],
                       check=True, cwd=HERE)
        with open(report) as f:
            result = json.load(f)
    if result["status"] != "done" or result["imported"] != rows:
        raise RuntimeError(f"the import did not finish: {result['status']}, {result['imported']} rows, "
                           f"{result['message']}")
    return result


def print_import(what: str, result: dict[str, Any]) -> None:
    samples = result["samples"]
    rows, seconds = result["rows"], result["seconds"]
    print(f"\n## import job, {what} (loom {result['revision']}): {rows:,} rows in {seconds:.1f} s, "
          f"{rows / seconds:,.0f} rows/s")
    print("| time into the import | share of the time | RSS MiB |")
    print("|---:|---:|---:|")
    for fraction in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        t, rss = samples[min(len(samples) - 1, int(fraction * (len(samples) - 1)))]
        print(f"| {t:.0f} s | {fraction:.0%} | {rss:.0f} |")
    rss = [r for _, r in samples]
    print(f"peak RSS {result['peak_rss_mib']:.0f} MiB; RSS from the first tenth on: "
          f"min {min(rss[len(rss) // 10:]):.0f}, max {max(rss[len(rss) // 10:]):.0f} MiB")


# -- main -------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", choices=("sqlite", "postgresql"), help="repeatable; default sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--rows", type=int, default=20_000, help="rows per load (default 20,000)")
    parser.add_argument("--batch", type=int, default=1000, help="rows per request (default 1,000)")
    parser.add_argument("--clients", type=int, default=1, help="concurrent client connections (default 1)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--compare", metavar="PYTHON",
                        help="also load a server run by this interpreter (another Loom checkout), alternating")
    parser.add_argument("--server-workers", type=int, default=0,
                        help="serve as loom serve --workers N does (granian); 0, the default: waitress, one process; "
                             "the peak RSS is then the master's only")
    parser.add_argument("--import-rows", type=int, help="measure an import job of this many rows instead")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    parser.add_argument("--flame", metavar="FILE", help="record a flame graph (py-spy; FILE.svg, or collapsed "
                                                        "stacks for any other name) of the first load of this "
                                                        "checkout's server")
    # the subprocesses' own arguments
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--import-job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--instance", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.database_url, args.port, args.instance, args.ready, args.server_workers)
        return 0
    if args.import_job:
        import_job(args.database_url, args.workdir, args.import_rows, args.report)
        return 0

    dialects = args.db or ["sqlite"]
    print("# Bulk loads")
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    print(f"loom: {loom_revision()}")
    report: dict[str, Any] = {"loom": loom_revision(), "args": {k: v for k, v in vars(args).items() if v}}
    servers = [("this", sys.executable)] + ([("compare", args.compare)] if args.compare else [])
    if args.import_rows:
        for dialect in dialects:
            for label, python in servers:
                result = measure_import(python, dialect, args.pg_url, args.import_rows)
                print_import(f"{dialect}, {label}", result)
                report[f"import_{dialect}_{label}"] = result
    else:
        payloads = bodies(args.rows, args.batch)
        print(f"{args.rows:,} customers in requests of {args.batch:,} rows from {args.clients} client(s), "
              f"{args.rounds} round(s); servers: " + ", ".join(f"{label} = {python}" for label, python in servers))
        loads: list[Load] = []
        for dialect in dialects:
            for round_number in range(args.rounds):
                order = servers if round_number % 2 == 0 else list(reversed(servers))
                for label, python in order:
                    flame = args.flame if label == "this" and round_number == 0 and dialect == dialects[0] else None
                    load = measure(python, label, dialect, args.pg_url, payloads, args.rows, args.clients, flame,
                                   args.server_workers)
                    loads.append(load)
                    print(f"{dialect} round {round_number + 1} {label} (loom {load.revision}): "
                          f"{load.rows_per_second:,.0f} rows/s "
                          f"({load.seconds:.1f} s; request p50 {load.request_p50_ms:.0f} ms, max "
                          f"{load.request_max_ms:.0f} ms; server peak RSS {load.peak_rss_mib:.0f} MiB; "
                          f"checks {load.checks})", flush=True)
        print("\n| database | server | rows/s (median) | each round | peak RSS MiB |")
        print("|---|---|---:|---|---:|")
        medians: dict[tuple[str, str], float] = {}
        for dialect in dialects:
            for label, _python in servers:
                mine = [x for x in loads if x.dialect == dialect and x.server == label]
                medians[dialect, label] = statistics.median(x.rows_per_second for x in mine)
                print(f"| {dialect} | {label} | {medians[dialect, label]:,.0f} | "
                      f"{', '.join(f'{x.rows_per_second:,.0f}' for x in mine)} | "
                      f"{max(x.peak_rss_mib for x in mine):.0f} |")
            if args.compare:
                print(f"| {dialect} | this / compare | {medians[dialect, 'this'] / medians[dialect, 'compare']:.2f}× | | |")
        report["loads"] = [{**asdict(x), "rows_per_second": x.rows_per_second} for x in loads]
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
