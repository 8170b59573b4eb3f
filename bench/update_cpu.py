"""CPU time of single API updates and single API creates alone, in process: the
Customer entity of ``benchlib`` (2,000 rows, SQLite or PostgreSQL with ``--pg-url``),
through Flask's test client with an API token. Each operation runs a warm-up, then
seven runs of 200 requests, and prints the best run's CPU microseconds per request
(``time.process_time``). ``request_cpu.py`` measures a create and an update as one pair;
this one tells them apart.

Two trees can be compared at the same time (each sees the same load) when each uses a
schema of its own on PostgreSQL:

    python bench/update_cpu.py
    python bench/update_cpu.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test --schema bench_update_a
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

ROWS = 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", help="run on this PostgreSQL server instead of SQLite")
    parser.add_argument("--schema", default="bench_update_cpu", help="PostgreSQL schema (bench_...) to work in")
    args = parser.parse_args(argv)
    from loom.app import create_app

    with scratch_database("postgresql" if args.pg_url else "sqlite", args.pg_url or "", args.schema) as database, \
            tempfile.TemporaryDirectory() as work:
        _, token = prepare(database.url, ROWS, work)
        app = create_app({"DATABASE_URL": database.url, "INSTANCE_PATH": os.path.join(work, "instance"),
                          "SECRET_KEY": "update-cpu", "DISCOVER_PLUGINS": False})
        client, auth = app.test_client(), {"Authorization": f"Bearer {token}"}

        def body(i: int) -> dict:
            return {"name": f"Customer {i}", "credit_code": f"C{i:09d}", "level": "B", "region": REGIONS[i % 5],
                    "credit_limit": "12345.67", "mobile": "13800138000", "email": "a@example.com",
                    "city": "Hangzhou", "notes": "x", "account_manager": 1 + i % USERS}

        def updates(n: int, first: int) -> None:
            for i in range(first, first + n):
                done = client.patch(f"/api/v1/customer/{1 + i % ROWS}", json={"notes": f"u{i}", "credit_limit": "5.00"},
                                    headers=auth)
                assert done.status_code == 200, done.get_data(as_text=True)[:300]

        def creates(n: int, first: int) -> None:
            for i in range(first, first + n):
                done = client.post("/api/v1/customer", json=body(i), headers=auth)
                assert done.status_code == 201, done.get_data(as_text=True)[:300]

        result = {}
        for name, work_of in (("update_us", updates), ("create_us", creates)):
            work_of(60, 900_000)
            runs = []
            for k in range(7):
                started = time.process_time()
                work_of(200, 1_000_000 + k * 1000)
                runs.append((time.process_time() - started) / 200 * 1e6)
            result[name] = round(min(runs))
    print(f"loom: {loom_revision()}  database: {'postgresql' if args.pg_url else 'sqlite'}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
