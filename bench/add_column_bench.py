"""How long publishing "one more field" takes on a large table, through Loom's
metadata service (diff, checks against the data, migration, new version; one
transaction).

The Customer table is filled with 1,000,000 rows by a single INSERT ... SELECT over a
generated series, then a new version of the entity with one more field is published,
several times (a new field each time), on PostgreSQL and on SQLite. The target from the
issue is under 1 s. For comparison it also times the bare ``ALTER TABLE ... ADD COLUMN``
and, for information, adding an indexed field (which must build an index over every
row) and, on SQLite, the ``PRAGMA foreign_key_check`` every SQLite publish runs.

    python bench/add_column_bench.py --db postgresql --db sqlite --rows 1000000

PostgreSQL work happens in the schema ``bench_addcol``, dropped at the end; SQLite in a
temporary file.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import sqlalchemy as sa
from benchlib import (
    DEFAULT_PG_URL,
    customer_document,
    fill_customers,
    insert_users,
    loom_revision,
    machine,
    scratch_database,
)

SCHEMA = "bench_addcol"


def _publish(metadata: Any, extra: list[dict[str, Any]]) -> float:
    from loom.schema.service import model_from_documents

    model = model_from_documents([customer_document(extra)])
    began = time.perf_counter()
    plan = metadata.apply(model, author="bench")
    elapsed = time.perf_counter() - began
    if plan.is_empty:
        raise AssertionError("the publish changed nothing")
    return elapsed


def run(kind: str, rows: int, runs: int, pg_url: str) -> dict[str, Any]:
    """Fill a Customer table with ``rows`` rows on ``kind`` and time adding columns."""
    from loom.db import create_engine, upgrade
    from loom.schema.service import MetadataService, model_from_documents

    result: dict[str, Any] = {"db": kind, "rows": rows}
    with scratch_database(kind, pg_url, SCHEMA) as database:
        engine = create_engine(database.url)
        try:
            upgrade(engine)
            metadata = MetadataService(engine)
            metadata.apply(model_from_documents([customer_document()]), author="bench")
            insert_users(engine)
            began = time.perf_counter()
            fill_customers(engine, rows)
            result["fill_seconds"] = time.perf_counter() - began
            print(f"{kind}: filled {rows:,} rows in {result['fill_seconds']:.1f} s", flush=True)

            extra: list[dict[str, Any]] = []
            timings = []
            for i in range(runs):
                extra.append({"name": f"extra_{i}", "type": "string", "max_length": 50})
                timings.append(_publish(metadata, extra))
                print(f"  add field extra_{i}: {timings[-1] * 1000:.0f} ms", flush=True)
            result["add_field_ms"] = [t * 1000 for t in timings]
            result["add_field_median_ms"] = statistics.median(timings) * 1000

            began = time.perf_counter()
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE e_customer ADD COLUMN raw_probe VARCHAR(50)")
            result["raw_alter_ms"] = (time.perf_counter() - began) * 1000
            with engine.begin() as conn:
                conn.exec_driver_sql("ALTER TABLE e_customer DROP COLUMN raw_probe")
            print(f"  bare ALTER TABLE ADD COLUMN: {result['raw_alter_ms']:.0f} ms", flush=True)

            if kind == "sqlite":
                with engine.connect() as conn:
                    began = time.perf_counter()
                    conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    result["fk_check_ms"] = (time.perf_counter() - began) * 1000
                print(f"  PRAGMA foreign_key_check alone: {result['fk_check_ms']:.0f} ms", flush=True)

            extra.append({"name": "extra_indexed", "type": "string", "max_length": 50, "index": True})
            result["add_indexed_field_ms"] = _publish(metadata, extra) * 1000
            print(f"  add an indexed field (builds an index over {rows:,} rows): "
                  f"{result['add_indexed_field_ms']:.0f} ms", flush=True)

            with engine.connect() as conn:
                count = conn.execute(sa.text("SELECT count(*) FROM e_customer")).scalar_one()
            if count != rows:
                raise AssertionError(f"{count} rows after the changes, expected {rows}")
        finally:
            engine.dispose()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", choices=("postgresql", "sqlite"),
                        help="database to measure; repeat for both (default: both)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5, help="fields added one after another (default 5)")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (schema bench_addcol is used)")
    args = parser.parse_args(argv)
    print(f"# Loom add-column benchmark: {args.rows:,} rows, {args.runs} publishes")
    print(f"machine: {machine()}")
    print(f"loom: {loom_revision()}")
    results = [run(kind, args.rows, args.runs, args.pg_url) for kind in (args.db or ["postgresql", "sqlite"])]
    print("\n| database | rows | add field, median | each publish | bare ALTER TABLE | add indexed field |")
    print("|---|---:|---:|---|---:|---:|")
    for r in results:
        each = ", ".join(f"{t:.0f}" for t in r["add_field_ms"])
        print(f"| {r['db']} | {r['rows']:,} | {r['add_field_median_ms']:.0f} ms | {each} ms "
              f"| {r['raw_alter_ms']:.0f} ms | {r['add_indexed_field_ms']:.0f} ms |")
    for r in results:
        met = "met" if r["add_field_median_ms"] < 1000 else "MISSED"
        print(f"{r['db']}: add field median {r['add_field_median_ms']:.0f} ms: target < 1000 ms {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
