"""Server time of the generated screens, and the speed of a spreadsheet import.

Screens: the time Loom's app spends rendering a 50-row list page and a record form of
the Customer entity at ``--rows`` records (100,000 by default), measured through the
Flask test client (no network, no browser), beside a raw baseline: a hand-written Flask
view that selects the same rows with SQLAlchemy Core and renders them with a minimal
Jinja template, with no metadata, permissions or htmx. The issue's target is p95 < 60 ms.

Import: a CSV of ``--import-rows`` customers (10,000 by default) imported by the import
job (parsing, mapping, converting, validating and creating through the record service
in chunks), against bulk-creating the same rows through the REST API
(``POST /api/v1/customer/_bulk``, 250 rows a request), in rows per second.

    python bench/ui_bench.py --db sqlite
    python bench/ui_bench.py --db postgresql --rows 100000 --requests 200

Everything it creates (a temporary SQLite file, or the PostgreSQL schema ``bench_ui``)
is removed at the end.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import time
from collections.abc import Callable

import sqlalchemy as sa
from benchlib import (
    BENCH_USER,
    DEFAULT_PG_URL,
    ROLE,
    create_api_user,
    customer_document,
    fill_customers,
    insert_users,
    loom_revision,
    machine,
    percentile,
    scratch_database,
)
from flask import Flask, render_template_string

PAGE = 50
BULK_CHUNK = 250
BASELINE_LIST = """<!doctype html><title>Customers</title><table>
<thead><tr>{% for c in columns %}<th>{{ c }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}<tr>{% for c in columns %}<td>{{ row[c] }}</td>{% endfor %}</tr>{% endfor %}
</tbody></table>{% if more %}<a href="?after={{ more }}">more</a>{% endif %}"""
BASELINE_FORM = """<!doctype html><title>Customer</title><form method="post">
{% for c in columns %}<label for="{{ c }}">{{ c }}</label>
<input id="{{ c }}" name="{{ c }}" value="{{ row[c] if row[c] is not none else '' }}">{% endfor %}
<button>Save</button></form>"""
COLUMNS = ("name", "credit_code", "level", "region", "credit_limit", "mobile", "email", "city", "notes",
           "account_manager")


def role_document() -> dict:
    return {"kind": "role", "name": ROLE, "permissions": {
        "customer": {"actions": ["read", "create", "update", "delete", "import", "export"], "scope": "all"}}}


def baseline_app(engine: sa.Engine) -> Flask:
    """The screens as a developer would hand-write them for this one table."""
    table = sa.Table("e_customer", sa.MetaData(), autoload_with=engine)
    app = Flask("baseline")

    @app.get("/customers")
    def customers():
        query = (sa.select(table.c.id, table.c.created_at, *(table.c[c] for c in COLUMNS))
                 .order_by(table.c.created_at.desc(), table.c.id.desc()).limit(PAGE + 1))
        with engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return render_template_string(BASELINE_LIST, rows=rows[:PAGE], columns=("id", *COLUMNS),
                                      more=rows[PAGE - 1]["id"] if len(rows) > PAGE else None)

    @app.get("/customers/<int:record_id>")
    def customer(record_id: int):
        with engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == record_id)).mappings().one()
        return render_template_string(BASELINE_FORM, row=row, columns=COLUMNS)

    return app


def timed(get: Callable[[str], object], urls: Callable[[int], str], requests: int) -> list[float]:
    """Milliseconds per request, after a few warm-up requests."""
    for i in range(5):
        get(urls(i))
    samples = []
    for i in range(requests):
        start = time.perf_counter()
        get(urls(i))
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def checked(client, token: str | None = None) -> Callable[[str], object]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(url: str):
        response = client.get(url, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.get_data(as_text=True)[:500]}")
        return response
    return get


def import_csv(rows: int, start: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Name", "Level", "Region", "Mobile", "Email", "City", "Notes"])
    for i in range(start, start + rows):
        writer.writerow([f"Imported {i}", "ABC"[i % 3], ("north", "south", "east")[i % 3], f"137{i % 10**8:08d}",
                         f"i{i}@example.com", f"City {i % 300}", f"Imported row {i}"])
    return buffer.getvalue().encode()


def run(kind: str, rows: int, requests: int, import_rows: int, pg_url: str) -> None:
    from loom.app import create_app
    from loom.db import create_engine, upgrade
    from loom.schema.service import model_from_documents
    from loom.ui.importing import run_import, store_job
    from loom.ui.models import import_jobs

    print(f"machine: {machine()}")
    print(f"loom: {loom_revision()}")
    with scratch_database(kind, pg_url, schema="bench_ui") as db:
        engine = create_engine(db.url)
        upgrade(engine)
        app = create_app({"ENGINE": engine, "DATABASE_URL": db.url, "INSTANCE_PATH": db.workdir,
                          "SECRET_KEY": "bench", "DISCOVER_PLUGINS": False})
        loom = app.extensions["loom"]
        loom.metadata.apply(model_from_documents([customer_document(), role_document()]), author="bench")
        insert_users(engine)
        started = time.perf_counter()
        fill_customers(engine, rows)
        print(f"{kind}: {rows} customers loaded in {time.perf_counter() - started:.1f} s")
        token = create_api_user(engine)
        loom_get = checked(app.test_client(), token)
        base_get = checked(baseline_app(engine).test_client())
        ids = random.Random(7).sample(range(1, rows + 1), min(requests + 5, rows))

        results = {
            "list page (50 rows)": (timed(loom_get, lambda i: "/r/customer?limit=50", requests),
                                    timed(base_get, lambda i: "/customers", requests)),
            "list page, filtered (region)": (
                timed(loom_get, lambda i: f"/r/customer?limit=50&filter%5Bregion%5D%5Bin%5D={'east'}", requests),
                None),
            "record form": (timed(loom_get, lambda i: f"/r/customer/{ids[i]}/edit", requests),
                            timed(base_get, lambda i: f"/customers/{ids[i]}", requests)),
            "record page": (timed(loom_get, lambda i: f"/r/customer/{ids[i]}", requests), None),
        }
        print(f"\nscreens, {rows} rows, {requests} requests each (ms, server time via the test client)")
        print(f"{'screen':<30} {'loom p50':>9} {'loom p95':>9} {'raw p50':>9} {'raw p95':>9}")
        for name, (loom_ms, raw_ms) in results.items():
            raw = f"{percentile(raw_ms, .5):9.1f} {percentile(raw_ms, .95):9.1f}" if raw_ms else f"{'-':>9} {'-':>9}"
            print(f"{name:<30} {percentile(loom_ms, .5):9.1f} {percentile(loom_ms, .95):9.1f} {raw}")

        # import through the import job, run in this thread
        principal = loom.identity.principal_for(BENCH_USER)
        content = import_csv(import_rows, rows + 1)
        with engine.begin() as conn:
            job_id = store_job(conn, user_id=principal.user_id, entity="customer", filename="bench.csv",
                               file=io.BytesIO(content), mapping=["name", "level", "region", "mobile", "email", "city", "notes"],
                               total=import_rows, status="running")
        started = time.perf_counter()
        run_import(app, job_id, principal, "en")
        import_seconds = time.perf_counter() - started
        with engine.connect() as conn:
            job = conn.execute(sa.select(import_jobs.c.status, import_jobs.c.imported, import_jobs.c.rejected)
                               .where(import_jobs.c.id == job_id)).one()
        if job.status != "done" or job.imported != import_rows:
            raise RuntimeError(f"import ended {job.status} with {job.imported} rows, rejected: {job.rejected[:3]}")

        # the same rows through the REST API's bulk create
        reader = csv.reader(io.StringIO(import_csv(import_rows, rows + import_rows + 1).decode()))
        next(reader)
        records = [dict(zip(("name", "level", "region", "mobile", "email", "city", "notes"), row, strict=True))
                   for row in reader]
        client = app.test_client()
        started = time.perf_counter()
        for i in range(0, len(records), BULK_CHUNK):
            response = client.post("/api/v1/customer/_bulk", json=records[i:i + BULK_CHUNK],
                                   headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 201:
                raise RuntimeError(f"bulk create: {response.status_code} {response.get_data(as_text=True)[:500]}")
        api_seconds = time.perf_counter() - started
        print(f"\nimport of {import_rows} CSV rows: {import_seconds:.1f} s, {import_rows / import_seconds:,.0f} rows/s")
        print(f"API bulk create of the same rows ({BULK_CHUNK} a request): {api_seconds:.1f} s, "
              f"{import_rows / api_seconds:,.0f} rows/s")
        print(f"import / API: {api_seconds / import_seconds:.2f}x the API's rate")
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--import-rows", type=int, default=10_000)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args()
    run(args.db, args.rows, args.requests, args.import_rows, args.pg_url)


if __name__ == "__main__":
    main()
