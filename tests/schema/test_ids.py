"""Record ids are never handed out twice, on SQLite and PostgreSQL: a deleted record's
history, comments and files never attach to a record created after it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loom.schema.ids import lacks_autoincrement


def post(client, entity, body):
    response = client.post(f"/api/v1/{entity}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def delete(client, entity, record_id):
    response = client.delete(f"/api/v1/{entity}/{record_id}")
    assert response.status_code == 204, response.get_json()


def history(client, entity, record_id):
    response = client.get(f"/api/v1/{entity}/{record_id}/_history")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def comments(client, entity, record_id):
    response = client.get(f"/api/v1/{entity}/{record_id}/_comments")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


@pytest.fixture
def order_docs(make_entity):
    line = make_entity("order_line", [{"name": "qty", "type": "integer"}], child=True)
    order = make_entity("order", [{"name": "number", "type": "string"},
                                  {"name": "lines", "type": "table", "target": "order_line"}])
    return order, line


def test_deleting_the_newest_record_does_not_free_its_id(apply_metadata, order_docs, loom_client, loom_engine):
    apply_metadata(*order_docs)
    first = post(loom_client, "order", {"number": "A-1", "lines": [{"qty": 1}]})
    newest = post(loom_client, "order", {"number": "A-2", "lines": [{"qty": 2}, {"qty": 3}]})
    assert loom_client.post(f"/api/v1/order/{newest['id']}/_comments", json={"body": "call back"}).status_code == 201
    delete(loom_client, "order", newest["id"])

    again = post(loom_client, "order", {"number": "A-3", "lines": [{"qty": 4}]})
    assert again["id"] not in (first["id"], newest["id"])
    # the child table's row ids are not reused either
    with loom_engine.connect() as conn:
        line_ids = conn.exec_driver_sql("SELECT id FROM e_order_line ORDER BY id").scalars().all()
    assert line_ids[-1] > 3
    assert [c["body"] for c in comments(loom_client, "order", again["id"])] == []
    assert [h["action"] for h in history(loom_client, "order", again["id"])] == ["record.create"]


def make_legacy(engine, table):
    """Rebuild ``table`` the way Loom made entity tables before: INTEGER PRIMARY KEY
    without AUTOINCREMENT (SQLite reuses the highest deleted id)."""
    with engine.begin() as conn:
        sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar()
        indexes = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                       "AND tbl_name = ? AND sql IS NOT NULL", (table,)).all()
        for name, _sql in indexes:
            conn.exec_driver_sql(f"DROP INDEX {name}")
        conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO old_{table}")
        conn.exec_driver_sql(sql.replace(" AUTOINCREMENT", ""))
        conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM old_{table}")
        conn.exec_driver_sql(f"DROP TABLE old_{table}")
        conn.exec_driver_sql(f"DELETE FROM sqlite_sequence WHERE name = '{table}'")
        for _name, statement in indexes:
            conn.exec_driver_sql(statement)
        assert lacks_autoincrement(conn, table)


@pytest.mark.parametrize("how", ["publish", "startup"])
def test_a_table_made_the_old_way_is_converted_and_never_reuses_an_id(
        apply_metadata, make_entity, loom_client, loom_engine, service, how):
    if loom_engine.dialect.name != "sqlite":
        pytest.skip("only SQLite reuses ids")
    doc = make_entity("ticket", [{"name": "subject", "type": "string", "unique": True}])
    apply_metadata(doc)
    ids = [post(loom_client, "ticket", {"subject": s})["id"] for s in ("a", "b", "c", "d")]
    assert loom_client.post(f"/api/v1/ticket/{ids[3]}/_comments", json={"body": "about d"}).status_code == 201
    make_legacy(loom_engine, "e_ticket")
    delete(loom_client, "ticket", ids[3])

    if how == "publish":
        plan = apply_metadata({**doc, "fields": [*doc["fields"], {"name": "note", "type": "text"}]})
        assert "  ticket: table rebuilt so that no record id is ever used twice" in plan.summary
    else:
        assert service.ensure_ids_never_reused() == ["ticket"]
        assert service.ensure_ids_never_reused() == []

    with loom_engine.connect() as conn:
        assert not lacks_autoincrement(conn, "e_ticket")
        assert conn.exec_driver_sql("SELECT id, subject FROM e_ticket ORDER BY id").all() == [
            (ids[0], "a"), (ids[1], "b"), (ids[2], "c")]
        found = {i["name"]: i["unique"] for i in sa.inspect(conn).get_indexes("e_ticket")}
        assert found["uq_e_ticket_subject"]
    fresh = post(loom_client, "ticket", {"subject": "e"})
    assert fresh["id"] > ids[3]
    assert comments(loom_client, "ticket", fresh["id"]) == []
    assert [h["action"] for h in history(loom_client, "ticket", fresh["id"])] == ["record.create"]
    assert loom_client.post("/api/v1/ticket", json={"subject": "a"}).status_code == 409


def test_a_converted_table_skips_ids_only_its_history_remembers(apply_metadata, make_entity, loom_client,
                                                                loom_engine, service):
    """Even the highest deleted id, gone from the table, is known from the audit log."""
    if loom_engine.dialect.name != "sqlite":
        pytest.skip("only SQLite reuses ids")
    doc = make_entity("visit", [{"name": "place", "type": "string"}])
    apply_metadata(doc)
    ids = [post(loom_client, "visit", {"place": p})["id"] for p in ("x", "y", "z")]
    delete(loom_client, "visit", ids[2])
    delete(loom_client, "visit", ids[1])
    make_legacy(loom_engine, "e_visit")  # the old table forgot both deleted ids
    service.ensure_ids_never_reused()
    assert post(loom_client, "visit", {"place": "w"})["id"] > ids[2]


#: Loom's tables that keep every row (a user or team is deactivated, never deleted; the
#: identity version is one row, moved on)
NEVER_DELETED = ["loom_identity_version", "loom_teams", "loom_users"]


def test_loom_tables_whose_rows_are_deleted_never_reuse_ids(loom_engine):
    """Every table of Loom's own with an integer key hands out each id once (sessions,
    tokens, role assignments, saved views ... are deleted); a new table must too."""
    if loom_engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL sequences never go back")
    inspector = sa.inspect(loom_engine)
    with loom_engine.connect() as conn:
        reusing = []
        for table in inspector.get_table_names():
            key = inspector.get_pk_constraint(table)["constrained_columns"]
            if table in ("loom_audit", "loom_audit_head", "alembic_version") or key != ["id"]:
                continue
            if lacks_autoincrement(conn, table):
                reusing.append(table)
    assert sorted(reusing) == NEVER_DELETED
