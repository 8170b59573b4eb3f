"""What permissions cost: list, get and update on N customers as a sales rep whose role
has an ``own`` row scope and field rules, beside the same requests as a user whose role
allows everything on every row, in one run, on SQLite or PostgreSQL.

Requests go through the whole Flask app in process (authentication, permission
decisions, scope in SQL, field filtering, serialization), without a network in between,
so the comparison isolates server work. Runs alternate between the two users in short
rounds so that the machine's noise falls on both alike.

    python bench/permissions_bench.py --db sqlite --rows 100000 --rounds 20
    python bench/permissions_bench.py --db postgresql --rows 100000 --rounds 20
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    customer_document,
    fill_customers,
    insert_users,
    machine,
    percentile,
    scratch_database,
)

from loom.app import create_app  # noqa: E402
from loom.db import upgrade  # noqa: E402
from loom.schema.service import model_from_documents  # noqa: E402

ROLES = [
    {"kind": "role", "name": "everything", "permissions": {"customer": {
        "actions": ["read", "create", "update", "delete"], "scope": "all"}}},
    {"kind": "role", "name": "rep", "permissions": {"customer": {
        "actions": ["read", "update"], "scope": "own",
        "fields": {"*": "write", "credit_limit": "read", "level": "read", "notes": "none"}}}},
]
#: the rep is benchlib's user ``manager3`` (id 3): every 20th customer is theirs
REP_ID = 3


def run(kind: str, rows: int, rounds: int, per_round: int) -> dict:
    with scratch_database(kind, schema="bench_perm") as db:
        app = create_app({"DATABASE_URL": db.url, "INSTANCE_PATH": f"{db.workdir}/instance", "SECRET_KEY": "bench",
                          "DISCOVER_PLUGINS": False})
        loom = app.extensions["loom"]
        upgrade(loom.engine)
        insert_users(loom.engine)
        loom.metadata.apply(model_from_documents([customer_document(), *ROLES]), author="bench")
        fill_customers(loom.engine, rows)
        identity = loom.identity
        identity.assign(REP_ID, "rep", actor="bench")
        identity.create_user("boss", roles=["everything"])
        tokens = {"admin": identity.create_token("boss").token, "rep": identity.create_token("manager3").token}
        clients = {}
        for who, token in tokens.items():
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            clients[who] = client
        # the rep's own customers (i % 20 + 1 == 3), and the same number of anyone's for the admin
        ids = {"rep": [i for i in range(2, rows + 1, 20)], "admin": list(range(1, rows + 1))}
        rng = random.Random(1)
        operations = {
            "list": lambda c, who: c.get("/api/v1/customer?filter[region][eq]=east&sort=-created_at&limit=50"),
            "get": lambda c, who: c.get(f"/api/v1/customer/{rng.choice(ids[who])}"),
            "update": lambda c, who: c.patch(f"/api/v1/customer/{rng.choice(ids[who])}",
                                             json={"city": f"City {rng.randrange(1000)}"}),
        }
        timings = {(op, who): [] for op in operations for who in clients}
        for client_who, client in clients.items():  # warm up caches and connections
            for op, call in operations.items():
                for _ in range(5):
                    assert call(client, client_who).status_code == 200, (op, client_who)
        for _ in range(rounds):
            for op, call in operations.items():
                for who, client in clients.items():
                    for _ in range(per_round):
                        start = time.perf_counter()
                        response = call(client, who)
                        timings[(op, who)].append(time.perf_counter() - start)
                        assert response.status_code == 200, (op, who, response.get_json())
        loom.engine.dispose()
    result = {}
    for op in operations:
        row = {}
        for who in clients:
            values = timings[(op, who)]
            row[who] = {"rps": len(values) / sum(values), "p50": statistics.median(values) * 1000,
                        "p99": percentile(values, 0.99) * 1000}
        row["ratio"] = row["rep"]["rps"] / row["admin"]["rps"]
        result[op] = row
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=20)
    args = parser.parse_args()
    result = run(args.db, args.rows, args.rounds, args.per_round)
    print(f"# permissions, {args.db}, {args.rows} customers, {machine()}")
    print("| operation | admin req/s | admin p50 / p99 ms | rep req/s | rep p50 / p99 ms | rep / admin |")
    print("|---|---|---|---|---|---|")
    for op, row in result.items():
        a, r = row["admin"], row["rep"]
        print(f"| {op} | {a['rps']:.0f} | {a['p50']:.1f} / {a['p99']:.1f} | {r['rps']:.0f} | "
              f"{r['p50']:.1f} / {r['p99']:.1f} | {row['ratio']:.2f} |")


if __name__ == "__main__":
    main()
