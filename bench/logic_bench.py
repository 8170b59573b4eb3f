"""Business logic's cost on writes, in-process through the record service (as the API,
the screens and imports call it), on two entities alike but for their logic: one plain,
one with a computed default from a link (``unit_price: {from: product.list_price}``), a
computed line amount, a roll-up of the lines (``lines_total``), three computed fields on
the order (one reading the roll-up), a ``required_when`` and a rule. Rounds alternate
which entity goes first; the ratio of the medians is printed, for:

- ``bulk_create`` of ``--rows`` orders of ``--lines`` lines each (rows per second);
- ``--singles`` orders created one by one, then each updated twice: a field of the order
  (its computed fields recomputed) and its lines replaced (amounts and roll-up
  recomputed); writes per second;
- ``--import-rows`` orders imported from a CSV file (the import screen's job, without lines:
  a spreadsheet row is one order); rows per second.

    python bench/logic_bench.py --db sqlite --rows 2000 --rounds 5
    python bench/logic_bench.py --db sqlite --rows 500 --lines 10 --singles 200 --import-rows 5000 --rounds 5

Everything it creates (a temporary SQLite file, the PostgreSQL schema ``bench_logic``) is
removed at the end.
"""

from __future__ import annotations

import argparse
import io
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
            {"name": "discount", "type": "percent"},
            {"name": "lines_total", "type": "money", **extra(rollup={"from": "lines", "sum": "amount"})},
            {"name": "total", "type": "money",
             **extra(compute="round(lines_total * (1 - coalesce(discount, 0) / 100), 2)")},
        ], **extra(rules=[{"when": "delivery_date < order_date", "message": "Delivery before order",
                           "fields": ["delivery_date"]}])},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--lines", type=int, default=3, help="lines per order")
    parser.add_argument("--singles", type=int, default=0, help="orders created and updated one by one per round")
    parser.add_argument("--import-rows", type=int, default=0, help="orders imported from CSV per round")
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
    timings: dict[str, dict[str, list[float]]] = {}

    def timed(what: str, kind: str, count: int, work) -> None:
        started = time.perf_counter()
        work()
        timings.setdefault(what, {"plain": [], "logic": []})[kind].append(count / (time.perf_counter() - started))

    with app.app_context():
        ids = record_service("product", system).bulk_create([{"list_price": f"{i}.50"} for i in range(1, 51)])
        importer = app.extensions["loom"].identity.create_user("importer", is_superuser=True)

        def order(i: int, shift: int = 0) -> dict:
            return {"customer": f"c{i}", "order_date": "2030-01-01", "delivery_date": "2030-01-09",
                    "status": "draft", "discount": "5",
                    "lines": [{"product": ids[(i + j + shift) % len(ids)], "quantity": j + 1}
                              for j in range(args.lines)]}

        for round_ in range(args.rounds):
            for kind in (("plain", "logic") if round_ % 2 == 0 else ("logic", "plain")):
                service = record_service(f"order_{kind}", system)
                rows = [order(i) for i in range(args.rows)]
                timed("bulk", kind, args.rows, lambda: service.bulk_create(rows))  # noqa: B023
                if args.singles:
                    made: list[int] = []
                    timed("create", kind, args.singles,
                          lambda: made.extend(service.create(order(i))["id"] for i in range(args.singles)))  # noqa: B023
                    timed("update", kind, 2 * len(made), lambda: [  # noqa: B023
                        (service.update(record_id, {"customer": f"d{record_id}"}),  # noqa: B023
                         service.update(record_id, {"lines": order(record_id, 1)["lines"]}))  # noqa: B023
                        for record_id in made])  # noqa: B023
                if args.import_rows:
                    timed("import", kind, args.import_rows,
                          lambda: import_orders(app, f"order_{kind}", importer, args.import_rows))  # noqa: B023
    print(f"{args.db}: {args.rows} orders x {args.lines} lines, {args.rounds} rounds; medians "
          "(rows or writes per second)")
    for what, by_kind in timings.items():
        plain, logic = statistics.median(by_kind["plain"]), statistics.median(by_kind["logic"])
        print(f"  {what:<7} plain {plain:8.0f}  with logic {logic:8.0f}  logic/plain {logic / plain:.2f}")
    engine.dispose()


def import_orders(app, entity: str, user_id: int, rows: int) -> None:
    """Import ``rows`` orders from a CSV file as the import screen's job does, and check
    every row arrived."""
    import sqlalchemy as sa

    from loom.ui.importing import run_import, store_job
    from loom.ui.models import import_jobs

    loom = app.extensions["loom"]
    content = "customer,order_date,delivery_date,status,discount\n" + "".join(
        f"i{i},2030-01-01,2030-01-09,draft,5\n" for i in range(rows))
    principal = loom.identity.principal_for("importer")
    with loom.engine.begin() as conn:
        job_id = store_job(conn, user_id=user_id, entity=entity, filename="orders.csv",
                           file=io.BytesIO(content.encode()),
                           mapping=["customer", "order_date", "delivery_date", "status", "discount"],
                           total=rows, status="running")
    run_import(app, job_id, principal, "en")
    with loom.engine.connect() as conn:
        job = conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id)).mappings().one()
    if (job["status"], job["imported"]) != ("done", rows):
        raise RuntimeError(f"the import of {entity} ended {job['status']} with {job['imported']} of {rows} rows: "
                           f"{job['message']}")


if __name__ == "__main__":
    main()
