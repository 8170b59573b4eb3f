"""Planner statistics follow the big writes: a bulk load past a thousand rows, an import
job and a publish that makes or changes a table each leave the table analysed, so that
its queries are planned for the rows it holds; small writes leave that to the database."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from loom.schema import statistics
from loom.ui.importing import run_import, store_job

ITEM = {"kind": "entity", "name": "item", "title_field": "name", "fields": [
    {"name": "name", "type": "string", "required": True},
    {"name": "shelf", "type": "string", "index": True}]}
ROLE = {"kind": "role", "name": "stocker", "permissions": {"item": {"actions": ["read", "create", "import"]}}}


def estimated_rows(engine, table: str) -> int | None:
    """The table's row count as the planner's statistics have it (None or 0: never
    analysed with rows in it; SQLite keeps no statistics of an empty table)."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            tuples = conn.execute(sa.text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:t)"),
                                  {"t": table}).scalar()
            return None if tuples is None or tuples < 0 else tuples
        if not conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
            return None
        stat = conn.execute(sa.text("SELECT stat FROM sqlite_stat1 WHERE tbl = :t LIMIT 1"), {"t": table}).scalar()
        return None if stat is None else int(stat.split()[0])


@pytest.fixture
def items(apply_metadata, loom_engine):
    apply_metadata(ITEM, ROLE)
    if loom_engine.dialect.name == "postgresql":
        # the test, not autovacuum, says when the table is analysed
        with loom_engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE e_item SET (autovacuum_enabled = false)")


def bulk(client, start: int, count: int) -> None:
    made = client.post("/api/v1/item/_bulk", json=[{"name": f"item {i}", "shelf": f"S{i % 7}"}
                                                  for i in range(start, start + count)])
    assert made.status_code == 201, made.get_json()


def test_bulk_loads_analyse_their_table_once_a_thousand_rows_are_in(items, loom_client, loom_engine):
    bulk(loom_client, 0, 600)
    bulk(loom_client, 600, 399)
    assert not estimated_rows(loom_engine, "e_item")  # as the publish left it: empty
    bulk(loom_client, 999, 1)
    assert estimated_rows(loom_engine, "e_item") == 1000
    if loom_engine.dialect.name == "postgresql":
        with loom_engine.connect() as conn:
            analysed = conn.execute(sa.text("SELECT last_analyze FROM pg_stat_user_tables "
                                            "WHERE relname = 'e_item' AND schemaname = current_schema()")).scalar()
        assert analysed is not None


def test_a_growing_table_is_analysed_again_only_as_it_grows_by_a_share(items, loom_client, loom_engine, monkeypatch):
    analysed = []

    def count(engine, tables):
        """The refresh, reporting the exact row count (SQLite's own is an estimate)."""
        analysed.append(list(tables))
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}

    monkeypatch.setattr(statistics, "analyze", count)
    for start in range(0, 8000, 1000):
        bulk(loom_client, start, 1000)
    # at 1,000 rows, then whenever the rows written since reach 1,000 or a fifth of the
    # table, whichever is more: at 2,000 ... 6,000, not at 7,000 (a fifth of 6,000 is 1,200), at 8,000
    assert analysed == [["e_item"]] * 7


def test_a_bulk_create_rolled_back_counts_for_nothing(items, loom_client, loom_engine):
    bulk(loom_client, 0, 999)
    refused = loom_client.post("/api/v1/item/_bulk", json=[{"name": "fine"}, {"shelf": "no name"}])
    assert refused.status_code == 422
    assert not estimated_rows(loom_engine, "e_item")  # as the publish left it: empty


def test_an_import_job_leaves_its_table_analysed(items, loom_app, loom_engine, make_user):
    make_user("sam", roles=["stocker"])
    principal = loom_app.extensions["loom"].identity.principal_for("sam")
    content = ("name,shelf\n" + "".join(f"thing {i},S{i % 3}\n" for i in range(25))).encode()
    with loom_engine.begin() as conn:
        job_id = store_job(conn, user_id=principal.user_id, entity="item", filename="items.csv", file=io.BytesIO(content),
                           mapping=["name", "shelf"], total=25, status="running")
    run_import(loom_app, job_id, principal, "en")
    assert estimated_rows(loom_engine, "e_item") == 25


def test_a_publish_that_changes_a_table_analyses_it(items, apply_metadata, loom_client, loom_engine):
    bulk(loom_client, 0, 30)
    assert not estimated_rows(loom_engine, "e_item")  # as the publish left it: empty
    apply_metadata({**ITEM, "fields": [*ITEM["fields"], {"name": "bin", "type": "string", "index": True}]}, ROLE)
    assert estimated_rows(loom_engine, "e_item") == 30
