"""The write tail on SQLite: 8 clients creating and updating customers at once.

A Loom server runs as ``loom serve`` runs it (waitress, 8 threads) on a SQLite file
holding the Customer entity of ``benchlib`` and ``--rows`` loaded customers. Half of the
clients create customers, the other half update loaded ones (two fields each, never
the same record twice in a row), all at the same time, for ``--seconds``. The script
prints, per operation and for both together, the request count, p50/p90/p99, the slowest
request and how many took longer than ``--slow-ms`` (250 ms), and the machine's load
average while it ran: on a shared machine the tail moves with everything else.

The clients are two ``wrk`` processes (one creating, one updating, each with half the
connections) when wrk is installed, otherwise Python threads with persistent
connections (``--client threads``); wrk costs the shared cores less. The server reads
its settings from the environment as ``loom serve`` does, so
``LOOM_SQLITE_SYNCHRONOUS=FULL python bench/write_tail.py`` measures FULL.

    python bench/write_tail.py                       # 100,000 rows, 8 clients, 60 s
    python bench/write_tail.py --rows 2000 --seconds 10

Everything it creates (a temporary SQLite file and instance folder) is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from api_bench import LIST_PATH, Http, prepare
from benchlib import REGIONS, USERS, loom_revision, machine, scratch_database, stop_process

OPERATIONS = ("create", "update")
#: a request slower than wrk's timeout counts as an error (and as slow); wrk allocates one
#: counter per microsecond up to it, so it is not set higher than needed
WRK_TIMEOUT_S = 10

# The wrk scripts, with @NAME@ placeholders: @PHASE@ keeps credit codes unique across
# runs, @ROWS@ and @STRIDE@ choose the ids updated. The done() hook prints the request count,
# errors and the whole latency histogram (microseconds), which wrk's own summary only
# gives as rounded percentiles.
_LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SUMMARY %d %d %d\n", summary.requests, summary.duration,
                         e.connect + e.read + e.write + e.status + e.timeout))
  for i = 1, #latency do
    local value, count = latency(i)
    io.write(string.format("LAT %d %d\n", value, count))
  end
end
"""
_LUA_HEADERS = r"""
local function headers()
  local h = {["Content-Type"] = "application/json"}
  for k, v in pairs(wrk.headers) do h[k] = v end
  return h
end
"""
_LUA_CREATE = _LUA_HEADERS + r"""
local counter = 0
local regions = {@REGIONS@}
request = function()
  counter = counter + 1
  local code = string.format("@PHASE@%012d", counter)
  local body = string.format('{"name":"New customer %s","credit_code":"%s","level":"B","region":"%s",'
    .. '"credit_limit":"12345.67","mobile":"13800138000","email":"new.customer@example.com",'
    .. '"city":"Hangzhou","notes":"created by the benchmark","account_manager":%d}',
    code, code, regions[counter % #regions + 1], counter % @USERS@ + 1)
  return wrk.format("POST", "@PATH@", headers(), body)
end
"""
_LUA_UPDATE = _LUA_HEADERS + r"""
local counter = 0
request = function()
  counter = counter + 1
  local id = (counter * @STRIDE@) % @ROWS@ + 1
  local body = string.format('{"notes":"updated @PHASE@ %d","credit_limit":"%d.%02d"}',
    counter, (counter * 7919) % 1000000, counter % 100)
  return wrk.format("PATCH", "@PATH@/" .. id, headers(), body)
end
"""


def _lua(template: str, **values: object) -> str:
    for name, value in values.items():
        template = template.replace(f"@{name.upper()}@", str(value))
    return template + _LUA_DONE


@dataclass
class Measured:
    """One operation's latencies: ``histogram`` maps microseconds to a request count."""

    operation: str
    seconds: float
    errors: int = 0
    histogram: dict[int, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(self.histogram.values())

    def quantile(self, fraction: float) -> float:
        """The ``fraction`` quantile in ms (nearest rank, as ``benchlib.percentile``)."""
        total, seen = self.count, 0
        if not total:
            return float("nan")
        rank = max(1, min(total, math.ceil(fraction * total)))
        for value in sorted(self.histogram):
            seen += self.histogram[value]
            if seen >= rank:
                return value / 1000
        raise AssertionError("unreachable")

    def over(self, ms: float) -> int:
        return sum(n for value, n in self.histogram.items() if value > ms * 1000)

    def merged(self, other: Measured, operation: str) -> Measured:
        histogram = dict(self.histogram)
        for value, n in other.histogram.items():
            histogram[value] = histogram.get(value, 0) + n
        return Measured(operation, max(self.seconds, other.seconds), self.errors + other.errors, histogram)


# -- clients ------------------------------------------------------------------------------

def _stride(rows: int) -> int:
    """A prime not dividing ``rows``: stepping by it visits every id before any again."""
    return 7919 if rows % 7919 else 7907


def run_wrk(port: int, token: str, clients: int, seconds: float, rows: int, phase: str,
            folder: str) -> dict[str, Measured]:
    """Both operations at once, each from its own wrk process with half the connections."""
    scripts = {"create": _lua(_LUA_CREATE, phase=phase, path=LIST_PATH, users=USERS,
                              regions=", ".join(f'"{r}"' for r in REGIONS)),
               "update": _lua(_LUA_UPDATE, phase=phase, path=LIST_PATH, rows=rows, stride=_stride(rows))}
    processes = {}
    for op, script in scripts.items():
        path = os.path.join(folder, f"{op}-{phase}.lua")
        with open(path, "w") as out:
            out.write(script)
        processes[op] = subprocess.Popen(
            ["wrk", "-t1", f"-c{clients // 2}", f"-d{seconds:g}s", f"--timeout={WRK_TIMEOUT_S}s", "-s", path,
             "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = {}
    for op, process in processes.items():
        output, _ = process.communicate()
        measured = Measured(op, seconds)
        for line in output.splitlines():
            parts = line.split()
            if parts[:1] == ["SUMMARY"]:
                measured.seconds, measured.errors = int(parts[2]) / 1e6, int(parts[3])
            elif parts[:1] == ["LAT"]:
                measured.histogram[int(parts[1])] = measured.histogram.get(int(parts[1]), 0) + int(parts[2])
        if process.returncode or not measured.histogram:
            raise RuntimeError(f"wrk ({op}) failed:\n{output[-2000:]}")
        results[op] = measured
    return results


def run_threads(port: int, token: str, clients: int, seconds: float, rows: int, phase: str) -> dict[str, Measured]:
    """Both operations at once from Python threads, half creating and half updating."""
    results = {op: Measured(op, seconds) for op in OPERATIONS}
    lock = threading.Lock()
    stride, deadline = _stride(rows), time.perf_counter() + seconds

    def client(index: int) -> None:
        op = OPERATIONS[index % 2]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        latencies, errors, counter = [], 0, 0
        while time.perf_counter() < deadline:
            counter += 1
            n = counter * clients + index
            if op == "create":
                code = f"{phase}{n:012d}"
                body = {"name": f"New customer {code}", "credit_code": code, "level": "B",
                        "region": REGIONS[n % len(REGIONS)], "credit_limit": "12345.67", "mobile": "13800138000",
                        "email": "new.customer@example.com", "city": "Hangzhou",
                        "notes": "created by the benchmark", "account_manager": n % USERS + 1}
                method, path = "POST", LIST_PATH
            else:
                body = {"notes": f"updated {phase} {n}", "credit_limit": f"{n * 7919 % 1000000}.{n % 100:02d}"}
                method, path = "PATCH", f"{LIST_PATH}/{n * stride % rows + 1}"
            began = time.perf_counter()
            conn.request(method, path, body=json.dumps(body), headers=headers)
            response = conn.getresponse()
            response.read()
            latencies.append(int((time.perf_counter() - began) * 1e6))
            errors += response.status >= 300
        conn.close()
        with lock:
            histogram = results[op].histogram
            for value in latencies:
                histogram[value] = histogram.get(value, 0) + 1
            results[op].errors += errors

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- the run ------------------------------------------------------------------------------

def serve(url: str, port: int, instance: str, secret: str) -> None:
    """``loom serve`` in this process (called in the server subprocess): the same command,
    defaults and waitress settings an installation runs."""
    from loom.cli import main

    os.environ.update({"LOOM_DATABASE_URL": url, "LOOM_INSTANCE_PATH": instance, "LOOM_SECRET_KEY": secret})
    main(["serve", "--port", str(port)], standalone_mode=True)


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def report_lines(results: dict[str, Measured], slow_ms: float) -> list[str]:
    both = results["create"].merged(results["update"], "both")
    lines = [f"| operation | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | over {slow_ms:g} ms | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in (results["create"], results["update"], both):
        lines.append(f"| {m.operation} | {m.count} | {m.count / m.seconds:.0f} | {m.quantile(0.5):.1f} "
                     f"| {m.quantile(0.9):.1f} | {m.quantile(0.99):.1f} | {max(m.histogram) / 1000:.1f} "
                     f"| {m.over(slow_ms)} | {m.errors} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="customers to load (default 100,000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds of the same load first")
    parser.add_argument("--clients", type=int, default=8, help="concurrent writers, half of each operation")
    parser.add_argument("--client", choices=("wrk", "threads"), default="wrk" if shutil.which("wrk") else "threads",
                        help="load generator (default: wrk when installed)")
    parser.add_argument("--slow-ms", type=float, default=250.0, help="a request slower than this is counted")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--instance", help=argparse.SUPPRESS)
    parser.add_argument("--secret", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.database_url, args.port, args.instance, args.secret)
        return 0
    if args.clients < 2 or args.clients % 2 or args.rows < 2:
        parser.error("--clients must be an even number of at least 2, --rows at least 2")

    print(f"# Loom write tail on SQLite: {args.rows:,} rows, {args.clients} writers "
          f"({args.clients // 2} creating, {args.clients // 2} updating), {args.seconds:g} s, client {args.client}",
          flush=True)
    print(f"machine: {machine()}", flush=True)
    print(f"loom: {loom_revision()}", flush=True)
    synchronous = os.environ.get("LOOM_SQLITE_SYNCHRONOUS") or "NORMAL (default)"
    print(f"LOOM_SQLITE_SYNCHRONOUS: {synchronous}", flush=True)
    report = {"rows": args.rows, "clients": args.clients, "seconds": args.seconds, "client": args.client,
              "machine": machine(), "loom": loom_revision(), "sqlite_synchronous": synchronous}
    with scratch_database("sqlite") as database, tempfile.TemporaryDirectory(prefix="loom-wrk-") as scripts:
        began = time.perf_counter()
        _, token = prepare(database.url, args.rows, database.workdir)
        print(f"loaded {args.rows:,} customers in {time.perf_counter() - began:.1f} s", flush=True)
        server = _start(database.url, database.workdir, token)
        try:
            def run(seconds: float, phase: str) -> dict[str, Measured]:
                if args.client == "wrk":
                    return run_wrk(server.port, token, args.clients, seconds, args.rows, phase, scripts)
                return run_threads(server.port, token, args.clients, seconds, args.rows, phase)

            _check_writes(server.port, token)
            if args.warmup > 0:
                run(args.warmup, "WU")
            loads = [load_average()]
            sampler_stop = threading.Event()

            def sample() -> None:
                while not sampler_stop.wait(5):
                    loads.append(load_average())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            results = run(args.seconds, "MS")
            sampler_stop.set()
            sampler.join()
            loads.append(load_average())
        finally:
            server.stop()
    one_minute = [load[0] for load in loads]
    print(f"load average (1 min) during the run: {min(one_minute):.2f} to {max(one_minute):.2f}, "
          f"at the end {loads[-1][0]:.2f} {loads[-1][1]:.2f} {loads[-1][2]:.2f} on {os.cpu_count()} CPUs")
    print()
    print("\n".join(report_lines(results, args.slow_ms)))
    both = results["create"].merged(results["update"], "both")
    print(f"\nall writes: p99 {both.quantile(0.99):.1f} ms, max {max(both.histogram) / 1000:.1f} ms, "
          f"{both.over(args.slow_ms)} over {args.slow_ms:g} ms")
    if args.json:
        report["load_average"] = loads
        report["results"] = {m.operation: {"requests": m.count, "seconds": m.seconds, "errors": m.errors,
                                           "p50_ms": m.quantile(0.5), "p90_ms": m.quantile(0.9),
                                           "p99_ms": m.quantile(0.99), "max_ms": max(m.histogram) / 1000,
                                           "over_slow": m.over(args.slow_ms)}
                             for m in (*results.values(), both)}
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


def _check_writes(port: int, token: str) -> None:
    """One create and one update as the clients send them must succeed: the run counts
    a refused request as an error, and errors would make its latencies meaningless."""
    client = Http(port, token)
    try:
        status, body = client.json("POST", LIST_PATH, {
            "name": "Check", "credit_code": "CHECK0001", "level": "B", "region": REGIONS[0],
            "credit_limit": "12345.67", "mobile": "13800138000", "email": "check@example.com",
            "city": "Hangzhou", "notes": "", "account_manager": 1})
        if status != 201:
            raise RuntimeError(f"a create was refused: {status} {body}")
        status, body = client.json("PATCH", f"{LIST_PATH}/1", {"notes": "checked", "credit_limit": "1.00"})
        if status != 200:
            raise RuntimeError(f"an update was refused: {status} {body}")
    finally:
        client.close()


@dataclass
class Server:
    """The ``loom serve`` subprocess and its port."""

    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        stop_process(self.process)


def _start(url: str, workdir: str, token: str) -> Server:
    """``loom serve`` in a subprocess (this script with ``--serve``), once it answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = os.path.join(workdir, "serve.log")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", "--database-url", url, "--port", str(port),
             "--instance", os.path.join(workdir, "instance"), "--secret", secrets.token_hex(16)],
            stdout=log, stderr=subprocess.STDOUT)
    server = Server(port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        probe = Http(port, token)
        try:
            if probe.request("GET", f"{LIST_PATH}/1")[0] == 200:
                return server
        except OSError:
            pass
        finally:
            probe.close()
        time.sleep(0.2)
    server.stop()
    with open(log_path) as log:
        raise RuntimeError(f"loom serve did not start:\n{log.read()[-3000:]}")


if __name__ == "__main__":
    sys.exit(main())
