"""Single writes in a loop, to be profiled: API creates of a sales order with a customer
link and two lines, each followed by an update of one field (with If-Match), through the
Flask test client in this process, on the app ``statements.py`` builds (SQLite, or
PostgreSQL with ``--pg-url``). It prints the writes per second of CPU; under a sampling
profiler it gives the flame graph of the single-write path:

    py-spy record -o bench/flames/single-writes-sqlite.svg -- python bench/write_flame.py --writes 2000

With ``--bulk N`` it instead loops bulk creates of N orders each (``POST .../_bulk``), as
many as make ``--writes`` orders, for the flame graph of the bulk path.

Everything it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchlib import scratch_database
from statements import ORDERS, build, order_body

SCHEMA = "bench_write_flame"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1000, help="creates, each followed by an update (default 1000)")
    parser.add_argument("--bulk", type=int, metavar="N", help="bulk creates of N orders each, instead of single writes")
    parser.add_argument("--pg-url", help="run on this PostgreSQL server (schema bench_write_flame) instead of SQLite")
    args = parser.parse_args(argv)
    with scratch_database("postgresql" if args.pg_url else "sqlite", args.pg_url or "", SCHEMA) as database:
        app, engine, token, ids = build(database.url, database.workdir)
        api = app.test_client()
        auth = {"Authorization": f"Bearer {token}"}
        try:
            started = time.process_time()
            if args.bulk:
                for first in range(0, args.writes, args.bulk):
                    made = api.post(f"{ORDERS}/_bulk", headers=auth, json=[
                        order_body(ids, f"FB-{i:07d}") for i in range(first, min(first + args.bulk, args.writes))])
                    assert made.status_code == 201, made.get_json()
                cpu = time.process_time() - started
                print(f"{args.writes} orders in bulks of {args.bulk}: {args.writes / cpu:,.0f} orders per CPU second")
                return 0
            for i in range(args.writes):
                made = api.post(ORDERS, json=order_body(ids, f"FL-{i:06d}"), headers=auth)
                assert made.status_code == 201, made.get_json()
                record = made.get_json()["data"]
                changed = api.patch(f"{ORDERS}/{record['id']}", json={"total": "400.00"},
                                    headers={**auth, "If-Match": f'"{record["version"]}"'})
                assert changed.status_code == 200, changed.get_json()
            cpu = time.process_time() - started
        finally:
            engine.dispose()
    print(f"{args.writes} creates and {args.writes} updates: {2 * args.writes / cpu:,.0f} writes per CPU second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
