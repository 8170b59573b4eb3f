"""A bulk create of many rows is copied into PostgreSQL (``COPY ... FROM STDIN``, see
``loom.db.insert_many``) where a few rows are inserted: the records, their audit entries
and their events must be exactly what inserting them stores, on every field type, and a
refused row must be refused as an insert refuses it, with nothing stored."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from loom.audit.chain import verify
from loom.db import COPY_FROM

FIELDS = [
    {"name": "name", "type": "string", "required": True},
    {"name": "code", "type": "string", "unique": True},
    {"name": "note", "type": "text"},
    {"name": "qty", "type": "integer"},
    {"name": "price", "type": "decimal", "precision": 12, "scale": 2},
    {"name": "paid", "type": "boolean", "default": False},
    {"name": "due", "type": "date"},
    {"name": "at", "type": "datetime"},
    {"name": "level", "type": "select", "options": [{"value": "A"}, {"value": "B"}], "default": "A"},
    {"name": "tags", "type": "multiselect", "options": [{"value": "x"}, {"value": "y"}]},
    {"name": "extra", "type": "json"},
    {"name": "mail", "type": "email"},
    {"name": "manager", "type": "link", "target": "user"},
    {"name": "parent", "type": "link", "target": "widget"},
]
ROWS = COPY_FROM + 5


def row(i: int, manager: int, parent: int | None) -> dict:
    """Values of every kind, some empty, quotes, tabs, newlines and backslashes included
    (what COPY's text format must escape)."""
    return {"name": f"Widget {i} \"q\" \t tab \\ back\nline 华", "code": f"W-{i}",
            "note": None if i % 3 else "a\\nliteral\r\n", "qty": i - 10, "price": f"{i}.5{i % 10}",
            "paid": bool(i % 2), "due": None if i % 4 == 0 else f"2026-0{1 + i % 9}-1{i % 10}",
            "at": f"2026-12-02T0{i % 10}:30:00Z", "level": "B" if i % 2 else None,
            "tags": ["x", "y"][: i % 3], "extra": None if i % 5 == 0 else {"i": i, "nested": [1, None, "N"]},
            "mail": f"w{i}@example.com", "manager": manager, "parent": parent}


@pytest.fixture
def widgets(apply_metadata, make_entity, loom_client, make_user):
    apply_metadata(make_entity("widget", FIELDS, title_field="name"))
    manager = make_user("manager")
    parent = loom_client.post("/api/v1/widget", json={"name": "root"}).get_json()["data"]["id"]
    return manager, parent


def _without_ids(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("id", "created_at", "updated_at", "code")}


def test_copied_records_are_stored_audited_and_announced_as_inserted_ones(widgets, loom_client, loom_engine):
    manager, parent = widgets
    one_by_one = [loom_client.post("/api/v1/widget", json=row(i, manager, parent)) for i in range(ROWS)]
    assert all(r.status_code == 201 for r in one_by_one), one_by_one[0].get_json()
    bulk = loom_client.post("/api/v1/widget/_bulk",
                            json=[{**row(i, manager, parent), "code": f"B-{i}"} for i in range(ROWS)])
    assert bulk.status_code == 201, bulk.get_json()
    copied = [r["id"] for r in bulk.get_json()["data"]]
    inserted = [r.get_json()["data"]["id"] for r in one_by_one]
    for a, b in zip(inserted, copied, strict=True):
        first = loom_client.get(f"/api/v1/widget/{a}").get_json()["data"]
        second = loom_client.get(f"/api/v1/widget/{b}").get_json()["data"]
        assert _without_ids(second) == _without_ids(first)
    with loom_engine.connect() as conn:
        def logged(ids):
            entries = conn.execute(sa.text("SELECT record_id, changes FROM loom_audit WHERE action = 'record.create' "
                                           "AND entity = 'widget' ORDER BY seq")).all()
            return [{k: v for k, v in json.loads(e.changes).items() if k != "code"}
                    for e in entries if e.record_id in ids]

        def announced(ids):
            events = conn.execute(sa.text("SELECT record_id, payload, status, attempts FROM loom_outbox "
                                          "WHERE topic = 'record.created' AND entity = 'widget' ORDER BY id")).all()
            found = []
            for e in events:
                if e.record_id in ids:
                    payload = e.payload if isinstance(e.payload, dict) else json.loads(e.payload)
                    found.append((_without_ids(payload["record"]), e.status, e.attempts))
            return found
        assert logged(copied) == logged(inserted) and len(logged(copied)) == ROWS
        assert announced(copied) == announced(inserted) and len(announced(copied)) == ROWS
    assert verify(loom_engine).ok


def test_a_refused_row_in_a_copy_is_refused_as_an_insert_refuses_it(widgets, loom_client, loom_engine):
    manager, parent = widgets
    assert loom_client.post("/api/v1/widget", json=row(0, manager, parent)).status_code == 201
    refusals = []
    for size in (2, ROWS):  # inserted, then copied: the same taken code in the last row
        body = [{**row(i, manager, parent), "code": f"{size}-{i}"} for i in range(1, size)] + [row(0, manager, parent)]
        refused = loom_client.post("/api/v1/widget/_bulk", json=body)
        refusals.append((refused.status_code, refused.get_json()["code"]))
    assert refusals[0] == refusals[1] and refusals[0][0] in (409, 422)
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM e_widget")).scalar() == 2  # root and the first
    assert verify(loom_engine).ok
