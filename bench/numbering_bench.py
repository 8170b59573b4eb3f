"""Autonumber fields: what numbering costs a create, and what ``gap_free`` costs when
creates run at once.

One Loom app (the app factory, in process) on a fresh database holds three entities alike
but for their ``number`` field: ``plain`` (an ordinary string field), ``loose``
(``autonumber: "SO-{yyyy}{mm}-{seq:5}"``) and ``strict`` (the same, ``gap_free: true``).
Each round creates ``--creates`` records of each entity through the record service
(``loom.record_service``, as a superuser: validation, hooks, outbox, audit as in any
write), from ``--threads`` threads at once, the three entities in an order that rotates
from round to round. It prints creates per second per entity and round, the medians, and
each autonumber entity's median as a ratio of ``plain``'s from the same rounds; then
checks that every number was given once.

    python bench/numbering_bench.py --db sqlite --db postgresql --threads 1 --threads 8

Everything it creates (a temporary SQLite file, the PostgreSQL schema ``bench_numbering``)
is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import sqlalchemy as sa
from benchlib import DEFAULT_PG_URL, loom_revision, machine, scratch_database

ENTITIES = ("plain", "loose", "strict")


def _fields(name: str) -> list[dict]:
    number: dict = {"name": "number", "type": "string"}
    if name != "plain":
        number.update(autonumber="SO-{yyyy}{mm}-{seq:5}", gap_free=name == "strict")
    return [number, {"name": "subject", "type": "string"}, {"name": "amount", "type": "decimal"}]


def _app(url: str, workdir: str):
    from loom.app import create_app
    from loom.db import create_engine
    from loom.plugins import plugin_manager
    from loom.plugins.migrations import upgrade
    from loom.schema.service import model_from_documents

    engine = create_engine(url, pool_size=16)
    upgrade(engine, plugin_manager([], discover=False))
    app = create_app({"ENGINE": engine, "DATABASE_URL": url, "INSTANCE_PATH": os.path.join(workdir, "instance"),
                      "SECRET_KEY": "bench", "DISCOVER_PLUGINS": False})
    loom = app.extensions["loom"]
    loom.metadata.apply(model_from_documents([{"kind": "entity", "name": name, "fields": _fields(name)}
                                              for name in ENTITIES]), author="bench")
    loom.identity.create_user("bench", is_superuser=True)
    return app, engine


def _round(app, entity: str, creates: int, threads: int) -> float:
    """Creates per second of ``creates`` records of ``entity`` from ``threads`` threads."""
    import loom

    share = [creates // threads + (i < creates % threads) for i in range(threads)]
    start = threading.Barrier(threads + 1)
    failures: list[BaseException] = []

    def run(count: int) -> None:
        try:
            with app.app_context():
                acting = app.extensions["loom"].identity.principal_for("bench")
                service = loom.record_service(entity, acting, app=app)
                start.wait()
                for i in range(count):
                    service.create({"subject": f"order {i}", "amount": "12.50"})
        except BaseException as exc:  # reported after the round
            failures.append(exc)
            start.abort()
            raise

    workers = [threading.Thread(target=run, args=(n,)) for n in share]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    return creates / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--threads", type=int, action="append")
    parser.add_argument("--creates", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"# {machine()}; commit {loom_revision()}; load average {os.getloadavg()}")
    for kind in args.db or ["sqlite"]:
        for threads in args.threads or [1]:
            with scratch_database(kind, args.pg_url, schema="bench_numbering") as db:
                app, engine = _app(db.url, db.workdir)
                rates: dict[str, list[float]] = {name: [] for name in ENTITIES}
                for r in range(args.rounds):
                    order = ENTITIES[r % 3:] + ENTITIES[:r % 3]
                    for name in order:
                        rates[name].append(_round(app, name, args.creates, threads))
                    print(f"{kind} threads={threads} round {r + 1}: "
                          + ", ".join(f"{name} {rates[name][-1]:.0f}/s" for name in ENTITIES), flush=True)
                medians = {name: statistics.median(values) for name, values in rates.items()}
                print(f"{kind} threads={threads} median creates/s: "
                      + ", ".join(f"{name} {medians[name]:.0f}" for name in ENTITIES)
                      + f"; loose/plain {medians['loose'] / medians['plain']:.2f}"
                      + f", strict/plain {medians['strict'] / medians['plain']:.2f}", flush=True)
                with engine.connect() as conn:
                    for name in ("loose", "strict"):
                        total, distinct = conn.execute(sa.text(
                            f"SELECT count(*), count(DISTINCT number) FROM e_{name}")).one()
                        if total != distinct or total != args.creates * args.rounds:
                            print(f"ERROR: {name} has {total} rows and {distinct} distinct numbers", file=sys.stderr)
                            return 1
                engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
