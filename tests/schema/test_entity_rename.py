"""Renaming an entity: its records' history and comments follow it, an entity that later
takes the old name starts with none of them, and on PostgreSQL the old name (with its
key, links and sequence) can be used again."""

from __future__ import annotations

import sqlalchemy as sa

from loom.schema.names import NameSpan, spans_from_versions


def post(client, entity, body):
    response = client.post(f"/api/v1/{entity}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def history(client, entity, record_id):
    response = client.get(f"/api/v1/{entity}/{record_id}/_history")
    assert response.status_code == 200, response.get_json()
    return [(h["action"], h["changes"].get("a")) for h in response.get_json()["data"]]


def comments(client, entity, record_id):
    response = client.get(f"/api/v1/{entity}/{record_id}/_comments")
    assert response.status_code == 200, response.get_json()
    return [c["body"] for c in response.get_json()["data"]]


def comment(client, entity, record_id, body):
    assert client.post(f"/api/v1/{entity}/{record_id}/_comments", json={"body": body}).status_code == 201


def test_history_and_comments_follow_a_renamed_entity_and_never_reach_a_new_one_with_its_old_name(
        apply_metadata, make_entity, loom_client, loom_engine):
    fields = [{"name": "a", "type": "string"}]
    line = make_entity("client_note", [{"name": "text", "type": "string"}], child=True)
    client = make_entity("client", [*fields, {"name": "notes", "type": "table", "target": "client_note"}])
    apply_metadata(client, line)
    record = post(loom_client, "client", {"a": "x", "notes": [{"text": "n"}]})
    assert loom_client.patch(f"/api/v1/client/{record['id']}", json={"a": "y"}).status_code == 200
    comment(loom_client, "client", record["id"], "before the rename")

    account = make_entity("account", client["fields"], renamed_from="client")
    apply_metadata(account, line)
    assert history(loom_client, "account", record["id"]) == [("record.create", [None, "x"]),
                                                             ("record.update", ["x", "y"])]
    assert comments(loom_client, "account", record["id"]) == ["before the rename"]
    assert loom_client.patch(f"/api/v1/account/{record['id']}", json={"a": "z"}).status_code == 200
    comment(loom_client, "account", record["id"], "after the rename")

    # a new entity takes the old name: its records start clean (on both databases)
    settled = {k: v for k, v in account.items() if k != "renamed_from"}
    apply_metadata(settled, line, make_entity("client", fields))
    fresh = post(loom_client, "client", {"a": "new"})
    assert history(loom_client, "client", fresh["id"]) == [("record.create", [None, "new"])]
    assert comments(loom_client, "client", fresh["id"]) == []
    assert history(loom_client, "account", record["id"])[-1] == ("record.update", ["y", "z"])
    assert comments(loom_client, "account", record["id"]) == ["before the rename", "after the rename"]
    # the record page shows the same
    page = loom_client.get(f"/account/{record['id']}")
    if page.status_code == 200:
        assert "before the rename" in page.get_data(as_text=True)


def test_a_renamed_entity_leaves_its_old_name_free_on_postgresql(apply_metadata, make_entity, loom_client,
                                                                 loom_engine):
    product = make_entity("product", [{"name": "sku", "type": "string", "unique": True}])
    order = make_entity("order", [{"name": "product", "type": "link", "target": "product"}])
    apply_metadata(product, order)
    sku = post(loom_client, "product", {"sku": "P1"})
    post(loom_client, "order", {"product": sku["id"]})
    item = make_entity("item", product["fields"], renamed_from="product")
    apply_metadata(item, make_entity("order", [{"name": "product", "type": "link", "target": "item"}]))
    # the old name is free again: a new entity takes it, with a key, a link and an index
    again = make_entity("product", [{"name": "sku", "type": "string", "unique": True},
                                    {"name": "item", "type": "link", "target": "item"}])
    settled = {k: v for k, v in item.items() if k != "renamed_from"}
    apply_metadata(settled, make_entity("order", [{"name": "product", "type": "link", "target": "item"}]), again)
    assert post(loom_client, "product", {"sku": "P1", "item": sku["id"]})["id"]
    inspector = sa.inspect(loom_engine)
    if loom_engine.dialect.name == "postgresql":
        assert inspector.get_pk_constraint("e_item")["name"] == "pk_e_item"
        assert inspector.get_pk_constraint("e_product")["name"] == "pk_e_product"
        # no constraint keeps the old name of the table it belongs or points to
        for table in ("e_order", "e_item"):
            for fk in inspector.get_foreign_keys(table):
                assert "e_product" not in fk["name"], fk
    assert "uq_e_item_sku" in {i["name"] for i in inspector.get_indexes("e_item")}


def test_a_removed_entity_keeps_its_comments_for_its_return_and_a_newcomer_gets_none(
        apply_metadata, make_entity, loom_client, service):
    keep = make_entity("keep", [{"name": "a", "type": "string"}])
    gone = make_entity("gone", [{"name": "b", "type": "string"}])
    apply_metadata(keep, gone)
    old = post(loom_client, "gone", {"b": "old"})
    comment(loom_client, "gone", old["id"], "on the old one")
    apply_metadata(keep)                                                  # version 2: gone set aside
    apply_metadata(keep, make_entity("gone", [{"name": "c", "type": "string"}]))   # a different entity
    newcomer = post(loom_client, "gone", {"c": "new"})
    assert comments(loom_client, "gone", newcomer["id"]) == []
    assert [h[0] for h in history(loom_client, "gone", newcomer["id"])] == ["record.create"]
    apply_metadata(keep)                                                  # the newcomer goes aside
    service.rollback(1, author="test")                                    # the old one comes back
    assert comments(loom_client, "gone", old["id"]) == ["on the old one"]
    assert [h[0] for h in history(loom_client, "gone", old["id"])] == ["record.create"]


def test_name_spans_over_renames_removals_and_returns():
    t = list(range(7))

    def version(*entities):
        return [{"kind": "entity", "name": n, "renamed_from": r} for n, r in entities]

    spans = spans_from_versions([
        (t[1], version(("client", None))),
        (t[2], version(("account", "client"))),
        (t[3], version(("account", None), ("client", None))),
        (t[4], version(("account", None))),
        (t[5], version(("client", "account"))),       # account renamed back
    ])
    assert spans == {"client": (NameSpan("client", t[1], t[2]), NameSpan("account", t[2], t[5]),
                                NameSpan("client", t[5], None))}
