"""Planner statistics of entity tables, refreshed after the writes that change a table the
most: bulk creates, imports and publishes.

A query planner picks an index by what it knows of a table. SQLite knows nothing until
``ANALYZE`` runs, which it never does on its own; PostgreSQL's autovacuum analyses a table
only once enough of it changed and the daemon comes round to it. After a bulk load of a
hundred thousand customers, both would still plan a "customers of a region" list for an
empty table for a while. So Loom analyses a table itself:

- after a bulk create (the API's, an import's chunks) once this process has written
  ``ROWS`` rows to the table since it last analysed it, or a ``GROWTH`` share of the rows
  the table had then, whichever is more: a load of a million rows in requests of 1,000 is
  analysed a few dozen times in all, each time on a bounded sample;
- after an import job, once, for its whole table;
- after a publish that creates or changes tables.

On PostgreSQL this is ``ANALYZE <table>`` (which samples at most a few tens of thousands of
rows). On SQLite it is ``ANALYZE <table>`` under ``PRAGMA analysis_limit``, which reads a
bounded number of rows of each index, the way ``PRAGMA optimize`` does; it takes the
database's write lock for as long as that takes. Statistics only make queries faster: a
refresh that fails is logged and never fails the write that asked for it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from loom.db import write_transaction

log = logging.getLogger(__name__)

#: rows written to a table (in one process) that call for fresh statistics
ROWS = 1000
#: ... or this share of the rows the table had when it was last analysed, if that is more
GROWTH = 0.2
#: rows of each index SQLite's ANALYZE reads (``PRAGMA analysis_limit``)
SQLITE_ANALYSIS_LIMIT = 1000


def analyze(engine: sa.Engine, tables: Iterable[str]) -> dict[str, int | None]:
    """Refresh the planner statistics of ``tables`` now; returns each table's estimated
    row count afterwards (None where the database gave none). Never raises: a failure is
    logged and the table left as it was."""
    sizes: dict[str, int | None] = {}
    for table in dict.fromkeys(tables):
        quoted = engine.dialect.identifier_preparer.quote(table)
        try:
            if engine.dialect.name == "postgresql":
                with engine.connect() as conn:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    conn.exec_driver_sql(f"ANALYZE {quoted}")
                    sizes[table] = conn.execute(sa.text(
                        "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"),
                        {"name": quoted}).scalar()
            else:
                with write_transaction(engine) as conn:
                    conn.exec_driver_sql(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
                    conn.exec_driver_sql(f"ANALYZE {quoted}")
                    stat = conn.execute(sa.text("SELECT stat FROM sqlite_stat1 WHERE tbl = :name LIMIT 1"),
                                        {"name": table}).scalar()
                    sizes[table] = int(stat.split()[0]) if stat else 0
        except sa.exc.DBAPIError:
            log.exception("could not refresh the planner statistics of %s", table)
            sizes[table] = None
    return sizes


@dataclass
class _Table:
    #: rows written since this process last analysed the table
    written: int = 0
    #: the table's estimated rows when it was last analysed
    size: int = 0
    analysing: bool = False


_tables: weakref.WeakKeyDictionary[sa.Engine, dict[str, _Table]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def rows_written(engine: sa.Engine, counts: dict[str, int]) -> list[str]:
    """Note that ``counts[table]`` rows were just written (committed) to each table, and
    analyse those that have had enough since they were last analysed (see the module's
    text); returns the tables analysed. Meant to run once the write committed."""
    due = []
    with _lock:
        known = _tables.setdefault(engine, {})
        for table, rows in counts.items():
            state = known.setdefault(table, _Table())
            state.written += rows
            if not state.analysing and state.written >= max(ROWS, GROWTH * state.size):
                # one refresh at a time per table; rows written meanwhile count for the next
                state.analysing, due = True, [*due, table]
                state.size += state.written
                state.written = 0
    if not due:
        return []
    sizes: dict[str, int | None] = {}
    try:
        sizes = analyze(engine, due)
    finally:
        with _lock:
            for table in due:
                state = _tables[engine][table]
                state.analysing = False
                if sizes.get(table) is not None:
                    state.size = max(sizes[table] or 0, 0)
    return due
