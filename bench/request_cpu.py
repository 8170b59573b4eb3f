"""CPU time per API request, in process: what Loom's own code costs, without a network,
a server or a load generator sharing the cores.

The Customer entity of ``benchlib`` with ``--rows`` rows (SQLite, or PostgreSQL with
``--pg-url``), driven through Flask's test client with an API token, one request at a
time. For each operation it runs a warm-up, then three timed runs, and prints the best
run's CPU microseconds per request (``time.process_time``: other work on the machine
changes it far less than wall time):

- ``write``: a create followed by an update of two fields (the pair);
- ``get``: one record by id;
- ``list``: a filtered, sorted page of 50 with four fields;
- ``bulk``: rows per CPU second of ``POST /_bulk`` with 1,000 rows a request.

To compare two commits, run it in a worktree of each (with its own virtual environment),
alternately, and compare the figures of one sitting:

    python bench/request_cpu.py                    # SQLite
    python bench/request_cpu.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from api_bench import prepare
from benchlib import REGIONS, USERS, loom_revision, scratch_database

SCHEMA = "bench_request_cpu"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="customers loaded first (default 20,000)")
    parser.add_argument("--pg-url", help="run on this PostgreSQL server (schema bench_request_cpu) instead of SQLite")
    args = parser.parse_args(argv)
    from loom.app import create_app

    with scratch_database("postgresql" if args.pg_url else "sqlite", args.pg_url or "", SCHEMA) as database, \
            tempfile.TemporaryDirectory() as work:
        _, token = prepare(database.url, args.rows, work)
        app = create_app({"DATABASE_URL": database.url, "INSTANCE_PATH": os.path.join(work, "instance"),
                          "SECRET_KEY": "request-cpu", "DISCOVER_PLUGINS": False})
        client, auth = app.test_client(), {"Authorization": f"Bearer {token}"}

        def body(i: int) -> dict:
            return {"name": f"Customer {i}", "credit_code": f"C{i:09d}", "level": "B", "region": REGIONS[i % 5],
                    "credit_limit": "12345.67", "mobile": "13800138000", "email": "a@example.com",
                    "city": "Hangzhou", "notes": "x", "account_manager": 1 + i % USERS}

        def check(response, status: int) -> None:
            if response.status_code != status:
                raise RuntimeError(f"{response.status_code}: {response.get_data(as_text=True)[:300]}")

        def writes(n: int, first: int) -> None:
            for i in range(first, first + n):
                check(client.post("/api/v1/customer", json=body(i), headers=auth), 201)
                check(client.patch(f"/api/v1/customer/{1 + i % args.rows}", json={"notes": f"u{i}",
                                   "credit_limit": "5.00"}, headers=auth), 200)

        def gets(n: int, first: int) -> None:
            for i in range(first, first + n):
                check(client.get(f"/api/v1/customer/{1 + i * 7 % args.rows}", headers=auth), 200)

        def lists(n: int, first: int) -> None:
            for i in range(first, first + n):
                check(client.get(f"/api/v1/customer?filter[region][eq]={REGIONS[i % 5]}&sort=-id&limit=50"
                                 "&fields=id,name,mobile,level", headers=auth), 200)

        def bulks(n: int, first: int) -> None:
            for k in range(first, first + n):
                check(client.post("/api/v1/customer/_bulk", json=[body(10_000_000 + k * 1000 + i)
                                                                   for i in range(1000)], headers=auth), 201)

        def best(work_of, n: int, base: int) -> float:
            work_of(max(1, n // 5), base)
            runs = []
            for k in range(3):
                started = time.process_time()
                work_of(n, base + (k + 1) * n)
                runs.append((time.process_time() - started) / n)
            return min(runs)

        result = {"write_us": best(writes, 300, 100_000) * 1e6, "get_us": best(gets, 1500, 0) * 1e6,
                  "list_us": best(lists, 600, 0) * 1e6, "bulk_rows_per_cpu_s": 1000 / best(bulks, 4, 0)}
    print(f"loom: {loom_revision()}  database: {'postgresql' if args.pg_url else 'sqlite'}")
    print(json.dumps({k: round(v) for k, v in result.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
