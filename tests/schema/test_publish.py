"""Publishing metadata changes the live schema without ever losing data, atomically,
on SQLite and PostgreSQL."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa

from loom.errors import MetadataError
from loom.schema.migrate import Migration
from loom.schema.service import model_from_documents


def columns(engine, table):
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def indexes(engine, table):
    return {i["name"]: (i["column_names"], bool(i["unique"])) for i in sa.inspect(engine).get_indexes(table)}


def changed(doc, edit):
    new = copy.deepcopy(doc)
    edit(new)
    return new


def field(doc, name):
    return next(f for f in doc["fields"] if f["name"] == name)


def post(client, entity, body):
    response = client.post(f"/api/v1/{entity}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def test_new_entity_gets_a_table_with_typed_columns_and_indexes(apply_metadata, customer_doc, loom_engine):
    plan = apply_metadata(customer_doc)
    assert plan.to_version == 1
    assert plan.summary == ("+ entity customer (7 fields)",)
    assert columns(loom_engine, "e_customer") == {
        "id", "version", "owner", "created_at", "created_by", "updated_at", "updated_by",
        "name", "credit_code", "mobile", "level", "credit_limit", "region", "account_manager"}
    found = indexes(loom_engine, "e_customer")
    assert found["uq_e_customer_credit_code"] == (["credit_code"], True)
    assert found["ix_e_customer_region"] == (["region"], False)
    assert found["ix_e_customer_account_manager"] == (["account_manager"], False)


def test_label_and_layout_changes_publish_without_ddl(apply_metadata, customer_doc, loom_engine, service):
    apply_metadata(customer_doc)
    before = columns(loom_engine, "e_customer")
    plan = apply_metadata(changed(customer_doc, lambda d: d.update(label={"en": "Client"}, list={"columns": ["name"]})))
    assert plan.to_version == 2
    assert plan.summary == ("~ entity customer: label, list",)
    assert columns(loom_engine, "e_customer") == before
    assert not plan.diff.entities[0].needs_ddl


def test_applying_the_same_metadata_twice_is_a_no_op(apply_metadata, customer_doc, service):
    apply_metadata(customer_doc)
    plan = apply_metadata(customer_doc)
    assert plan.is_empty and plan.to_version == 1
    assert len(service.history()) == 1


def test_add_rename_remove_retype_then_roll_back_keeps_every_value(
        apply_metadata, customer_doc, loom_client, loom_engine, service):
    apply_metadata(customer_doc)
    acme = post(loom_client, "customer", {"name": "Acme", "mobile": "13812345678", "credit_limit": "1200",
                                          "level": "A", "region": "east"})
    bolt = post(loom_client, "customer", {"name": "Bolt", "mobile": "13900000000", "credit_limit": "35"})

    def edit(d):
        field(d, "name").update(name="company", renamed_from="name")
        d["title_field"] = "company"
        d["fields"] = [f for f in d["fields"] if f["name"] != "mobile"]
        limit = field(d, "credit_limit")
        limit["type"] = "integer"
        del limit["precision"], limit["scale"]
        d["fields"].append({"name": "website", "type": "url"})

    plan = apply_metadata(changed(customer_doc, edit))
    assert "~ field customer.name renamed to company" in plan.summary
    assert "- field customer.mobile (column kept aside with its data)" in plan.summary
    assert "~ field customer.credit_limit: type decimal(14,2) -> integer" in plan.summary
    assert "+ field customer.website (url)" in plan.summary

    record = loom_client.get(f"/api/v1/customer/{acme['id']}").get_json()["data"]
    assert record["company"] == "Acme" and record["credit_limit"] == 1200
    assert "mobile" not in record and "name" not in record
    assert loom_client.patch(f"/api/v1/customer/{bolt['id']}", json={"website": "https://bolt.example"}).status_code == 200

    plan = service.rollback(1, author="test")
    assert plan.to_version == 3
    assert "  restored customer.mobile with its data" in plan.summary
    acme_now = loom_client.get(f"/api/v1/customer/{acme['id']}").get_json()["data"]
    bolt_now = loom_client.get(f"/api/v1/customer/{bolt['id']}").get_json()["data"]
    assert (acme_now["name"], acme_now["mobile"], acme_now["credit_limit"]) == ("Acme", "13812345678", "1200.00")
    assert (bolt_now["name"], bolt_now["mobile"], bolt_now["credit_limit"]) == ("Bolt", "13900000000", "35.00")
    assert "website" not in acme_now

    # the website typed in between was set aside, not lost: rolling forward brings it back
    service.rollback(2, author="test")
    assert loom_client.get(f"/api/v1/customer/{bolt['id']}").get_json()["data"]["website"] == "https://bolt.example"


def test_type_change_is_refused_naming_how_many_rows_would_not_convert(
        apply_metadata, customer_doc, loom_client, loom_engine, service):
    apply_metadata(customer_doc)
    for name, limit in [("A", "10.50"), ("B", "7"), ("C", "3.25"), ("D", None)]:
        post(loom_client, "customer", {"name": name, "credit_limit": limit})

    def to_integer(d):
        limit = field(d, "credit_limit")
        limit["type"] = "integer"
        del limit["precision"], limit["scale"]

    before = columns(loom_engine, "e_customer")
    with pytest.raises(MetadataError) as caught:
        apply_metadata(changed(customer_doc, to_integer))
    message = str(caught.value)
    assert "customer.credit_limit: 2 of 3 rows hold values that cannot become integer" in message
    assert "10.50" in message
    assert columns(loom_engine, "e_customer") == before
    assert len(service.history()) == 1
    plan = service.plan(model_from_documents([changed(customer_doc, to_integer)]))
    assert plan.problems and "2 of 3 rows" in plan.problems[0]


def test_text_to_number_converts_when_every_value_does(apply_metadata, make_entity, loom_client):
    doc = make_entity("reading", [{"name": "value", "type": "string"}])
    apply_metadata(doc)
    ids = [post(loom_client, "reading", {"value": v})["id"] for v in ["12", "7", "-3"]]
    apply_metadata(changed(doc, lambda d: field(d, "value").update(type="integer")))
    values = [loom_client.get(f"/api/v1/reading/{i}").get_json()["data"]["value"] for i in ids]
    assert values == [12, 7, -3]
    listed = loom_client.get("/api/v1/reading?filter[value][gt]=0&sort=value").get_json()["data"]
    assert [r["value"] for r in listed] == [7, 12]


def test_making_a_field_unique_is_refused_while_values_repeat(apply_metadata, make_entity, loom_client):
    doc = make_entity("tag", [{"name": "code", "type": "string"}])
    apply_metadata(doc)
    for code in ["a", "a", "b", "c", "c", None]:
        post(loom_client, "tag", {"code": code})
    with pytest.raises(MetadataError) as caught:
        apply_metadata(changed(doc, lambda d: field(d, "code").update(unique=True)))
    assert "tag.code: cannot be made unique: 2 values occur more than once" in str(caught.value)


def test_a_removed_entity_is_set_aside_and_comes_back_with_its_data(
        apply_metadata, make_entity, loom_client, loom_engine, service):
    keep = make_entity("keep", [{"name": "a", "type": "string"}])
    gone = make_entity("gone", [{"name": "b", "type": "integer", "unique": True}])
    apply_metadata(keep, gone)
    post(loom_client, "gone", {"b": 41})
    plan = apply_metadata(keep)
    assert plan.summary == ("- entity gone (table kept aside with its data)",)
    assert "e_gone" not in sa.inspect(loom_engine).get_table_names()
    assert loom_client.get("/api/v1/gone").status_code == 404
    plan = service.rollback(1, author="test")
    assert any("restored table of gone" in line for line in plan.summary)
    assert [r["b"] for r in loom_client.get("/api/v1/gone").get_json()["data"]] == [41]
    assert indexes(loom_engine, "e_gone")["uq_e_gone_b"] == (["b"], True)


def test_an_entity_rename_keeps_its_rows(apply_metadata, make_entity, loom_client, loom_engine):
    doc = make_entity("client", [{"name": "a", "type": "string", "index": True}])
    apply_metadata(doc)
    post(loom_client, "client", {"a": "x"})
    apply_metadata(make_entity("account", doc["fields"], renamed_from="client"))
    assert [r["a"] for r in loom_client.get("/api/v1/account").get_json()["data"]] == ["x"]
    assert "ix_e_account_a" in indexes(loom_engine, "e_account")


def test_a_failing_step_leaves_nothing_changed(apply_metadata, customer_doc, loom_client, loom_engine,
                                              service, monkeypatch):
    apply_metadata(customer_doc)
    post(loom_client, "customer", {"name": "Acme", "mobile": "13812345678"})
    before_columns = columns(loom_engine, "e_customer")
    before_indexes = indexes(loom_engine, "e_customer")

    def explode(self, entity):
        raise sa.exc.OperationalError("CREATE INDEX", {}, Exception("disk full"))

    monkeypatch.setattr(Migration, "_create_indexes", explode)
    edit = changed(customer_doc, lambda d: (field(d, "name").update(name="title", renamed_from="name"),
                                            d.update(title_field="title"),
                                            d["fields"].remove(field(d, "mobile"))))
    with pytest.raises(MetadataError) as caught:
        apply_metadata(edit)
    assert "nothing was applied" in str(caught.value)
    assert columns(loom_engine, "e_customer") == before_columns
    assert indexes(loom_engine, "e_customer") == before_indexes
    assert len(service.history()) == 1
    monkeypatch.undo()
    assert loom_client.get("/api/v1/customer").get_json()["data"][0]["mobile"] == "13812345678"
    with loom_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM loom_set_aside").scalar() == 0


def test_export_then_apply_changes_nothing(apply_metadata, customer_doc, make_entity, service, tmp_path):
    apply_metadata(customer_doc, make_entity("note", [{"name": "body", "type": "text"},
                                                      {"name": "customer", "type": "link", "target": "customer"}]))
    written = service.export(tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in written) == ["entity/customer.yaml", "entity/note.yaml"]
    plan = service.apply(service.load_directory(tmp_path / "out"), author="test")
    assert plan.is_empty


def test_history_records_author_source_and_summary(apply_metadata, customer_doc, service):
    apply_metadata(customer_doc, author="alice")
    apply_metadata(changed(customer_doc, lambda d: d["fields"].append({"name": "vip", "type": "boolean"})),
                   author="bob")
    service.rollback(1, author="carol")
    history = service.history()
    assert [(v.number, v.author, v.source) for v in history] == [
        (3, "carol", "rollback to 1"), (2, "bob", "apply"), (1, "alice", "apply")]
    assert history[1].summary == ("+ field customer.vip (boolean)",)


def test_new_link_field_to_a_new_entity_and_a_child_table(apply_metadata, make_entity, loom_client, loom_engine):
    order = make_entity("order", [{"name": "number", "type": "string"}])
    apply_metadata(order)
    post(loom_client, "order", {"number": "A-1"})
    product = make_entity("product", [{"name": "sku", "type": "string"}])
    line = make_entity("order_line", [{"name": "product", "type": "link", "target": "product"},
                                      {"name": "qty", "type": "integer"}], child=True)
    order2 = changed(order, lambda d: d["fields"].extend([
        {"name": "main_product", "type": "link", "target": "product"},
        {"name": "lines", "type": "table", "target": "order_line"}]))
    apply_metadata(order2, product, line)
    sku = post(loom_client, "product", {"sku": "P1"})
    made = post(loom_client, "order", {"number": "A-2", "main_product": sku["id"],
                                       "lines": [{"product": sku["id"], "qty": 2}]})
    assert made["lines"][0]["product"] == {"id": sku["id"], "title": "P1"}
    bad = loom_client.post("/api/v1/order", json={"number": "A-3", "main_product": 999})
    assert bad.status_code == 422
    assert [(e["field"], e["message"]) for e in bad.get_json()["errors"]] == [
        ("main_product", "there is no product with id 999")]
    fks = sa.inspect(loom_engine).get_foreign_keys("e_order")
    assert any(fk["referred_table"] == "e_product" for fk in fks)
