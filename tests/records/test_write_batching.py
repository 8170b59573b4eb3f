"""Bulk creates and single writes do their work with as few statements as they can, and
lose nothing for it: every row stored, audited and announced, in order; links checked
within the writer's scope; titles and child rows never stale, even when a hook changes
them in the middle of a write."""

from __future__ import annotations

import json
import re
from collections import Counter
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

import loom
from loom.audit.chain import verify
from loom.records.door import record_service

CUSTOMER = {"kind": "entity", "name": "customer", "title_field": "name", "fields": [
    {"name": "name", "type": "string", "required": True},
    {"name": "city", "type": "string"}]}
PRODUCT = {"kind": "entity", "name": "product", "title_field": "name", "fields": [
    {"name": "name", "type": "string", "required": True}]}
LINE = {"kind": "entity", "name": "order_line", "title_field": "product", "child": True, "fields": [
    {"name": "product", "type": "link", "target": "product", "required": True},
    {"name": "quantity", "type": "decimal", "precision": 12, "scale": 2}]}
ORDER = {"kind": "entity", "name": "sales_order", "title_field": "number", "fields": [
    {"name": "number", "type": "string", "required": True, "unique": True},
    {"name": "customer", "type": "link", "target": "customer"},
    {"name": "total", "type": "decimal", "precision": 12, "scale": 2},
    {"name": "lines", "type": "table", "target": "order_line"}]}


@pytest.fixture
def orders(apply_metadata, loom_client):
    apply_metadata(CUSTOMER, PRODUCT, LINE, ORDER)
    ids = {}
    for entity, names in (("customer", ["Acme", "Globex"]), ("product", ["Bolt", "Nut"])):
        made = loom_client.post(f"/api/v1/{entity}/_bulk", json=[{"name": n} for n in names])
        assert made.status_code == 201, made.get_json()
        ids[entity] = [row["id"] for row in made.get_json()["data"]]
    return ids


def order(ids, number, customer=0, quantities=("1", "2")):
    return {"number": number, "customer": ids["customer"][customer], "total": "10.00",
            "lines": [{"product": ids["product"][i % 2], "quantity": q} for i, q in enumerate(quantities)]}


@contextmanager
def statements(engine):
    """The SQL statements sent on ``engine`` inside the block."""
    sent: list[str] = []

    def note(_conn, _cursor, statement, *_args):
        sent.append(" ".join(statement.split()))

    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def touching(sent, verb, table):
    """The statements of ``sent`` that ``verb`` (SELECT, INSERT, UPDATE, DELETE) ``table``."""
    pattern = {"SELECT": rf"^SELECT .* FROM {table}\b", "INSERT": rf"^INSERT INTO {table}\b",
               "UPDATE": rf"^UPDATE {table}\b", "DELETE": rf"^DELETE FROM {table}\b"}[verb]
    return [s for s in sent if re.search(pattern, s)]


def test_a_bulk_create_stores_audits_and_announces_every_row_in_order(orders, loom_client, loom_engine):
    body = [order(orders, f"SO-{i:03d}", customer=i % 2, quantities=(str(i), "1.5")) for i in range(40)]
    made = loom_client.post("/api/v1/sales_order/_bulk", json=body)
    assert made.status_code == 201, made.get_json()
    ids = [row["id"] for row in made.get_json()["data"]]
    assert ids == sorted(ids) and len(set(ids)) == 40
    for i in (0, 17, 39):
        stored = loom_client.get(f"/api/v1/sales_order/{ids[i]}").get_json()["data"]
        assert stored["number"] == f"SO-{i:03d}"
        assert stored["customer"] == {"id": orders["customer"][i % 2], "title": ["Acme", "Globex"][i % 2]}
        assert [(line["product"]["title"], line["quantity"]) for line in stored["lines"]] == \
            [("Bolt", f"{i}.00"), ("Nut", "1.50")]
    with loom_engine.connect() as conn:
        audited = conn.execute(sa.text("SELECT record_id, changes FROM loom_audit WHERE action = 'record.create' "
                                       "AND entity = 'sales_order' ORDER BY seq")).all()
        events = conn.execute(sa.text("SELECT record_id, payload FROM loom_outbox WHERE topic = 'record.created' "
                                      "AND entity = 'sales_order' ORDER BY id")).all()
    assert [r.record_id for r in audited] == ids and [e.record_id for e in events] == ids
    changes = json.loads(audited[5].changes)
    assert changes["number"] == [None, "SO-005"] and changes["customer"] == [None, orders["customer"][1]]
    payload = events[5].payload if isinstance(events[5].payload, dict) else json.loads(events[5].payload)
    assert payload["record"]["number"] == "SO-005" and len(payload["record"]["lines"]) == 2
    assert verify(loom_engine).ok


def test_a_bulk_create_costs_the_same_statements_for_5_rows_as_for_50(orders, loom_client, loom_engine):
    counts = []
    for size, start in ((5, 0), (50, 100)):
        body = [order(orders, f"B-{start + i}") for i in range(size)]
        with statements(loom_engine) as sent:
            assert loom_client.post("/api/v1/sales_order/_bulk", json=body).status_code == 201
        # on PostgreSQL 50 rows are copied (COPY) where 5 are inserted: one statement either way
        counts.append(Counter("INSERT" if s.startswith("COPY") else s.split()[0] for s in sent))
    assert counts[0] == counts[1]
    # links: one query per linked entity, for the orders and all their lines together
    with statements(loom_engine) as sent:
        assert loom_client.post("/api/v1/sales_order/_bulk",
                                json=[order(orders, f"C-{i}") for i in range(20)]).status_code == 201
    assert len(touching(sent, "SELECT", "e_customer")) == 1
    assert len(touching(sent, "SELECT", "e_product")) == 1


def test_a_bulk_create_names_each_bad_link_by_row_once_checked_together(orders, loom_client, loom_engine):
    body = [order(orders, "D-0"), order(orders, "D-1"), order(orders, "D-2")]
    body[1]["customer"] = 999_999
    body[2]["lines"][1]["product"] = 888_888
    refused = loom_client.post("/api/v1/sales_order/_bulk", json=body)
    assert refused.status_code == 422
    assert [(e["field"], e["code"]) for e in refused.get_json()["errors"]] == [
        ("[1].customer", "no_such_record"), ("[2].lines[1].product", "no_such_record")]
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM e_sales_order")).scalar() == 0


class Spawner:
    """A plugin that, while one customer of a batch is created, creates another customer
    in the same transaction (before the batch's own rows are inserted)."""

    @loom.hookimpl
    def before_record_create(self, entity, values, principal, connection):
        if entity.name == "customer" and values.get("name") == "spawn":
            record_service("customer", principal, connection).create({"name": "spawned", "city": "elsewhere"})


@pytest.fixture
def loom_plugins():
    return [Spawner()]


def test_rows_a_hook_adds_to_the_same_table_are_not_taken_for_the_batchs_own(orders, loom_client, loom_engine):
    made = loom_client.post("/api/v1/customer/_bulk", json=[{"name": "first"}, {"name": "spawn"}, {"name": "last"}])
    assert made.status_code == 201, made.get_json()
    ids = [row["id"] for row in made.get_json()["data"]]
    names = [loom_client.get(f"/api/v1/customer/{i}").get_json()["data"]["name"] for i in ids]
    assert names == ["first", "spawn", "last"]
    with loom_engine.connect() as conn:
        spawned = conn.execute(sa.text("SELECT id FROM e_customer WHERE name = 'spawned'")).scalars().all()
        created = conn.execute(sa.text("SELECT record_id FROM loom_audit WHERE action = 'record.create' "
                                       "AND entity = 'customer' ORDER BY seq")).scalars().all()
    assert len(spawned) == 1 and spawned[0] not in ids
    # the spawned record has its own entry, and each of the batch's rows one
    assert sorted(created[-4:]) == sorted([*ids, spawned[0]])


class Renamer:
    """A plugin that renames an order's customer while the order is being updated."""

    @loom.hookimpl
    def before_record_update(self, entity, record, principal, connection):
        if entity.name == "sales_order" and record["customer"] is not None:
            customers = record_service("customer", principal, connection)
            customers.update(record["customer"]["id"], {"name": "Acme Renamed"})


def test_an_update_shows_the_title_a_hook_changed_in_the_middle_of_it(orders, loom_app, loom_client, loom_engine):
    made = loom_client.post("/api/v1/sales_order", json=order(orders, "E-1"))
    assert made.status_code == 201
    record = made.get_json()["data"]
    assert record["customer"]["title"] == "Acme"
    loom_app.extensions["loom"].plugins.register(Renamer())
    updated = loom_client.patch(f"/api/v1/sales_order/{record['id']}", json={"total": "20.00"},
                                headers={"If-Match": f'"{record["version"]}"'})
    assert updated.status_code == 200, updated.get_json()
    assert updated.get_json()["data"]["customer"] == {"id": orders["customer"][0], "title": "Acme Renamed"}
    with loom_engine.connect() as conn:
        payload = conn.execute(sa.text("SELECT payload FROM loom_outbox WHERE topic = 'record.updated' "
                                       "AND entity = 'sales_order'")).scalar_one()
    payload = payload if isinstance(payload, dict) else json.loads(payload)
    assert payload["record"]["customer"]["title"] == "Acme Renamed"


def test_an_update_rewrites_only_the_child_rows_that_changed(orders, loom_client, loom_engine):
    made = loom_client.post("/api/v1/sales_order", json=order(orders, "F-1", quantities=("1", "2", "3")))
    record = made.get_json()["data"]
    lines = [{"id": line["id"], "product": line["product"]["id"], "quantity": line["quantity"]}
             for line in record["lines"]]
    url = f"/api/v1/sales_order/{record['id']}"
    with statements(loom_engine) as sent:
        same = loom_client.patch(url, json={"total": "11.00", "lines": lines})
    assert same.status_code == 200, same.get_json()
    assert not touching(sent, "UPDATE", "e_order_line") and not touching(sent, "INSERT", "e_order_line")
    assert not touching(sent, "DELETE", "e_order_line")
    # one changed, one removed, one added: exactly those statements, and the rows as sent
    changed = [{**lines[0], "quantity": "7"}, lines[2], {"product": orders["product"][1], "quantity": "4"}]
    with statements(loom_engine) as sent:
        edited = loom_client.patch(url, json={"lines": changed})
    assert edited.status_code == 200, edited.get_json()
    assert len(touching(sent, "UPDATE", "e_order_line")) == 2  # the changed row, and the one that moved up
    assert len(touching(sent, "DELETE", "e_order_line")) == 1 and len(touching(sent, "INSERT", "e_order_line")) == 1
    stored = loom_client.get(url).get_json()["data"]["lines"]
    assert [(line["product"]["title"], line["quantity"]) for line in stored] == \
        [("Bolt", "7.00"), ("Bolt", "3.00"), ("Nut", "4.00")]
    assert stored == edited.get_json()["data"]["lines"]
    with loom_engine.connect() as conn:
        changes = json.loads(conn.execute(sa.text(
            "SELECT changes FROM loom_audit WHERE action = 'record.update' AND entity = 'sales_order' "
            "ORDER BY seq DESC LIMIT 1")).scalar_one())
    assert [row["quantity"] for row in changes["lines"][1]] == ["7.00", "3.00", "4.00"]


def test_a_link_the_writer_may_not_read_is_refused_though_the_update_read_its_title(
        orders, apply_metadata, loom_client, make_user, client_for):
    apply_metadata(CUSTOMER, PRODUCT, LINE, ORDER, {"kind": "role", "name": "clerk", "permissions": {
        "customer": {"actions": ["read"], "scope": "own"},
        "product": {"actions": ["read"], "scope": "all"},
        "sales_order": {"actions": ["read", "update"], "scope": "all"}}})
    made = loom_client.post("/api/v1/sales_order", json=order(orders, "G-1"))
    record = made.get_json()["data"]
    make_user("clerk", roles=["clerk"])
    clerk = client_for("clerk")
    url = f"/api/v1/sales_order/{record['id']}"
    # the customer (the admin's) is outside the clerk's read scope: sending it is naming a
    # record that, to the clerk, does not exist, even though the update reads its title
    refused = clerk.patch(url, json={"total": "12.00", "customer": orders["customer"][0]})
    assert refused.status_code == 422
    assert [(e["field"], e["code"]) for e in refused.get_json()["errors"]] == [("customer", "no_such_record")]
    assert clerk.patch(url, json={"total": "12.00"}).status_code == 200
