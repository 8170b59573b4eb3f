"""A million-row import through the import screens: memory and speed, measured.

A Loom server runs as ``loom serve`` runs it (its defaults, the environment's settings,
``LOOM_MAX_CONTENT_LENGTH`` raised to take the file) on a fresh database holding
two entities of this script's own: ``carrier`` (50 records) and ``shipment`` (fourteen
fields: strings, an email, a phone, two selects, a decimal, an integer, a date, a yes/no,
a text, a unique reference, a link to a carrier and a link to a user). The script writes a
CSV of ``--rows`` shipments to disk row by row (choices given by their label, links by the
linked record's title or the user's display name, as a person's export holds them), then
does what a person does on the screens, over HTTP: signs in, uploads the file on
``/r/shipment/_import``, opens the mapping page (which tries the first 500 rows) and starts
the import with the mapping Loom proposed. The import then runs as it always does, as a
background job of the server process (``loom.ui.importing.run_import``).

While the job runs, the script samples the server's RSS (``/proc/<pid>/status`` VmRSS)
and the job's rows done (its ``processed`` count, saved after every chunk) twice a second,
and prints the RSS when 10k, 100k, 250k, 500k and 1M rows were done, the peak, the rows
per second, and the CPU time the server's processes used meanwhile (rows per CPU second
moves less than the wall clock on a shared machine; PostgreSQL's own processes are not
counted). RSS is that of all the server's processes added up: ``loom serve`` may answer
from worker processes, and the job runs in one of them. At the end it checks that the
job is done with every row imported, that the table holds every row, that the audit log
has one ``record.create`` entry per row and the import's own entry, that the outbox has
one event per row, and that ``loom audit verify`` passes on the whole chain.

    python bench/import_memory.py --db sqlite              # 1,000,000 rows
    python bench/import_memory.py --db postgresql --rows 100000
    python bench/import_memory.py --db sqlite --rows 200000 --flame bench/flames/import-sqlite.svg

``--flame FILE`` records the server with py-spy (``pip install py-spy``) from the moment the
import starts to its end. Everything the script creates (a temporary folder with the CSV,
the SQLite file and the instance; the PostgreSQL schema ``bench_import``) is removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from benchlib import DEFAULT_PG_URL, loom_revision, machine, scratch_database, stop_process

SCHEMA = "bench_import"
ENTITY = "shipment"
USERNAME = "importer"
PASSWORD = "import benchmark password"
CARRIERS = 50
CLERKS = 20
#: rows done at which the RSS is shown (those up to ``--rows``, and ``--rows`` itself)
MILESTONES = (10_000, 100_000, 250_000, 500_000, 1_000_000)
SAMPLE_SECONDS = 0.5
STATUSES = (("booked", "Booked"), ("in_transit", "In transit"), ("delivered", "Delivered"),
            ("returned", "Returned"))
PRIORITIES = (("low", "Low"), ("normal", "Normal"), ("urgent", "Urgent"))
CITIES = ("Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu", "Wuhan", "Xi'an", "Nanjing")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- what the server holds ------------------------------------------------------------------------

def documents() -> list[dict[str, Any]]:
    """The carrier and shipment entities, and the importer's role."""
    carrier = {"kind": "entity", "name": "carrier", "title_field": "name",
               "fields": [{"name": "name", "type": "string", "required": True, "unique": True, "max_length": 100},
                          {"name": "code", "type": "string", "max_length": 10}]}
    shipment = {
        "kind": "entity", "name": ENTITY, "title_field": "reference",
        "fields": [
            {"name": "reference", "type": "string", "required": True, "unique": True, "max_length": 40},
            {"name": "consignee", "type": "string", "required": True, "max_length": 200},
            {"name": "email", "type": "email"},
            {"name": "phone", "type": "phone", "validators": ["cn_mobile"]},
            {"name": "city", "type": "string", "max_length": 100},
            {"name": "status", "type": "select", "required": True,
             "options": [{"value": v, "label": {"en": label}} for v, label in STATUSES]},
            {"name": "priority", "type": "select", "options": [{"value": v, "label": {"en": label}}
                                                               for v, label in PRIORITIES]},
            {"name": "declared_value", "type": "decimal", "precision": 14, "scale": 2},
            {"name": "weight_g", "type": "integer"},
            {"name": "shipped_on", "type": "date"},
            {"name": "is_fragile", "type": "boolean"},
            {"name": "carrier", "type": "link", "target": "carrier"},
            {"name": "handler", "type": "link", "target": "user"},
            {"name": "notes", "type": "text"},
        ],
    }
    role = {"kind": "role", "name": "shipping_clerk",
            "permissions": {ENTITY: {"actions": ["read", "create", "import"], "scope": "all"},
                            "carrier": {"actions": ["read"], "scope": "all"}}}
    return [carrier, shipment, role]


def set_up(url: str, instance: str) -> None:
    """Loom's tables, the entities and role through the metadata service, the importing
    user (with a password, to sign in), the clerks shipments name as handlers, and the
    carriers (through the record service)."""
    from loom.app import create_app
    from loom.db import upgrade
    from loom.principal import Principal
    from loom.records.door import record_service
    from loom.schema.service import model_from_documents

    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": instance, "SECRET_KEY": "set-up",
                      "DISCOVER_PLUGINS": False})
    loom = app.extensions["loom"]
    try:
        upgrade(loom.engine)
        loom.metadata.apply(model_from_documents(documents()), author="bench")
        loom.identity.create_user(USERNAME, password=PASSWORD, display_name="Import Bench",
                                  roles=["shipping_clerk"])
        for i in range(1, CLERKS + 1):
            loom.identity.create_user(f"clerk{i}", display_name=f"Clerk {i}")
        with app.app_context():
            carriers = record_service("carrier", Principal.system("bench"), app=app)
            carriers.bulk_create([{"name": carrier_name(i), "code": f"C{i:03d}"} for i in range(CARRIERS)])
    finally:
        loom.engine.dispose()


def carrier_name(i: int) -> str:
    return f"Carrier {i:02d} Logistics"


# -- the file ---------------------------------------------------------------------------------------

HEADER = ("reference", "consignee", "email", "phone", "city", "status", "priority", "declared_value",
          "weight_g", "shipped_on", "is_fragile", "carrier", "handler", "notes")


def shipment_row(i: int) -> list[str]:
    """Row ``i`` of the file as a person's spreadsheet holds it: choices by label, links by
    title (a carrier's name, a clerk's display name), yes/no as words."""
    return [f"SHP-{i:010d}", f"Consignee {i} Trading Co.", f"consignee{i}@example.com",
            f"139{i % 100_000_000:08d}", CITIES[i % len(CITIES)], STATUSES[i % len(STATUSES)][1],
            PRIORITIES[i % len(PRIORITIES)][1], f"{(i * 37) % 10_000_000 / 100:.2f}", str(100 + i % 50_000),
            (date(2024, 1, 1) + timedelta(days=i % 700)).isoformat(), "yes" if i % 7 == 0 else "no",
            carrier_name(i % CARRIERS), f"Clerk {i % CLERKS + 1}", f"Shipment {i}, handle with care" if i % 3 else ""]


def write_csv(path: str, rows: int) -> int:
    """Write the file row by row (never whole in memory); returns its size in bytes."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(1, rows + 1):
            writer.writerow(shipment_row(i))
    return os.path.getsize(path)


# -- the server -------------------------------------------------------------------------------------

def serve(port: int) -> None:
    """``loom serve`` in this process (the server subprocess), its settings from the
    environment as an installation's."""
    from loom.cli import main

    main(["serve", "--port", str(port)], standalone_mode=True)


@dataclass
class Server:
    """The ``loom serve`` subprocess, its port and its log."""

    port: int
    process: subprocess.Popen
    log_path: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process)

    def log_tail(self) -> str:
        with open(self.log_path) as log:
            return log.read()[-3000:]


def loom_environment(url: str, instance: str, secret: str, max_bytes: int) -> dict[str, str]:
    return {**os.environ, "LOOM_DATABASE_URL": url, "LOOM_INSTANCE_PATH": instance, "LOOM_SECRET_KEY": secret,
            "LOOM_MAX_CONTENT_LENGTH": str(max_bytes)}


def start_server(environment: dict[str, str], workdir: str) -> Server:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = os.path.join(workdir, "serve.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=environment)
    server = Server(port, process, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sign-in", timeout=2) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"loom serve did not start:\n{server.log_tail()}")


def proc_status_mib(pid: int, key: str) -> float:
    """A ``/proc/<pid>/status`` value (VmRSS, VmHWM) in MiB, 0 for a process gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return float(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process it started, and they started (``loom serve`` may answer
    from worker processes: the import job runs in one of them)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # the name, in parentheses, may hold spaces: the parent's pid is the 2nd field after it
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, ()))
    return tree


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User and system CPU time each process has used so far (``/proc/<pid>/stat``)."""
    used = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return used


def server_rss_mib(pid: int) -> float:
    """The resident memory of the server: its processes' VmRSS added up."""
    return sum(proc_status_mib(p, "VmRSS") for p in process_tree(pid))


# -- a person on the screens ----------------------------------------------------------------------------

class Browser:
    """A signed-in person: a session cookie, the page's CSRF token sent with every form."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.token = ""

    def open(self, path: str, data: Any = None, headers: dict[str, str] | None = None) -> tuple[str, str]:
        """Request ``path`` (following redirects); the final URL and the page."""
        request = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        if data is not None:
            request.add_header("X-CSRFToken", self.token)
        try:
            with self.opener.open(request, timeout=3600) as reply:
                return reply.geturl(), reply.read().decode()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{exc.code} from {path}: {exc.read().decode(errors='replace')[:1000]}") from None

    def post_form(self, path: str, values: dict[str, str]) -> tuple[str, str]:
        body = urllib.parse.urlencode({**values, "csrf_token": self.token}).encode()
        return self.open(path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def sign_in(self, username: str, password: str) -> None:
        self.token = _CSRF.search(self.open("/sign-in")[1]).group(1)
        _url, page = self.post_form("/sign-in", {"username": username, "password": password})
        found = _CSRF.search(page)
        if found is None or "sign-in" in _url:
            raise RuntimeError("signing in failed")
        self.token = found.group(1)

    def upload(self, path: str, filename: str, file_path: str) -> tuple[str, str]:
        """Post a file as a browser posts a form with a file input, streamed from disk."""
        boundary = secrets.token_hex(16)
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{self.token}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                "Content-Type: text/csv\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            with open(file_path, "rb") as f:
                while piece := f.read(1 << 20):
                    yield piece
            yield tail

        length = len(head) + os.path.getsize(file_path) + len(tail)
        return self.open(path, body(), {"Content-Type": f"multipart/form-data; boundary={boundary}",
                                        "Content-Length": str(length)})


def proposed_mapping(page: str) -> dict[str, str]:
    """The mapping page's chosen field for each column, as the form would post it."""
    chosen = dict(re.findall(r'<select[^>]*name="(column-\d+)".*?<option value="(\w*)" selected', page, re.S))
    if not chosen:
        raise RuntimeError("the mapping page shows no column mapping")
    return chosen


# -- the run ----------------------------------------------------------------------------------------

@dataclass
class Run:
    """One import: what was timed, the samples (seconds into the import, rows done, RSS
    MiB) and the checks afterwards."""

    dialect: str
    rows: int
    file_mib: float
    upload_seconds: float = 0.0
    mapping_seconds: float = 0.0
    import_seconds: float = 0.0
    rss_before_upload: float = 0.0
    rss_before_import: float = 0.0
    peak_rss_import: float = 0.0
    peak_rss_life: float = 0.0
    processes: int = 1
    #: CPU seconds the server's processes used during the import (PostgreSQL's own not included)
    cpu_seconds: float = 0.0
    samples: list[tuple[float, int, float]] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.import_seconds


def job_state(engine: sa.Engine, job_id: int) -> Any:
    """The job's status, rows done and message, and when it last changed (UTC)."""
    from loom.ui.models import import_jobs

    with engine.connect() as conn:
        job = conn.execute(sa.select(import_jobs.c.status, import_jobs.c.processed, import_jobs.c.message,
                                     import_jobs.c.updated_at).where(import_jobs.c.id == job_id)).one()
    updated = job.updated_at if job.updated_at.tzinfo else job.updated_at.replace(tzinfo=UTC)
    return job.status, job.processed, job.message, updated


def run_import(server: Server, engine: sa.Engine, run: Run, csv_path: str, flame: str | None) -> int:
    """Sign in, upload, open the mapping page, start the import and sample it to the end;
    returns the job id."""
    browser = Browser(server.port)
    browser.sign_in(USERNAME, PASSWORD)
    run.rss_before_upload = server_rss_mib(server.pid)
    began = time.perf_counter()
    job_url, _page = browser.upload(f"/r/{ENTITY}/_import", f"{ENTITY}s.csv", csv_path)
    run.upload_seconds = time.perf_counter() - began
    job_path = urllib.parse.urlparse(job_url).path
    job_id = int(job_path.rsplit("/", 1)[1])
    began = time.perf_counter()
    _url, page = browser.open(job_path)
    run.mapping_seconds = time.perf_counter() - began
    if f"{run.rows:,} rows to import" not in page and f"{run.rows} rows to import" not in page:
        raise RuntimeError("the mapping page does not count the file's rows")
    mapping = proposed_mapping(page)
    if sorted(mapping.values()) != sorted(HEADER):
        raise RuntimeError(f"Loom proposed another mapping than the file's column names: {mapping}")
    run.rss_before_import = server_rss_mib(server.pid)
    profiler = start_profiler(server.pid, flame) if flame else None
    cpu_before = cpu_seconds(process_tree(server.pid))
    began, started_at = time.perf_counter(), datetime.now(UTC)
    try:
        browser.post_form(job_path, mapping)
        status, message = "running", None
        while status in ("queued", "running"):
            status, processed, message, updated = job_state(engine, job_id)
            run.samples.append((time.perf_counter() - began, processed, server_rss_mib(server.pid)))
            if status in ("queued", "running"):
                time.sleep(SAMPLE_SECONDS)
        # the job says when it was done, which the samples see up to half a second late
        run.import_seconds = (updated - started_at).total_seconds()
        cpu_after = cpu_seconds(process_tree(server.pid))
        run.cpu_seconds = sum(cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after)
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes what it recorded on an interrupt
            profiler.wait(timeout=120)
    run.peak_rss_import = max(rss for _t, _rows, rss in run.samples)
    run.processes = len(process_tree(server.pid))
    run.peak_rss_life = max(proc_status_mib(p, "VmHWM") for p in process_tree(server.pid))
    if status != "done":
        raise RuntimeError(f"the import ended {status}: {message}\n{server.log_tail()}")
    return job_id


def start_profiler(pid: int, flame: str) -> subprocess.Popen:
    tool = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(tool):
        raise SystemExit("--flame needs py-spy: pip install py-spy")
    kind = "flamegraph" if flame.endswith(".svg") else "raw"  # raw: collapsed stacks, as text
    process = subprocess.Popen([tool, "record", "--pid", str(pid), "--subprocesses", "--output", flame,
                                "--format", kind, "--rate", "100", "--nonblocking"], stdout=subprocess.DEVNULL)
    time.sleep(1)  # py-spy attaches
    return process


def check(engine: sa.Engine, environment: dict[str, str], run: Run, job_id: int) -> None:
    """Every row imported, stored, audited and announced once; the audit chain intact."""
    with engine.connect() as conn:
        def count(sql: str) -> int:
            return conn.execute(sa.text(sql)).scalar_one()

        checks = {
            "job imported": count(f"SELECT imported FROM loom_import_jobs WHERE id = {job_id}"),
            "rows stored": count(f"SELECT count(*) FROM e_{ENTITY}"),
            "record.create entries": count(f"SELECT count(*) FROM loom_audit WHERE action = 'record.create' "
                                           f"AND entity = '{ENTITY}'"),
            "outbox events": count(f"SELECT count(*) FROM loom_outbox WHERE topic = 'record.created' "
                                   f"AND entity = '{ENTITY}'"),
        }
        entry = conn.execute(sa.text("SELECT rows, outcome FROM loom_audit WHERE action = 'record.import' "
                                     f"AND entity = '{ENTITY}'")).all()
    began = time.perf_counter()
    verified = subprocess.run([loom_command(), "audit", "verify"], env=environment, capture_output=True, text=True)
    run.checks = {**checks, "record.import entry": [tuple(e) for e in entry],
                  "audit verify": (verified.stdout or verified.stderr).strip().split(";")[0],
                  "verify seconds": round(time.perf_counter() - began, 1)}
    wrong = [name for name, value in checks.items() if value != run.rows]
    if entry != [(run.rows, "ok")]:
        wrong.append("record.import entry")
    if verified.returncode != 0:
        wrong.append("audit verify")
    if wrong:
        raise RuntimeError(f"the import is incomplete ({', '.join(wrong)}): {run.checks}")


def loom_command() -> str:
    """The ``loom`` command of this interpreter's installation."""
    beside = os.path.join(os.path.dirname(sys.executable), "loom")
    found = beside if os.path.exists(beside) else shutil.which("loom")
    if not found:
        raise SystemExit("the loom command is not installed (pip install -e .)")
    return found


def measure(dialect: str, pg_url: str, rows: int, flame: str | None) -> Run:
    with scratch_database(dialect, pg_url, SCHEMA) as database:
        csv_path = os.path.join(database.workdir, f"{ENTITY}s.csv")
        size = write_csv(csv_path, rows)
        run = Run(dialect, rows, size / (1 << 20))
        instance = os.path.join(database.workdir, "instance")
        set_up(database.url, instance)
        # the request carrying the file must fit: an installation importing such files raises it too
        environment = loom_environment(database.url, instance, secrets.token_hex(16), size + (1 << 20))
        server = start_server(environment, database.workdir)
        engine = sa.create_engine(database.url)
        try:
            job_id = run_import(server, engine, run, csv_path, flame)
            server.stop()
            check(engine, environment, run, job_id)
        finally:
            server.stop()
            engine.dispose()
    return run


def report(run: Run) -> list[str]:
    """The run as Markdown: RSS at the milestones, the peak, the speed, the checks."""
    lines = [f"### {run.dialect}: {run.rows:,} rows ({run.file_mib:.0f} MiB of CSV)", "",
             f"upload (request, row count, storing the file) {run.upload_seconds:.1f} s; mapping page "
             f"(tries {min(run.rows, 500)} rows) {run.mapping_seconds:.1f} s. RSS is that of the server's "
             f"{run.processes} process(es) added up: {run.rss_before_upload:.0f} MiB signed in, "
             f"{run.rss_before_import:.0f} MiB when the import starts.", "",
             "| rows done | seconds into the import | RSS MiB |", "|---:|---:|---:|"]
    points = [m for m in MILESTONES if m < run.rows] + [run.rows]
    at = {}
    for point in points:
        sample = next((s for s in run.samples if s[1] >= point), run.samples[-1])
        at[point] = sample[2]
        lines.append(f"| {point:,} | {sample[0]:.1f} | {sample[2]:.0f} |")
    growth = ""
    if 100_000 in at and run.rows > 100_000:
        growth = f"; from 100,000 rows to the end: {at[run.rows] - at[100_000]:+.0f} MiB"
    lines += ["", f"peak RSS during the import {run.peak_rss_import:.0f} MiB{growth}; the largest process's own "
                  f"peak (VmHWM, the upload included) {run.peak_rss_life:.0f} MiB",
              f"**{run.rows_per_second:,.0f} rows/s** overall ({run.rows:,} rows in {run.import_seconds:.1f} s, "
              "from starting the import to the job shown done, its audit entry and ANALYZE included); "
              f"the server's processes used {run.cpu_seconds:.1f} CPU s meanwhile: "
              f"{run.rows / run.cpu_seconds:,.0f} rows per CPU second"
              + (" (PostgreSQL's own processes not counted)" if run.dialect == "postgresql" else ""),
              "checks: " + ", ".join(f"{name} {value}" for name, value in run.checks.items())]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the file (default 1,000,000)")
    parser.add_argument("--flame", metavar="FILE", help="record the server with py-spy during the import "
                                                        "(FILE.svg, or collapsed stacks for any other name)")
    parser.add_argument("--json", help="also write the raw numbers and samples to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.port)
        return 0
    if args.rows < 1:
        parser.error("--rows must be at least 1")

    revision = loom_revision()  # at the start: the checkout may change while the import runs
    print("# A million-row import")
    print(f"machine: {machine()}; load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at start")
    print(f"loom: {revision}\n")
    run = measure(args.db, args.pg_url, args.rows, args.flame)
    print("\n".join(report(run)))
    print(f"\nload average {' / '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"loom": revision, "machine": machine(), **run.__dict__,
                       "rows_per_second": run.rows_per_second}, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
