"""Loom beside Directus 12 on the same ``customers`` collection, measured with wrk.

One command starts both servers on SQLite with the same N rows (see peer_servers.py),
then runs four scenarios with wrk against each server in turn, alternating which server
goes first, for R rounds:

- list: ``limit=50``, region = East, ``sort=-id``, four fields;
- get: one record by a random loaded id;
- create: one record;
- update: two fields of a random loaded record (no version check, as Directus has none).

Every measurement is a 5 s warm-up that is thrown away, then 15 s with wrk -t2 -c8
--latency, while the server's resident memory is sampled. It prints each round's
Loom/Directus ratios and the medians, with the machine's load average at the start and
the end; ``--json FILE`` also writes the raw numbers.

    PEER_HOME=/path/to/directus python bench/peer_bench.py
    python bench/peer_bench.py --peer-home DIR --rows 100000 --rounds 3 --json peer.json

PEER_HOME is a Directus installation prepared as docs/benchmarks.md describes. Loom runs
from this checkout, or with ``--loom-commit REV`` as committed at REV (exported into the
scratch folder), so that a run measures one fixed Loom while the checkout changes.
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
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import loom_revision, machine
from peer_servers import (
    DirectusHome,
    Server,
    SetupError,
    call,
    customer_row,
    export_loom,
    rss_kib,
    start_directus,
    start_loom,
)

SCENARIOS = ("list", "get", "create", "update")
LUA = Path(__file__).resolve().parent / "wrk" / "peer.lua"
RESULT = re.compile(r"^PEER_RESULT (\{.*\})$", re.MULTILINE)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- one measurement ------------------------------------------------------------------------

def wrk(server: Server, scenario: str, seconds: float, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Run wrk once with the scenario against ``server``; returns wrk's own summary."""
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds:g}s", "--latency",
               f"--timeout={args.timeout:g}s", "-H", f"Authorization: Bearer {server.token}",
               "-s", str(LUA), server.base_url, "--", scenario, server.collection,
               str(server.first_id), str(server.last_id), str(seed), server.list_query]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + args.timeout + 60)
    found = RESULT.search(done.stdout)
    if done.returncode or not found:
        raise RuntimeError(f"wrk failed against {server.name} ({done.returncode}):\n{done.stdout}{done.stderr}")
    result = json.loads(found.group(1))
    result["output"] = done.stdout[:found.start()].rstrip()
    return result


def measure(server: Server, scenario: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then measure with wrk while sampling the server's memory twice a second."""
    wrk(server, scenario, args.warmup, seed, args)
    samples: list[int] = []
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            samples.append(rss_kib(server.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    load_before = load_average()
    sampler.start()
    try:
        result = wrk(server, scenario, args.seconds, seed, args)
    finally:
        running.clear()
        sampler.join()
    if server.process.poll() is not None:
        raise RuntimeError(f"{server.name} stopped during {scenario}:\n{server.log_tail()}")
    seconds = result["duration_us"] / 1e6
    failed = (result["status_errors"] + result["connect_errors"] + result["read_errors"]
              + result["write_errors"] + result["timeouts"])
    latency = {k: v / 1000 for k, v in result.pop("latency_us").items()}
    return {"server": server.name, "scenario": scenario, "seed": seed, **result, "failed": failed,
            "ok_per_s": (result["requests"] - result["status_errors"]) / seconds,
            "latency_ms": latency, "rss_max_mib": max(samples, default=0) / 1024,
            "rss_mean_mib": statistics.fmean(samples) / 1024 if samples else 0.0,
            "load_before": load_before, "load_after": load_average()}


# -- checks before measuring -----------------------------------------------------------------

def check_scenarios(server: Server) -> None:
    """One request of each scenario, checked by hand, so a measurement never counts
    refusals or empty pages as throughput."""
    status, page = call(server.base_url, "GET", f"{server.collection}?{server.list_query}", token=server.token)
    rows = page.get("data") if isinstance(page, dict) else None
    if status != 200 or not rows or len(rows) != 50:
        raise SetupError(f"{server.name} list: {status} {str(page)[:300]}")
    if any(not {"id", "name", "phone", "level"} <= set(row) for row in rows) or \
            [r["id"] for r in rows] != sorted((r["id"] for r in rows), reverse=True):
        raise SetupError(f"{server.name} list: rows lack the asked fields or are not newest first: {rows[:2]}")
    status, record = call(server.base_url, "GET", f"{server.collection}/{server.last_id}", token=server.token)
    if status != 200 or record["data"]["name"] != customer_row(server.last_id - server.first_id)["name"]:
        raise SetupError(f"{server.name} get: {status} {str(record)[:300]}")
    body = {**customer_row(0), "name": "Check create"}
    status, created = call(server.base_url, "POST", server.collection, body, server.token)
    if status not in (200, 201):
        raise SetupError(f"{server.name} create: {status} {str(created)[:300]}")
    status, updated = call(server.base_url, "PATCH", f"{server.collection}/{server.first_id}",
                           {"credit_limit": 12.25, "level": "B"}, server.token)
    if status != 200 or updated["data"]["level"] != "B":
        raise SetupError(f"{server.name} update: {status} {str(updated)[:300]}")


# -- report --------------------------------------------------------------------------------

def summarize(measurements: list[dict[str, Any]], scenarios: list[str], rounds: int) -> dict[str, Any]:
    """Per-round ratios and medians per scenario."""
    summary: dict[str, Any] = {}
    def runs(scenario: str, name: str) -> list[dict[str, Any]]:
        return sorted((m for m in measurements if m["scenario"] == scenario and m["server"] == name),
                      key=lambda m: m["round"])

    for scenario in scenarios:
        loom, directus = runs(scenario, "Loom"), runs(scenario, "Directus")
        ratios = [a["ok_per_s"] / b["ok_per_s"] if b["ok_per_s"] else float("nan")
                  for a, b in zip(loom, directus, strict=True)]
        entry = {"ratios": ratios, "median_ratio": statistics.median(ratios)}
        for name, rs in (("loom", loom), ("directus", directus)):
            entry[name] = {"ok_per_s": statistics.median(m["ok_per_s"] for m in rs),
                           "p50_ms": statistics.median(m["latency_ms"]["p50"] for m in rs),
                           "p99_ms": statistics.median(m["latency_ms"]["p99"] for m in rs),
                           "max_ms": max(m["latency_ms"]["max"] for m in rs),
                           "rss_max_mib": max(m["rss_max_mib"] for m in rs),
                           "failed": sum(m["failed"] for m in rs)}
        summary[scenario] = entry
    return summary


def table(summary: dict[str, Any]) -> list[str]:
    lines = ["| scenario | Loom req/s | Directus req/s | **Loom/Directus** | per round | Loom p50 / p99 ms "
             "| Directus p50 / p99 ms | Loom RSS max MiB | Directus RSS max MiB | failed L/D |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for scenario, e in summary.items():
        a, b = e["loom"], e["directus"]
        lines.append(
            f"| {scenario} | {a['ok_per_s']:.0f} | {b['ok_per_s']:.0f} | **{e['median_ratio']:.2f}×** "
            f"| {', '.join(f'{r:.2f}' for r in e['ratios'])} | {a['p50_ms']:.1f} / {a['p99_ms']:.1f} "
            f"| {b['p50_ms']:.1f} / {b['p99_ms']:.1f} | {a['rss_max_mib']:.0f} | {b['rss_max_mib']:.0f} "
            f"| {a['failed']}/{b['failed']} |")
    return lines


# -- the run -------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-home", default=os.environ.get("PEER_HOME"),
                        help="the prepared Directus folder (default: $PEER_HOME)")
    parser.add_argument("--rows", type=int, default=100_000, help="customers on each server (default 100,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four scenarios (default 3)")
    parser.add_argument("--seconds", type=float, default=15, help="measured seconds per run of wrk (default 15)")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured seconds before each (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--timeout", type=float, default=30, help="wrk's request timeout in seconds (default 30)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of "
                        + ", ".join(SCENARIOS))
    parser.add_argument("--loom-workers", type=int, default=1,
                        help="processes of loom serve (--workers; default 1); memory is summed over them")
    parser.add_argument("--loom-commit", help="measure Loom as committed at this revision, not the checkout")
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if set(args.scenarios) - set(SCENARIOS) or not args.scenarios:
        parser.error(f"--scenarios takes some of {', '.join(SCENARIOS)}")
    if args.rows < 100 or args.rounds < 1:
        parser.error("--rows must be at least 100 and --rounds at least 1")
    if not args.peer_home:
        parser.error("set PEER_HOME (or --peer-home) to the folder where Directus is installed; "
                     "docs/benchmarks.md ('Loom beside Directus') says how to prepare it")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (e.g. apt-get install wrk)")
    return args


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    home = DirectusHome(Path(args.peer_home).resolve())
    try:
        home.check()
    except SetupError as error:
        print(error, file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]), "machine": machine(),
        "cpus": os.cpu_count(), "directus": home.version(), "node": home.node_version(), "rows": args.rows,
        "rounds": args.rounds, "seconds": args.seconds, "warmup": args.warmup,
        "wrk": f"-t{args.threads} -c{args.connections} --latency --timeout {args.timeout:g}s",
        "load_average_start": load_average()}
    workdir = Path(tempfile.mkdtemp(prefix="loom-peer-"))
    servers: list[Server] = []
    try:
        site = None
        if args.loom_commit:
            commit, site = export_loom(args.loom_commit, workdir / "loom-export")
            report["loom"] = f"{commit[:7]} (exported)"
        else:
            report["loom"] = loom_revision()
        print(f"# Loom beside Directus {report['directus']} (Node {report['node']}): {args.rows:,} rows, "
              f"{args.rounds} rounds, wrk {report['wrk']}, {args.warmup:g} s warm-up + {args.seconds:g} s",
              flush=True)
        print(f"machine: {report['machine']}\nloom: {report['loom']}\n"
              f"load average at start: {report['load_average_start']}", flush=True)
        loom = start_loom(workdir, args.rows, site, args.loom_workers)
        servers.append(loom)
        print(f"Loom ready (pid {loom.pid}): {loom.setup['loaded_rows']:,} rows in {loom.setup['load_seconds']} s, "
              f"{loom.setup['load_rows_per_s']:,} rows/s", flush=True)
        directus = start_directus(home, args.rows)
        servers.append(directus)
        loaded = (f"loaded {directus.setup['loaded_rows']:,} rows in {directus.setup['load_seconds']} s, "
                  f"{directus.setup['load_rows_per_s']:,} rows/s" if "loaded_rows" in directus.setup
                  else f"kept database with {args.rows:,} rows")
        print(f"Directus ready (pid {directus.pid}): {loaded}", flush=True)
        for server in servers:
            check_scenarios(server)
            report[f"{server.name.lower()}_setup"] = {**server.setup, "idle_rss_mib": rss_kib(server.pid) / 1024}
        print("both servers answer the four scenarios", flush=True)
        measurements = []
        for round_no in range(args.rounds):
            for n, scenario in enumerate(args.scenarios):
                order = servers if (round_no + n) % 2 == 0 else servers[::-1]
                for server in order:
                    m = measure(server, scenario, round_no * 10 + n, args)
                    m.update(round=round_no + 1, first=order[0].name)
                    measurements.append(m)
                    print(f"  round {m['round']} {server.name:8} {scenario:6} {m['ok_per_s']:7.1f} req/s  "
                          f"p50 {m['latency_ms']['p50']:6.1f} ms  p99 {m['latency_ms']['p99']:6.1f} ms  "
                          f"RSS {m['rss_max_mib']:5.0f} MiB  failed {m['failed']}  load {m['load_before'][0]}",
                          flush=True)
                rates = {m["server"]: m["ok_per_s"] for m in measurements[-2:]}
                print(f"  round {round_no + 1} {scenario}: Loom/Directus {rates['Loom'] / (rates['Directus'] or float('nan')):.2f}",
                      flush=True)
        report["measurements"] = measurements
        report["summary"] = summarize(measurements, args.scenarios, args.rounds)
    except (SetupError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    report["load_average_end"] = load_average()
    print(f"\nload average at end: {report['load_average_end']}  (start: {report['load_average_start']})")
    print("medians over rounds (req/s counts 2xx replies only; the ratio is the median of the rounds' ratios):")
    print("\n".join(table(report["summary"])))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
