"""Business logic's cost on writes: rows per second of ``bulk_create`` (in-process, through
the record service, as the API and imports call it) for orders of 3 lines each, on two
entities alike but for their logic: one plain, one with a computed default from a link
(``unit_price: {from: product.list_price}``), a computed line amount, two computed
fields on the order, a ``required_when`` and a rule. Rounds alternate which entity goes
first; the ratio of the medians is printed.

    python bench/logic_bench.py --db sqlite --rows 2000 --rounds 5
    python bench/logic_bench.py --db postgresql --rows 2000 --rounds 5

Everything it creates (a temporary SQLite file, the PostgreSQL schema ``bench_logic``) is
removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchlib import scratch_database

from loom.app import create_app
from loom.db import create_engine
from loom.plugins import plugin_manager
from loom.plugins.migrations import upgrade
from loom.principal import Principal
from loom.records.door import record_service
from loom.schema.service import model_from_documents


def documents(logic: bool) -> list[dict]:
    suffix = "logic" if logic else "plain"
    extra = (lambda **kw: kw) if logic else (lambda **kw: {})
    return [
        {"kind": "entity", "name": f"line_{suffix}", "child": True, "fields": [
            {"name": "product", "type": "link", "target": "product"},
            {"name": "quantity", "type": "integer"},
            {"name": "unit_price", "type": "money", **extra(default={"from": "product.list_price"})},
            {"name": "amount", "type": "money", **extra(compute="quantity * unit_price")},
        ]},
        {"kind": "entity", "name": f"order_{suffix}", "fields": [
            {"name": "customer", "type": "string"},
            {"name": "code", "type": "string", **extra(compute="concat(upper(customer), '-', status)")},
            {"name": "order_date", "type": "date"},
            {"name": "delivery_date", "type": "date"},
            {"name": "lead_days", "type": "integer", **extra(compute="days_between(order_date, delivery_date)")},
            {"name": "status", "type": "string"},
            {"name": "tracking", "type": "string", **extra(required_when="status = 'shipped'")},
            {"name": "lines", "type": "table", "target": f"line_{suffix}"},
        ], **extra(rules=[{"when": "delivery_date < order_date", "message": "Delivery before order",
                           "fields": ["delivery_date"]}])},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with scratch_database(args.db, schema="bench_logic") as database:
        run(args, database.url, database.workdir)


def run(args: argparse.Namespace, url: str, folder: str) -> None:
    engine = create_engine(url)
    upgrade(engine, plugin_manager([], discover=False))
    app = create_app({"ENGINE": engine, "DATABASE_URL": url, "INSTANCE_PATH": f"{folder}/instance",
                      "SECRET_KEY": "bench", "PLUGINS": [], "DISCOVER_PLUGINS": False})
    product = {"kind": "entity", "name": "product", "fields": [{"name": "list_price", "type": "money"}]}
    app.extensions["loom"].metadata.apply(model_from_documents([product, *documents(False), *documents(True)]),
                                         author="bench")
    system = Principal.system("bench")
    timings: dict[str, list[float]] = {"plain": [], "logic": []}
    with app.app_context():
        ids = record_service("product", system).bulk_create([{"list_price": f"{i}.50"} for i in range(1, 51)])
        for round_ in range(args.rounds):
            for kind in (("plain", "logic") if round_ % 2 == 0 else ("logic", "plain")):
                rows = [{"customer": f"c{i}", "order_date": "2030-01-01", "delivery_date": "2030-01-09",
                         "status": "draft",
                         "lines": [{"product": ids[(i + j) % len(ids)], "quantity": j + 1} for j in range(3)]}
                        for i in range(args.rows)]
                started = time.perf_counter()
                record_service(f"order_{kind}", system).bulk_create(rows)
                timings[kind].append(args.rows / (time.perf_counter() - started))
    plain, logic = statistics.median(timings["plain"]), statistics.median(timings["logic"])
    print(f"{args.db}: {args.rows} orders x 3 lines, {args.rounds} rounds; median rows/s "
          f"plain {plain:.0f}, with logic {logic:.0f}; logic/plain {logic / plain:.2f}")
    engine.dispose()


if __name__ == "__main__":
    main()
