"""Read throughput of ``loom serve --workers 1`` against ``--workers 2``, measured with wrk.

For each database (SQLite, PostgreSQL) one fresh instance gets the peer benchmark's
``customers`` entity (bench/peer_servers.py), a superuser with an API token, and N rows
loaded through the bulk API. Then, for R rounds, ``loom serve --workers 1`` and
``loom serve --workers 2`` (8 threads each, the defaults otherwise) are started in turn
on that instance, which one first alternating between rounds, and each is measured with
the peer benchmark's wrk script (bench/wrk/peer.lua) on two reads:

- get: one record by a random loaded id;
- list: ``limit=50``, region = East, ``sort=-id``, four fields.

Every measurement is a warm-up that is thrown away, then the measured seconds with
wrk -t2 -c8. It prints each run's requests per second with the load average before it,
each round's 2-worker/1-worker ratios, and the medians; ``--json FILE`` writes the raw
numbers too.

    python bench/workers_bench.py
    python bench/workers_bench.py --databases sqlite,postgresql --rows 20000 --rounds 2 --seconds 10 \\
        --loom-commit HEAD

``--loom-commit REV`` measures Loom as committed at REV (exported into the scratch
folder), so a run measures one fixed Loom while the checkout changes under it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import DEFAULT_PG_URL, loom_revision, machine, scratch_database
from peer_servers import (
    LOOM_ENTITY,
    LOOM_LIST_QUERY,
    SetupError,
    bulk_load,
    call,
    export_loom,
    free_port,
    start_process,
    stop_process,
    wait_until,
)

SCENARIOS = ("get", "list")
WORKERS = (1, 2)
COLLECTION = "/api/v1/customers"
LUA = Path(__file__).resolve().parent / "wrk" / "peer.lua"
RESULT = re.compile(r"^PEER_RESULT (\{.*\})$", re.MULTILINE)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Instance:
    """A Loom instance on one database, set up through the ``loom`` command."""

    def __init__(self, url: str, workdir: Path, site: Path | None):
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
        self.env.update(LOOM_DATABASE_URL=url, LOOM_INSTANCE_PATH=str(workdir / "instance"))
        if site is not None:
            self.env["PYTHONPATH"] = str(site)
        self.token = ""
        self.first_id = self.last_id = 0

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-c", "import sys; from loom.cli import main; sys.argv[0] = 'loom'; main()", *args]

    def run(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(self.command(*args), env=self.env, cwd=self.workdir, input=stdin,
                              capture_output=True, text=True)
        if done.returncode:
            raise SetupError(f"loom {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def set_up(self, rows: int) -> float:
        """The customers entity, a superuser and its token, ``rows`` rows; the load's seconds."""
        metadata = self.workdir / "metadata"
        metadata.mkdir()
        (metadata / "customers.yaml").write_text(LOOM_ENTITY)
        self.run("init")
        self.run("metadata", "apply", str(metadata), "--author", "workers-bench")
        self.run("user", "create", "bench", "--superuser", stdin="workers-bench-password\n")
        self.token = self.run("token", "create", "bench", "--name", "workers benchmark").strip().splitlines()[-1]
        with self.serve(1) as base:
            ids, seconds = bulk_load(base, f"{COLLECTION}/_bulk", self.token, 0, rows, (201,))
        self.first_id, self.last_id = ids[0], ids[-1]
        return seconds

    def serve(self, workers: int) -> _Serving:
        return _Serving(self, workers)


class _Serving:
    """``loom serve --workers N`` for as long as the block runs."""

    def __init__(self, instance: Instance, workers: int):
        self.instance, self.workers = instance, workers
        self.log = instance.workdir / f"serve-{workers}.log"

    def __enter__(self) -> str:
        port = free_port()
        self.process = start_process(self.instance.command("serve", "--port", str(port), "--workers", str(self.workers)),
                                     self.instance.env, self.instance.workdir, self.log)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: call(base, "GET", f"{COLLECTION}?limit=1", token=self.instance.token,
                                    timeout=10)[0] == 200, self.process, self.log, "loom serve")
        except BaseException:
            stop_process(self.process)
            raise
        return base

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)


def wrk(base: str, instance: Instance, scenario: str, seconds: int, seed: int) -> dict[str, Any]:
    """Run wrk once; returns the script's summary with the 2xx rate."""
    command = ["wrk", "-t2", "-c8", f"-d{seconds:g}s", "--latency", "--timeout=30s",
               "-H", f"Authorization: Bearer {instance.token}", "-s", str(LUA), base, "--", scenario, COLLECTION,
               str(instance.first_id), str(instance.last_id), str(seed), LOOM_LIST_QUERY]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90)
    found = RESULT.search(done.stdout)
    if done.returncode or not found:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    result = json.loads(found.group(1))
    failed = sum(result[k] for k in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    return {"requests": result["requests"], "failed": failed,
            "ok_per_s": (result["requests"] - result["status_errors"]) / (result["duration_us"] / 1e6),
            "p50_ms": result["latency_us"]["p50"] / 1000, "p99_ms": result["latency_us"]["p99"] / 1000}


def measure_database(kind: str, args: argparse.Namespace, site: Path | None) -> list[dict[str, Any]]:
    measurements: list[dict[str, Any]] = []
    with scratch_database(kind, args.pg_url, schema="bench_workers") as database:
        instance = Instance(database.url, Path(database.workdir), site)
        seconds = instance.set_up(args.rows)
        print(f"{kind}: {args.rows:,} rows loaded in {seconds:.1f} s", flush=True)
        for round_no in range(args.rounds):
            order = WORKERS if round_no % 2 == 0 else WORKERS[::-1]
            for workers in order:
                with instance.serve(workers) as base:
                    for n, scenario in enumerate(SCENARIOS):
                        seed = round_no * 10 + n
                        if args.warmup:
                            wrk(base, instance, scenario, args.warmup, seed)
                        load = load_average()
                        m = wrk(base, instance, scenario, args.seconds, seed)
                        m.update(database=kind, round=round_no + 1, workers=workers, scenario=scenario,
                                 load_before=load)
                        measurements.append(m)
                        print(f"  {kind:10} round {m['round']} workers {workers} {scenario:4} "
                              f"{m['ok_per_s']:7.1f} req/s  p50 {m['p50_ms']:6.1f} ms  p99 {m['p99_ms']:6.1f} ms  "
                              f"failed {m['failed']}  load {load[0]}", flush=True)
            for scenario in SCENARIOS:
                rate = {m["workers"]: m["ok_per_s"] for m in measurements
                        if m["round"] == round_no + 1 and m["scenario"] == scenario}
                print(f"  {kind:10} round {round_no + 1} {scenario}: 2 workers / 1 worker {rate[2] / rate[1]:.2f}",
                      flush=True)
    return measurements


def summary(measurements: list[dict[str, Any]]) -> list[str]:
    lines = ["| database | read | 1 worker, req/s | 2 workers, req/s | ratio (median of rounds) |",
             "|---|---|---:|---:|---:|"]
    for kind in dict.fromkeys(m["database"] for m in measurements):
        for scenario in SCENARIOS:
            runs = [m for m in measurements if m["database"] == kind and m["scenario"] == scenario]
            rate = {w: statistics.median(m["ok_per_s"] for m in runs if m["workers"] == w) for w in WORKERS}
            ratios = [next(m["ok_per_s"] for m in runs if m["round"] == r and m["workers"] == 2)
                      / next(m["ok_per_s"] for m in runs if m["round"] == r and m["workers"] == 1)
                      for r in sorted({m["round"] for m in runs})]
            lines.append(f"| {kind} | {scenario} | {rate[1]:,.0f} | {rate[2]:,.0f} | "
                         f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)}) |")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated (default sqlite,postgresql)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help=f"PostgreSQL to use (default {DEFAULT_PG_URL})")
    parser.add_argument("--rows", type=int, default=20_000, help="customers loaded (default 20,000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both server setups (default 2)")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per run of wrk (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured seconds before each (default 3)")
    parser.add_argument("--loom-commit", help="measure Loom as committed at this revision, not the checkout")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args(argv)
    args.databases = [d.strip() for d in args.databases.split(",") if d.strip()]
    unknown = set(args.databases) - {"sqlite", "postgresql"}
    if unknown or not args.databases:
        parser.error(f"--databases takes sqlite and/or postgresql, not {', '.join(sorted(unknown)) or 'nothing'}")
    if args.rows < 100 or args.rounds < 1 or args.seconds < 1 or args.warmup < 0:
        parser.error("--rows must be at least 100, --rounds and --seconds at least 1")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (e.g. apt-get install wrk)")
    return args


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    report: dict[str, Any] = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]),
                              "machine": machine(), "rows": args.rows, "rounds": args.rounds,
                              "seconds": args.seconds, "warmup": args.warmup, "wrk": "-t2 -c8",
                              "load_average_start": load_average()}
    scratch = Path(tempfile.mkdtemp(prefix="loom-workers-"))
    try:
        site = None
        if args.loom_commit:
            commit, site = export_loom(args.loom_commit, scratch / "loom-export")
            report["loom"] = f"{commit[:7]} (exported)"
        else:
            report["loom"] = loom_revision()
        print(f"# loom serve --workers 1 against --workers 2: {args.rows:,} rows, {args.rounds} rounds, wrk -t2 -c8, "
              f"{args.warmup:g} s warm-up + {args.seconds:g} s\nmachine: {report['machine']}\nloom: {report['loom']}\n"
              f"load average at start: {report['load_average_start']}", flush=True)
        measurements = []
        for kind in args.databases:
            measurements.extend(measure_database(kind, args, site))
        report["measurements"] = measurements
    except (SetupError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["load_average_end"] = load_average()
    report["summary"] = summary(measurements)
    print(f"\nload average at end: {report['load_average_end']}  (start: {report['load_average_start']})")
    print("\n".join(report["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
