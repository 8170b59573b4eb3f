"""What keeping roll-ups up to date costs a write, when the parent has many children: a
customer with N tickets (``open_tickets``: a count with a where, ``hours``: a sum) beside a
customer with N tickets of an entity alike but without roll-ups. Measured in-process,
through the record service (as the API calls it), median of ``--rounds`` writes each:

- one ticket create whose roll-ups are recomputed over its N siblings, against one plain
  ticket create (the difference is the recompute: aggregate, parent update, its event and
  audit entry);
- the SQL aggregate alone (``SELECT customer, COUNT(...), SUM(...) ... GROUP BY customer``
  over the N + rounds tickets);
- ``depends_on_links``: one update of the customer's credit limit, which recomputes
  ``credit_left`` of its N tickets (in batches of 500), each an audited change.

    python bench/rollup_bench.py --db sqlite --children 10000 --rounds 20
    python bench/rollup_bench.py --db postgresql --children 10000 --rounds 20

Everything it creates (a temporary SQLite file, the PostgreSQL schema ``bench_rollup``) is
removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import time

import sqlalchemy as sa
from benchlib import scratch_database

from loom.app import create_app
from loom.db import create_engine
from loom.plugins import plugin_manager
from loom.plugins.migrations import upgrade
from loom.principal import Principal
from loom.records.door import record_service
from loom.schema.service import model_from_documents


def documents() -> list[dict]:
    ticket_fields = [{"name": "subject", "type": "string"}, {"name": "status", "type": "string"},
                     {"name": "hours", "type": "decimal", "scale": 2}]
    return [
        {"kind": "entity", "name": "customer", "fields": [
            {"name": "name", "type": "string"}, {"name": "credit_limit", "type": "money"},
            {"name": "open_tickets", "type": "integer",
             "rollup": {"from": "ticket.customer", "count": True, "where": "status != 'closed'"}},
            {"name": "hours", "type": "decimal", "scale": 2, "rollup": {"from": "ticket.customer", "sum": "hours"}},
        ]},
        {"kind": "entity", "name": "ticket", "fields": [
            {"name": "customer", "type": "link", "target": "customer"}, *ticket_fields,
            {"name": "credit_left", "type": "money", "compute": "customer.credit_limit - coalesce(hours, 0)",
             "depends_on_links": True},
        ]},
        {"kind": "entity", "name": "plain_customer", "fields": [
            {"name": "name", "type": "string"}, {"name": "credit_limit", "type": "money"}]},
        {"kind": "entity", "name": "plain_ticket", "fields": [
            {"name": "customer", "type": "link", "target": "plain_customer"}, *ticket_fields,
            {"name": "credit_left", "type": "money", "compute": "customer.credit_limit - coalesce(hours, 0)"},
        ]},
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with scratch_database(args.db, schema="bench_rollup") as database:
        run(args, database.url, database.workdir)


def _median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000


def run(args: argparse.Namespace, url: str, folder: str) -> None:
    engine = create_engine(url)
    upgrade(engine, plugin_manager([], discover=False))
    app = create_app({"ENGINE": engine, "DATABASE_URL": url, "INSTANCE_PATH": f"{folder}/instance",
                      "SECRET_KEY": "bench", "PLUGINS": [], "DISCOVER_PLUGINS": False})
    app.extensions["loom"].metadata.apply(model_from_documents(documents()), author="bench")
    system = Principal.system("bench")
    timings: dict[str, list[float]] = {"rollup": [], "plain": [], "aggregate": [], "fan_out": []}
    with app.app_context():
        parents = {}
        for kind, customer, ticket in (("rollup", "customer", "ticket"), ("plain", "plain_customer", "plain_ticket")):
            parents[kind] = record_service(customer, system).create({"name": "Acme", "credit_limit": "1000.00"})["id"]
            tickets = record_service(ticket, system)
            for start in range(0, args.children, 2000):
                tickets.bulk_create([{"customer": parents[kind], "subject": f"t{i}", "hours": "1.25",
                                      "status": "closed" if i % 5 == 0 else "open"}
                                     for i in range(start, min(start + 2000, args.children))])
        for round_ in range(args.rounds):
            for kind in (("rollup", "plain") if round_ % 2 == 0 else ("plain", "rollup")):
                service = record_service("ticket" if kind == "rollup" else "plain_ticket", system)
                started = time.perf_counter()
                service.create({"customer": parents[kind], "subject": "new", "hours": "0.50", "status": "open"})
                timings[kind].append(time.perf_counter() - started)
        customer = record_service("customer", system).get(parents["rollup"])
        assert customer["open_tickets"] == args.children - (args.children + 4) // 5 + args.rounds, customer
        table = app.extensions["loom"].metadata.live().tables["ticket"]
        aggregate = sa.select(table.c.customer, sa.func.count(sa.case((table.c.status != "closed", 1))),
                              sa.func.sum(table.c.hours)).where(table.c.customer.in_([parents["rollup"]])) \
            .group_by(table.c.customer)
        with engine.connect() as conn:
            for _ in range(args.rounds):
                started = time.perf_counter()
                conn.execute(aggregate).all()
                timings["aggregate"].append(time.perf_counter() - started)
        fan_rounds = max(1, min(3, args.rounds))
        for i in range(fan_rounds):
            started = time.perf_counter()
            record_service("customer", system).update(parents["rollup"], {"credit_limit": f"{2000 + i}.00"})
            timings["fan_out"].append(time.perf_counter() - started)
    rollup, plain = _median_ms(timings["rollup"]), _median_ms(timings["plain"])
    print(f"{args.db}: a parent with {args.children} children, median of {args.rounds} writes")
    print(f"  one child create, roll-ups recomputed: {rollup:.1f} ms; without roll-ups: {plain:.1f} ms; "
          f"the recompute costs {rollup - plain:.1f} ms")
    print(f"  the SQL aggregate alone: {_median_ms(timings['aggregate']):.2f} ms")
    print(f"  depends_on_links: one parent update recomputing its {args.children} children: "
          f"{_median_ms(timings['fan_out']):.0f} ms (median of {fan_rounds}), "
          f"{args.children / statistics.median(timings['fan_out']):.0f} children/s")
    engine.dispose()


if __name__ == "__main__":
    main()
