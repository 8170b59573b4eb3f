"""Shared pieces of the Loom benchmarks: the Customer entity, database set-up in a
throw-away place (a temporary SQLite file or a dedicated PostgreSQL schema), fast bulk
filling with SQL, and percentile arithmetic.

The benchmarks import this module as a sibling (they run as ``python bench/<name>.py``),
so it must not depend on the current directory.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

#: where PostgreSQL runs unless ``--pg-url`` says otherwise (trust auth, database ``test``)
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REGIONS = ("north", "south", "east", "west", "central")
LEVELS = ("A", "B", "C")
#: users that loaded customers are assigned to, so link titles are really looked up
USERS = 20
#: the role the benchmark's API user holds, and that user
ROLE = "sales"
BENCH_USER = "bench"
_SCHEMA_NAME = re.compile(r"^bench[a-z0-9_]*$")


def customer_document(extra_fields: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The Customer entity of the benchmarks: typical CRM fields, with the composite
    index that serves "customers of a region, newest first"."""
    return {
        "kind": "entity",
        "name": "customer",
        "title_field": "name",
        "fields": [
            {"name": "name", "type": "string", "required": True, "max_length": 200},
            {"name": "credit_code", "type": "string", "unique": True, "max_length": 18},
            {"name": "level", "type": "select", "options": [{"value": v} for v in LEVELS]},
            {"name": "region", "type": "select", "index": True, "options": [{"value": v} for v in REGIONS]},
            {"name": "credit_limit", "type": "decimal", "precision": 14, "scale": 2},
            {"name": "mobile", "type": "phone", "validators": ["cn_mobile"]},
            {"name": "email", "type": "email"},
            {"name": "city", "type": "string", "max_length": 100},
            {"name": "notes", "type": "text"},
            {"name": "account_manager", "type": "link", "target": "user"},
            *extra_fields,
        ],
        "indexes": [{"fields": ["region", "-created_at"]}],
        "list": {"sort": "-created_at"},
    }


def role_document() -> dict[str, Any]:
    """A role that may do everything with customers, on every row: the API user's."""
    return {"kind": "role", "name": ROLE,
            "permissions": {"customer": {"actions": ["read", "create", "update", "delete"], "scope": "all"}}}


def create_api_user(engine: sa.Engine) -> str:
    """A user holding ``ROLE`` and an API token for it, made through Loom's identity
    service; returns the token (both servers authenticate requests with it)."""
    from loom.identity.service import IdentityService

    identity = IdentityService(engine)
    identity.create_user(BENCH_USER, display_name="Bench User", roles=[ROLE])
    return identity.create_token(BENCH_USER, name="benchmark").token


@dataclass
class Database:
    """A database made for one benchmark run: ``url`` for Loom and the servers,
    ``dialect`` (sqlite or postgresql) and a temporary folder for instance files."""

    url: str
    dialect: str
    workdir: str


@contextmanager
def scratch_database(kind: str, pg_url: str = DEFAULT_PG_URL, schema: str = "bench") -> Iterator[Database]:
    """A fresh, empty database that is removed afterwards: a SQLite file in a temporary
    folder, or the PostgreSQL schema ``schema`` (dropped first if a crashed run left it
    behind, and dropped at the end). Only schemas named ``bench*`` are ever touched."""
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"refusing to use schema {schema!r}: benchmark schemas are named bench*")
    workdir = tempfile.mkdtemp(prefix="loom-bench-")
    try:
        if kind == "sqlite":
            yield Database(f"sqlite:///{os.path.join(workdir, 'bench.db')}", "sqlite", workdir)
            return
        if kind != "postgresql":
            raise ValueError(f"unknown database kind {kind!r}")
        admin = sa.create_engine(pg_url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in pg_url else "?"
        try:
            yield Database(f"{pg_url}{separator}options=-csearch_path%3D{schema}", "postgresql", workdir)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            admin.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def insert_users(engine: sa.Engine, count: int = USERS) -> None:
    """Users the customers' ``account_manager`` and ``owner`` point at."""
    users = sa.table("loom_users", sa.column("username"), sa.column("display_name"), sa.column("email"),
                     sa.column("is_active"), sa.column("created_at", sa.DateTime(timezone=True)))
    from loom.db import utcnow

    now = utcnow()
    with engine.begin() as conn:
        conn.execute(users.insert(), [
            {"username": f"manager{i}", "display_name": f"Manager {i}", "email": f"manager{i}@example.com",
             "is_active": True, "created_at": now}
            for i in range(1, count + 1)])


def _customer_select(dialect: str) -> str:
    """SELECT producing customer rows from a series ``i`` (1..n) in ``s``, in SQL so a
    million rows load in seconds. Row ``i`` is deterministic and was created ``i``
    seconds after 2024-01-01, so "newest first" is well defined."""
    regions = ", ".join(f"'{r}'" for r in REGIONS)
    levels = ", ".join(f"'{v}'" for v in LEVELS)
    if dialect == "postgresql":
        created = "timestamptz '2024-01-01 00:00:00+00' + make_interval(secs => i)"
        return f"""
            SELECT 1, i % {USERS} + 1, {created}, {created},
                   'Customer ' || i, 'CC' || lpad(i::text, 16, '0'),
                   (ARRAY[{levels}])[i % 3 + 1], (ARRAY[{regions}])[i % 5 + 1],
                   ((i * 37) % 10000000)::numeric / 100,
                   '139' || lpad((i % 100000000)::text, 8, '0'), 'c' || i || '@example.com',
                   'City ' || (i % 300), 'Notes for customer ' || i, i % {USERS} + 1
            FROM generate_series(1, :n) AS s(i)"""
    created = "strftime('%Y-%m-%d %H:%M:%f000', '2024-01-01 00:00:00', '+' || i || ' seconds')"
    return f"""
        WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n)
        SELECT 1, i % {USERS} + 1, {created}, {created},
               'Customer ' || i, 'CC' || printf('%016d', i),
               CASE i % 3 WHEN 0 THEN 'A' WHEN 1 THEN 'B' ELSE 'C' END,
               CASE i % 5 WHEN 0 THEN 'north' WHEN 1 THEN 'south' WHEN 2 THEN 'east'
                          WHEN 3 THEN 'west' ELSE 'central' END,
               ((i * 37) % 10000000) / 100.0,
               '139' || printf('%08d', i % 100000000), 'c' || i || '@example.com',
               'City ' || (i % 300), 'Notes for customer ' || i, i % {USERS} + 1
        FROM s"""


CUSTOMER_COLUMNS = ("version", "owner", "created_at", "updated_at", "name", "credit_code", "level", "region",
                    "credit_limit", "mobile", "email", "city", "notes", "account_manager")


def fill_customers(engine: sa.Engine, rows: int, table: str = "e_customer") -> None:
    """Insert ``rows`` customers with one INSERT ... SELECT over a generated series, then
    refresh the planner's statistics (as autovacuum would soon do on its own)."""
    columns = ", ".join(CUSTOMER_COLUMNS)
    statement = sa.text(f"INSERT INTO {table} ({columns}) {_customer_select(engine.dialect.name)}")
    with engine.begin() as conn:
        conn.execute(statement, {"n": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"ANALYZE {table}")


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """End a server the benchmark started: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def machine() -> str:
    """One line about where the numbers come from."""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"Python {platform.python_version()}, SQLAlchemy {sa.__version__}")


def loom_revision() -> str:
    """The git commit of the Loom checkout being measured, and whether its working tree
    had uncommitted changes (numbers move with the code, so reports must say which)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} with {len(dirty)} uncommitted changed files" if dirty else commit
