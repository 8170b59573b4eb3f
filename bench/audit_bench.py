"""What the audit log costs and how fast it is read and checked.

    python bench/audit_bench.py --db sqlite --ops 2000 --rounds 3
    python bench/audit_bench.py --db postgresql --ops 2000 --rounds 3 --verify-entries 1000000 \
        --history-rows 10000000

1. Writes: creates and updates per second through the record service with the audit log
   on, and with a writer that logs nothing, alternating in one run; the ratio is the cost.
2. ``verify``: a chain of ``--verify-entries`` valid entries (written in bulk, hashed
   exactly as the writer does), walked end to end: entries per second.
3. Export: peak Python memory while streaming every entry as CSV, at a tenth of the
   entries and at all of them: flat memory means the two peaks are alike.
4. History (PostgreSQL): one record's history among ``--history-rows`` entries spread over
   twelve monthly partitions: p50 / p99 of the query the history endpoint runs.
5. Size: bytes per million entries, tables and indexes together.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    customer_document,
    loom_revision,
    machine,
    percentile,
    role_document,
    scratch_database,
)

from loom.audit.api import csv_lines  # noqa: E402
from loom.audit.chain import verify  # noqa: E402
from loom.audit.log import GENESIS, AuditLog, ensure_partitions, entry_hash, partitions  # noqa: E402
from loom.audit.models import audit_head, audit_log  # noqa: E402
from loom.audit.reading import AuditQuery, history_query, stream  # noqa: E402
from loom.db import create_engine, upgrade  # noqa: E402
from loom.principal import Principal  # noqa: E402
from loom.records.query import Cursors  # noqa: E402
from loom.records.service import Context, RecordService  # noqa: E402
from loom.schema.service import MetadataService, model_from_documents  # noqa: E402


class Unlogged(AuditLog):
    """The baseline: a writer that logs nothing."""

    def add_entry(self, conn, entry) -> None:
        return None


def _service(engine: sa.Engine, metadata: MetadataService, audit: AuditLog) -> RecordService:
    import pluggy

    from loom.plugins import plugin_manager

    hooks: pluggy.PluginManager = plugin_manager((), discover=False)
    context = Context(engine=engine, live=metadata.live(), principal=Principal.system("bench"), hooks=hooks.hook,
                      cursors=Cursors("bench"), audit=audit)
    return RecordService(context, "customer")


def bench_writes(engine: sa.Engine, ops: int, rounds: int) -> dict[str, float]:
    metadata = MetadataService(engine)
    services = {"audit on": _service(engine, metadata, metadata.audit), "audit off": _service(engine, metadata,
                                                                                               Unlogged(engine))}
    rates: dict[str, list[float]] = {f"{kind} {name}": [] for kind in ("create", "update") for name in services}
    for _ in range(rounds):
        for name, service in services.items():
            started = time.perf_counter()
            ids = [service.create({"name": f"bench {name} {i}", "region": "east"})["id"] for i in range(ops)]
            rates[f"create {name}"].append(ops / (time.perf_counter() - started))
            started = time.perf_counter()
            for i, record_id in enumerate(ids):
                service.update(record_id, {"credit_limit": str(i + 1)})
            rates[f"update {name}"].append(ops / (time.perf_counter() - started))
    return {key: statistics.median(values) for key, values in rates.items()}


def _chain_rows(count: int, start: dt.datetime, span: dt.timedelta, entities: int = 1000):
    """Valid entries in chain order, as the writer would have made them."""
    prev = GENESIS
    step = span / max(count, 1)
    rng = random.Random(7)
    for seq in range(1, count + 1):
        at = start + step * seq
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        row = {"seq": seq, "at": at, "actor": f"user{rng.randrange(200)}", "actor_id": None, "ip": "10.0.0.1",
               "user_agent": "bench", "request_id": None, "action": "record.update", "entity": "customer",
               "record_id": rng.randrange(1, entities + 1), "changes": '{"credit_limit":["1.00","2.00"]}',
               "detail": None, "rows": None, "outcome": "ok", "prev_hash": prev}
        row["hash"] = prev = entry_hash(row)
        yield row


def fill_chain(engine: sa.Engine, count: int, start: dt.datetime, span: dt.timedelta) -> None:
    if engine.dialect.name == "postgresql":
        ensure_partitions(engine, start, months=span.days // 28 + 2)
    batch: list[dict] = []
    last = None
    with engine.begin() as conn:
        for row in _chain_rows(count, start, span):
            batch.append(row)
            last = row
            if len(batch) == 5000:
                conn.execute(audit_log.insert(), batch)
                batch = []
        if batch:
            conn.execute(audit_log.insert(), batch)
        conn.execute(audit_head.update().where(audit_head.c.id == 1).values(seq=last["seq"], hash=last["hash"],
                                                                           at=last["at"]))


def bench_verify(engine: sa.Engine) -> tuple[int, float]:
    started = time.perf_counter()
    verdict = verify(engine)
    elapsed = time.perf_counter() - started
    assert verdict.ok, verdict.problem
    return verdict.checked, verdict.checked / elapsed


def bench_export_memory(engine: sa.Engine, total: int) -> dict[str, float]:
    """Peak traced memory (MiB) streaming the first tenth of the log, then all of it."""
    peaks = {}
    for label, until_seq in (("tenth", total // 10 + 1), ("all", None)):
        query = AuditQuery([], before=until_seq)
        tracemalloc.start()
        size = 0
        for chunk in csv_lines(stream(engine, query)):
            size += len(chunk)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        peaks[label] = peak / 2**20
        peaks[f"{label} MiB written"] = size / 2**20
    return peaks


def bench_history(engine: sa.Engine, rows: int, samples: int = 500) -> dict[str, float]:
    """Fill ``rows`` entries (100 per record) over twelve months with SQL, then time the
    history query of random records."""
    start = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
    ensure_partitions(engine, start, months=13)
    records = max(rows // 100, 1)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO loom_audit (seq, at, actor, action, entity, record_id, changes, outcome, prev_hash, hash) "
            "SELECT g, timestamptz '2025-12-01' + (g::float8 / %(rows)s) * interval '365 days', "
            "'user' || (g %% 200), 'record.update', 'customer', 1 + (g::bigint * 7919) %% %(records)s, "
            "'{\"credit_limit\":[\"1.00\",\"2.00\"]}', 'ok', repeat('0', 64), repeat('0', 64) "
            "FROM generate_series(1, %(rows)s) AS g", {"rows": rows, "records": records})
        conn.exec_driver_sql("ANALYZE loom_audit")
    query = history_query("customer", sa.bindparam("rid"))
    timings = []
    rng = random.Random(11)
    with engine.connect() as conn:
        for _ in range(samples):
            rid = rng.randrange(1, records + 1)
            started = time.perf_counter()
            found = conn.execute(query, {"rid": rid}).all()
            timings.append((time.perf_counter() - started) * 1000)
            assert found
    return {"p50 ms": percentile(timings, 0.5), "p99 ms": percentile(timings, 0.99),
            "entries per record": rows / records, "MB per million": size_per_million(engine, rows)}


def size_per_million(engine: sa.Engine, entries: int) -> float:
    """MiB per million entries of the audit log, tables and indexes together."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            size = sum(conn.execute(sa.text("SELECT pg_total_relation_size(to_regclass(:t))"), {"t": t}).scalar()
                       for t in partitions(conn))
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            size = conn.exec_driver_sql("SELECT sum(pgsize) FROM dbstat WHERE name LIKE '%audit%'").scalar()
    return float(size) / 2**20 / (entries / 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--ops", type=int, default=1000, help="creates (and as many updates) per round and mode")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--verify-entries", type=int, default=200_000)
    parser.add_argument("--history-rows", type=int, default=0, help="PostgreSQL only; 0 skips the history test")
    args = parser.parse_args()
    print(f"# {machine()}; Loom {loom_revision()}; {args.db}")

    with scratch_database(args.db, schema="bench_audit") as database:
        engine = create_engine(database.url)
        upgrade(engine)
        MetadataService(engine).apply(model_from_documents([customer_document(), role_document()]), author="bench")
        rates = bench_writes(engine, args.ops, args.rounds)
        for kind in ("create", "update"):
            on, off = rates[f"{kind} audit on"], rates[f"{kind} audit off"]
            print(f"{kind}: {on:.0f}/s with the audit log, {off:.0f}/s without; "
                  f"ratio {on / off:.2f} (cost {100 * (1 - on / off):.0f}%)")
        engine.dispose()

    with scratch_database(args.db, schema="bench_audit") as database:
        engine = create_engine(database.url)
        upgrade(engine)
        started = time.perf_counter()
        fill_chain(engine, args.verify_entries, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.timedelta(days=60))
        print(f"filled {args.verify_entries} chained entries in {time.perf_counter() - started:.1f} s")
        checked, rate = bench_verify(engine)
        print(f"verify: {checked} entries at {rate:,.0f} entries/s")
        memory = bench_export_memory(engine, args.verify_entries)
        print(f"export CSV: peak {memory['tenth']:.1f} MiB for {memory['tenth MiB written']:.0f} MiB of CSV, "
              f"peak {memory['all']:.1f} MiB for {memory['all MiB written']:.0f} MiB")
        print(f"size: {size_per_million(engine, args.verify_entries):.0f} MiB per million entries "
              "(table and indexes)")
        engine.dispose()

    if args.history_rows and args.db == "postgresql":
        with scratch_database(args.db, schema="bench_audit") as database:
            engine = create_engine(database.url)
            upgrade(engine)
            started = time.perf_counter()
            history = bench_history(engine, args.history_rows)
            print(f"history among {args.history_rows:,} entries (filled in {time.perf_counter() - started:.0f} s): "
                  f"p50 {history['p50 ms']:.2f} ms, p99 {history['p99 ms']:.2f} ms, "
                  f"{history['entries per record']:.0f} entries per record; "
                  f"{history['MB per million']:.0f} MiB per million entries")
            engine.dispose()


if __name__ == "__main__":
    main()
