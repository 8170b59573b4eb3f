"""Read throughput of ``loom serve --workers 1`` against ``--workers 2``, measured with wrk.

For each database (SQLite, PostgreSQL) one fresh instance gets the peer benchmark's
``customers`` entity (bench/peer_servers.py), a superuser with an API token, and N rows
loaded through the bulk API. Then, for R rounds, ``loom serve --workers 1`` and
``loom serve --workers 2`` (8 threads each, the defaults otherwise) are started in turn
on that instance, which one first alternating between rounds, and each is measured with
the peer benchmark's wrk script (bench/wrk/peer.lua) on two reads:

- get: one record by a random loaded id;
- list: ``limit=50``, region = East, ``sort=-id``, four fields.

With ``--baseline-commit REV``, Loom as committed at REV is measured in the same
rounds too, served by that commit's own ``loom serve`` (before granian: waitress, one
process, 8 threads); REV must have the same migrations as the Loom measured.

Every measurement is a warm-up that is thrown away, then the measured seconds with
wrk -t2 -c8. It prints each run's requests per second with the load average before it,
each round's ratios to one worker, and the medians; ``--json FILE`` writes the raw
numbers too.

    python bench/workers_bench.py
    python bench/workers_bench.py --databases sqlite,postgresql --rows 20000 --rounds 2 --seconds 8 \\
        --loom-commit HEAD --baseline-commit 6109899

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
from dataclasses import dataclass
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
COLLECTION = "/api/v1/customers"
LUA = Path(__file__).resolve().parent / "wrk" / "peer.lua"
RESULT = re.compile(r"^PEER_RESULT (\{.*\})$", re.MULTILINE)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@dataclass(frozen=True)
class Setup:
    """A way of serving the instance: a name, the ``loom serve`` options, and where Loom
    is imported from (None: this checkout)."""

    name: str
    options: tuple[str, ...]
    site: Path | None


def loom_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from loom.cli import main; sys.argv[0] = 'loom'; main()", *args]


class Instance:
    """A Loom instance on one database, set up through the ``loom`` command."""

    def __init__(self, url: str, workdir: Path, site: Path | None):
        self.workdir = workdir
        self.site = site
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
        self.env.update(LOOM_DATABASE_URL=url, LOOM_INSTANCE_PATH=str(workdir / "instance"))
        self.token = ""
        self.first_id = self.last_id = 0

    def env_for(self, site: Path | None) -> dict[str, str]:
        return {**self.env, "PYTHONPATH": str(site)} if site is not None else self.env

    def run(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(loom_command(*args), env=self.env_for(self.site), cwd=self.workdir, input=stdin,
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
        with self.serve(Setup("setup", (), self.site)) as base:
            ids, seconds = bulk_load(base, f"{COLLECTION}/_bulk", self.token, 0, rows, (201,))
        self.first_id, self.last_id = ids[0], ids[-1]
        return seconds

    def serve(self, setup: Setup) -> _Serving:
        return _Serving(self, setup)


class _Serving:
    """``loom serve`` as ``setup`` says, for as long as the block runs."""

    def __init__(self, instance: Instance, setup: Setup):
        self.instance, self.setup = instance, setup
        self.log = instance.workdir / f"serve-{setup.name.replace(' ', '-')}.log"

    def __enter__(self) -> str:
        port = free_port()
        self.process = start_process(loom_command("serve", "--port", str(port), *self.setup.options),
                                     self.instance.env_for(self.setup.site), self.instance.workdir, self.log)
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


def measure_database(kind: str, setups: list[Setup], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Set up an instance on a fresh ``kind`` database and measure every setup on it,
    round after round, the order of the setups turning each round."""
    measurements: list[dict[str, Any]] = []
    with scratch_database(kind, args.pg_url, schema="bench_workers") as database:
        instance = Instance(database.url, Path(database.workdir), setups[0].site)
        seconds = instance.set_up(args.rows)
        print(f"{kind}: {args.rows:,} rows loaded in {seconds:.1f} s", flush=True)
        for round_no in range(args.rounds):
            shift = round_no % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                with instance.serve(setup) as base:
                    for n, scenario in enumerate(SCENARIOS):
                        seed = round_no * 10 + n
                        if args.warmup:
                            wrk(base, instance, scenario, args.warmup, seed)
                        load = load_average()
                        m = wrk(base, instance, scenario, args.seconds, seed)
                        m.update(database=kind, round=round_no + 1, setup=setup.name, scenario=scenario,
                                 load_before=load)
                        measurements.append(m)
                        print(f"  {kind:10} round {m['round']} {setup.name:18} {scenario:4} "
                              f"{m['ok_per_s']:7.1f} req/s  p50 {m['p50_ms']:6.1f} ms  p99 {m['p99_ms']:6.1f} ms  "
                              f"failed {m['failed']}  load {load[0]}", flush=True)
            for scenario in SCENARIOS:
                rate = {m["setup"]: m["ok_per_s"] for m in measurements
                        if m["round"] == round_no + 1 and m["scenario"] == scenario}
                ratios = ", ".join(f"{name} / 1 worker {rate[name] / rate[setups[0].name]:.2f}"
                                   for name in rate if name != setups[0].name)
                print(f"  {kind:10} round {round_no + 1} {scenario}: {ratios}", flush=True)
    return measurements


def summary(measurements: list[dict[str, Any]], setups: list[Setup]) -> list[str]:
    """A table of median rates, and each setup's ratio to the first (one worker): the
    median of the rounds' ratios, then each round's."""
    first = setups[0].name
    lines = ["| database | read | " + " | ".join(f"{s.name}, req/s" for s in setups) + " | "
             + " | ".join(f"{s.name} / {first}" for s in setups[1:]) + " |",
             "|---|---|" + "---:|" * (2 * len(setups) - 1)]
    for kind in dict.fromkeys(m["database"] for m in measurements):
        for scenario in SCENARIOS:
            runs = {(m["round"], m["setup"]): m["ok_per_s"] for m in measurements
                    if m["database"] == kind and m["scenario"] == scenario}
            rounds = sorted({r for r, _ in runs})
            rates = [statistics.median(runs[r, s.name] for r in rounds) for s in setups]
            cells = [f"{rate:,.0f}" for rate in rates]
            for setup in setups[1:]:
                ratios = [runs[r, setup.name] / runs[r, first] for r in rounds]
                cells.append(f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})")
            lines.append(f"| {kind} | {scenario} | " + " | ".join(cells) + " |")
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
    parser.add_argument("--baseline-commit", help="also measure Loom as committed at this revision, served by its "
                                                  "own loom serve (same migrations needed)")
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
        setups = [Setup("1 worker", ("--workers", "1"), site), Setup("2 workers", ("--workers", "2"), site)]
        if args.baseline_commit:
            commit, baseline = export_loom(args.baseline_commit, scratch / "baseline-export")
            report["baseline"] = f"{commit[:7]} (exported)"
            setups.append(Setup(f"baseline {commit[:7]}", (), baseline))
        print(f"# loom serve --workers 1 against --workers 2: {args.rows:,} rows, {args.rounds} rounds, wrk -t2 -c8, "
              f"{args.warmup:g} s warm-up + {args.seconds:g} s\nmachine: {report['machine']}\nloom: {report['loom']}"
              f"{chr(10) + 'baseline: ' + report['baseline'] if args.baseline_commit else ''}\n"
              f"load average at start: {report['load_average_start']}", flush=True)
        measurements = []
        for kind in args.databases:
            measurements.extend(measure_database(kind, setups, args))
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
    report["summary"] = summary(measurements, setups)
    print(f"\nload average at end: {report['load_average_end']}  (start: {report['load_average_start']})")
    print("\n".join(report["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
