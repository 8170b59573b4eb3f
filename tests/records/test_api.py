"""The generated REST API, driven as a client would."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from openapi_spec_validator import validate


@pytest.fixture
def customers(apply_metadata, customer_doc):
    apply_metadata(customer_doc)


def create(client, entity, body):
    response = client.post(f"/api/v1/{entity}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def test_create_get_update_delete_with_etags(customers, loom_client):
    response = loom_client.post("/api/v1/customer", json={"name": "Acme", "credit_limit": 1000.5,
                                                         "credit_code": "91350100M000100Y43"})
    assert response.status_code == 201
    record = response.get_json()["data"]
    assert response.headers["Location"] == f"/api/v1/customer/{record['id']}"
    assert response.headers["ETag"] == '"1"'
    assert record["credit_limit"] == "1000.50" and record["level"] == "C" and record["version"] == 1
    assert record["created_at"].endswith("Z")

    url = f"/api/v1/customer/{record['id']}"
    got = loom_client.get(url)
    assert got.get_json()["data"] == record and got.headers["ETag"] == '"1"'

    stale = loom_client.patch(url, json={"level": "A"}, headers={"If-Match": '"0"'})
    assert stale.status_code == 412
    assert stale.mimetype == "application/problem+json"
    ok = loom_client.patch(url, json={"level": "A"}, headers={"If-Match": '"1"'})
    assert ok.status_code == 200 and ok.headers["ETag"] == '"2"'
    assert ok.get_json()["data"]["level"] == "A" and ok.get_json()["data"]["name"] == "Acme"
    # a PATCH that changes nothing does not make a new version
    same = loom_client.patch(url, json={"level": "A"})
    assert same.get_json()["data"]["version"] == 2

    assert loom_client.delete(url, headers={"If-Match": '"1"'}).status_code == 412
    assert loom_client.delete(url, headers={"If-Match": '"2"'}).status_code == 204
    gone = loom_client.get(url)
    assert gone.status_code == 404 and gone.get_json()["detail"] == f"there is no customer with id {record['id']}"


def test_every_invalid_value_is_reported_at_once(customers, loom_client):
    response = loom_client.post("/api/v1/customer", json={
        "name": "", "credit_code": "91350100M000100Y44", "mobile": "12345", "level": "Z",
        "credit_limit": "-1", "bogus": 1, "id": 7, "created_at": "2020-01-01"})
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    errors = {e["field"]: e["message"] for e in response.get_json()["errors"]}
    assert errors == {
        "name": "is required",
        "credit_code": "the check character (the 18th) does not match; the code is mistyped",
        "mobile": "a mainland mobile number has 11 digits and starts with 1 (e.g. 13812345678)",
        "level": "must be one of: A, B, C",
        "credit_limit": "must be at least 0.00",
        "bogus": "unknown field: this entity has no such field",
        "id": "is read-only",
        "created_at": "is read-only",
    }
    assert loom_client.get("/api/v1/customer").get_json()["data"] == []


def test_decimal_places_and_wrong_types_are_refused_not_rounded(customers, loom_client):
    response = loom_client.post("/api/v1/customer", json={"name": "X", "credit_limit": "10.123"})
    assert response.get_json()["errors"] == [{"field": "credit_limit", "code": "too_many_decimals",
                                              "params": {"places": 2}, "message": "at most 2 decimal places"}]
    response = loom_client.post("/api/v1/customer", json={"name": ["X"], "account_manager": "abc"})
    fields = {e["field"] for e in response.get_json()["errors"]}
    assert fields == {"name", "account_manager"}


def test_unique_violation_is_409_naming_the_field(customers, loom_client):
    create(loom_client, "customer", {"name": "A", "credit_code": "91350100M000100Y43"})
    response = loom_client.post("/api/v1/customer", json={"name": "B", "credit_code": "91350100M000100Y43"})
    assert response.status_code == 409
    assert response.get_json()["errors"][0]["field"] == "credit_code"


@pytest.mark.parametrize(("body", "status", "detail"), [
    (b"{not json", 400, "the body is not valid JSON"),
    (b"", 400, "the request has no body"),
    (b"[1, 2]", 422, "the body must be a JSON object"),
])
def test_malformed_bodies(customers, loom_client, body, status, detail):
    response = loom_client.post("/api/v1/customer", data=body, content_type="application/json")
    assert response.status_code == status
    assert detail in response.get_json()["detail"]


def test_too_large_body_is_413(customers, loom_app, loom_client):
    loom_app.config["MAX_CONTENT_LENGTH"] = 1000
    response = loom_client.post("/api/v1/customer", json={"name": "x" * 2000})
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(("query", "field"), [
    ("filter[nope][eq]=1", "filter[nope][eq]"),
    ("filter[level][gt]=A", "filter[level][gt]"),
    ("filter[level][like]=A", "filter[level][like]"),
    ("filter[credit_limit][lt]=lots", "filter[credit_limit][lt]"),
    ("filter[created_at][gte]=yesterday", "filter[created_at][gte]"),
    ("filter[id][in]=", "filter[id][in]"),
    ("sort=nope", "sort"),
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("limit=ten", "limit"),
    ("cursor=garbage", "cursor"),
    ("fields=name,secret", "fields"),
    ("count=maybe", "count"),
    ("colour=red", "colour"),
])
def test_malformed_queries_are_400_naming_the_parameter(customers, loom_client, query, field):
    response = loom_client.get(f"/api/v1/customer?{query}")
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["errors"][0]["field"] == field


def test_unknown_entity_and_child_entity_are_404(apply_metadata, make_entity, loom_client):
    apply_metadata(make_entity("order", [{"name": "lines", "type": "table", "target": "line"}]),
                   make_entity("line", [{"name": "qty", "type": "integer"}], child=True))
    assert loom_client.get("/api/v1/nothing").status_code == 404
    assert loom_client.get("/api/v1/line").status_code == 404
    assert loom_client.get("/api/v1/order/abc").status_code == 404
    assert loom_client.get("/api/v1/order/99999999999999999999").status_code == 404


def test_links_show_id_and_title_and_must_exist(apply_metadata, customer_doc, make_entity, loom_client, loom_engine):
    apply_metadata(customer_doc, make_entity("contact", [
        {"name": "name", "type": "string"}, {"name": "customer", "type": "link", "target": "customer"}]))
    with loom_engine.begin() as conn:
        user_id = conn.execute(sa.text("INSERT INTO loom_users (username, display_name, is_active, created_at) "
                                       "VALUES ('wang', '王芳', true, CURRENT_TIMESTAMP) RETURNING id")).scalar()
    acme = create(loom_client, "customer", {"name": "Acme", "account_manager": user_id})
    assert acme["account_manager"] == {"id": user_id, "title": "王芳"}
    contact = create(loom_client, "contact", {"name": "Li", "customer": {"id": acme["id"]}})
    assert contact["customer"] == {"id": acme["id"], "title": "Acme"}
    missing = loom_client.post("/api/v1/contact", json={"name": "Zhao", "customer": 4242})
    assert missing.get_json()["errors"] == [{"field": "customer", "code": "no_such_record",
                                             "params": {"entity": "customer", "id": 4242},
                                             "message": "there is no customer with id 4242"}]
    refused = loom_client.delete(f"/api/v1/customer/{acme['id']}")
    assert refused.status_code == 409
    assert "1 contact record(s) still link to this customer through 'customer'" in refused.get_json()["detail"]


def test_child_rows_travel_inline_and_are_replaced_by_patch(apply_metadata, make_entity, loom_client, loom_engine):
    apply_metadata(
        make_entity("order", [{"name": "number", "type": "string", "required": True},
                              {"name": "lines", "type": "table", "target": "order_line"}]),
        make_entity("order_line", [{"name": "sku", "type": "string", "required": True},
                                   {"name": "qty", "type": "decimal", "precision": 10, "scale": 2, "min": 0}],
                    child=True))
    order = create(loom_client, "order", {"number": "SO1", "lines": [{"sku": "A", "qty": "2"}, {"sku": "B", "qty": 1.5}]})
    first, second = order["lines"]
    assert (first["sku"], first["qty"], second["sku"], second["qty"]) == ("A", "2.00", "B", "1.50")

    bad = loom_client.post("/api/v1/order", json={"number": "SO2", "lines": [{"sku": "A"}, {"qty": "-1"}]})
    assert {e["field"] for e in bad.get_json()["errors"]} == {"lines[1].sku", "lines[1].qty"}

    url = f"/api/v1/order/{order['id']}"
    patched = loom_client.patch(url, json={"lines": [{"id": second["id"], "sku": "B", "qty": "3"}, {"sku": "C", "qty": "1"}]})
    assert patched.status_code == 200
    lines = patched.get_json()["data"]["lines"]
    assert [(r["sku"], r["qty"]) for r in lines] == [("B", "3.00"), ("C", "1.00")]
    assert lines[0]["id"] == second["id"]
    foreign = loom_client.patch(url, json={"lines": [{"id": first["id"], "sku": "A", "qty": "1"}]})
    assert foreign.status_code == 422 and foreign.get_json()["errors"][0]["field"] == "lines[0].id"

    assert loom_client.delete(url).status_code == 204
    with loom_engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM e_order_line").scalar() == 0


def test_bulk_create_is_all_or_nothing(customers, loom_client):
    response = loom_client.post("/api/v1/customer/_bulk", json=[{"name": "A"}, {"name": ""}, {"name": "C", "level": "Q"}])
    assert response.status_code == 422
    assert {e["field"] for e in response.get_json()["errors"]} == {"[1].name", "[2].level"}
    assert loom_client.get("/api/v1/customer").get_json()["data"] == []
    response = loom_client.post("/api/v1/customer/_bulk", json=[{"name": f"C{i}"} for i in range(5)])
    assert response.status_code == 201
    ids = [r["id"] for r in response.get_json()["data"]]
    names = {r["id"]: r["name"] for r in loom_client.get("/api/v1/customer?limit=10").get_json()["data"]}
    assert [names[i] for i in ids] == [f"C{i}" for i in range(5)]


def test_every_change_writes_an_outbox_event_in_its_transaction(customers, loom_client, loom_engine):
    record = create(loom_client, "customer", {"name": "A"})
    loom_client.patch(f"/api/v1/customer/{record['id']}", json={"name": "B"})
    loom_client.post("/api/v1/customer", json={"name": ""})
    loom_client.delete(f"/api/v1/customer/{record['id']}")
    with loom_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT topic, record_id, payload FROM loom_outbox "
                                    "WHERE entity = 'customer' ORDER BY id")).all()
    assert [(r.topic, r.record_id) for r in rows] == [
        ("record.created", record["id"]), ("record.updated", record["id"]), ("record.deleted", record["id"])]
    payload = rows[1].payload if isinstance(rows[1].payload, dict) else __import__("json").loads(rows[1].payload)
    assert payload["changes"] == {"name": ["A", "B"]}


def test_openapi_is_valid_and_describes_every_entity(apply_metadata, customer_doc, make_entity, loom_client):
    apply_metadata(customer_doc, make_entity("order", [
        {"name": "customer", "type": "link", "target": "customer"},
        {"name": "tags", "type": "multiselect", "options": [{"value": "x"}]},
        {"name": "lines", "type": "table", "target": "line"}]),
        make_entity("line", [{"name": "n", "type": "integer"}], child=True))
    spec = loom_client.get("/api/openapi.json").get_json()
    validate(spec)
    assert {"/api/v1/customer", "/api/v1/customer/{id}", "/api/v1/order", "/api/v1/order/{id}"} <= set(spec["paths"])
    assert "/api/v1/line" not in spec["paths"]
    assert spec["components"]["schemas"]["customerInput"]["required"] == ["name"]
    meta = loom_client.get("/api/v1/_meta/entities").get_json()
    assert [e["name"] for e in meta["data"]] == ["customer", "order"]


def test_missing_link_targets_are_named_by_their_path(apply_metadata, make_entity, loom_client):
    apply_metadata(
        make_entity("product", [{"name": "sku", "type": "string"}]),
        make_entity("order", [{"name": "number", "type": "string"},
                              {"name": "lines", "type": "table", "target": "order_line"}]),
        make_entity("order_line", [{"name": "product", "type": "link", "target": "product"}], child=True))
    sku = create(loom_client, "product", {"sku": "P"})
    one = loom_client.post("/api/v1/order", json={"number": "1", "lines": [{"product": sku["id"]}, {"product": 77}]})
    assert [(e["field"], e["message"]) for e in one.get_json()["errors"]] == [
        ("lines[1].product", "there is no product with id 77")]
    many = loom_client.post("/api/v1/order/_bulk", json=[{"number": "2"}, {"number": "3", "lines": [{"product": 78}]}])
    assert [(e["field"], e["message"]) for e in many.get_json()["errors"]] == [
        ("[1].lines[0].product", "there is no product with id 78")]
