"""Business logic declared in metadata, enforced by the record service on every write path
(API, bulk, update, import): computed fields, computed defaults, ``required_when`` and
rules. Computed values are what ``Expression.evaluate`` gives for the record."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
import sqlalchemy as sa

from loom.ui.importing import run_import, store_job
from loom.ui.models import import_jobs

RULE = {"en": "Delivery cannot be before the order", "zh": "交货日期不能早于下单日期"}


@pytest.fixture
def shop(apply_metadata, make_entity, loom_app):
    apply_metadata(
        make_entity("product", [
            {"name": "name", "type": "string", "required": True},
            {"name": "list_price", "type": "money"},
        ], title_field="name"),
        make_entity("sales_order", [
            {"name": "customer", "type": "string", "required": True},
            {"name": "code", "type": "string", "compute": "concat(upper(customer), '-', status)"},
            {"name": "order_date", "type": "date", "default": {"expression": "today()"}},
            {"name": "delivery_date", "type": "date"},
            {"name": "lead_days", "type": "integer", "compute": "days_between(order_date, delivery_date)"},
            {"name": "status", "type": "select", "options": [{"value": "draft"}, {"value": "shipped"}],
             "default": "draft"},
            {"name": "tracking", "type": "string", "required_when": "status = 'shipped'"},
            {"name": "handled_by", "type": "link", "target": "user", "default": {"expression": "$user.id"}},
            {"name": "lines", "type": "table", "target": "order_line"},
        ], title_field="customer", rules=[
            {"when": "delivery_date < order_date", "message": RULE, "fields": ["delivery_date", "order_date"]},
            {"when": "status = 'shipped' and is_empty(delivery_date)", "message": "Ship with a delivery date"},
        ]),
        make_entity("order_line", [
            {"name": "product", "type": "link", "target": "product"},
            {"name": "quantity", "type": "integer", "required": True},
            {"name": "unit_price", "type": "money", "default": {"from": "product.list_price"}},
            {"name": "amount", "type": "money", "compute": "quantity * unit_price"},
            {"name": "big", "type": "boolean", "compute": "amount > 100"},
        ], child=True),
    )
    return loom_app


def _model(app):
    return app.extensions["loom"].metadata.live().model


def _evaluate(app, entity: str, field: str, record: dict, **kwargs):
    return _model(app).entity(entity).field(field).compute_expr.evaluate(record, **kwargs)


def _stored(app, table: str) -> list[dict]:
    with app.extensions["loom"].engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM e_{table} ORDER BY id")).mappings()]


def _errors(reply) -> dict[str, tuple[str, str]]:
    assert reply.status_code == 422, reply.get_json()
    return {e["field"]: (e["code"], e["message"]) for e in reply.get_json()["errors"]}


def _product(client, price="12.50") -> int:
    reply = client.post("/api/v1/product", json={"name": "Lamp", "list_price": price})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]["id"]


def test_a_create_stores_computed_fields_and_defaults(shop, loom_client):
    lamp = _product(loom_client)
    reply = loom_client.post("/api/v1/sales_order", json={
        "customer": "acme", "delivery_date": "2030-01-10",
        "lines": [{"product": lamp, "quantity": 3}, {"product": lamp, "quantity": 20, "unit_price": "9.99"},
                  {"quantity": 2}]})
    assert reply.status_code == 201, reply.get_json()
    order = reply.get_json()["data"]
    today = dt.date.today()
    assert order["order_date"] == today.isoformat()  # {expression: today()}
    assert order["code"] == "ACME-draft"
    assert order["lead_days"] == (dt.date(2030, 1, 10) - today).days
    row = _stored(shop, "sales_order")[0]
    assert row["handled_by"] == row["created_by"]  # {expression: $user.id}
    assert row["lead_days"] == _evaluate(shop, "sales_order", "lead_days",
                                         {"order_date": today, "delivery_date": dt.date(2030, 1, 10)})
    lines = order["lines"]
    # unit_price from the product when not given, kept when given; no product, no price
    assert [line["unit_price"] for line in lines] == ["12.50", "9.99", None]
    assert [line["amount"] for line in lines] == ["37.50", "199.80", None]
    assert [line["big"] for line in lines] == [False, True, None]
    for line in _stored(shop, "order_line"):
        expected = _evaluate(shop, "order_line", "amount", line)
        assert (Decimal(str(line["amount"])) if line["amount"] is not None else None) == expected


def test_a_computed_field_cannot_be_written(shop, loom_client):
    reply = loom_client.post("/api/v1/sales_order", json={"customer": "acme", "code": "X"})
    assert _errors(reply) == {"code": ("computed", "is computed from concat(upper(customer), '-', status); "
                                                   "it cannot be set")}
    created = loom_client.post("/api/v1/sales_order", json={"customer": "acme"}).get_json()["data"]
    patch = loom_client.patch(f"/api/v1/sales_order/{created['id']}", json={"lead_days": 3})
    assert _errors(patch) == {"lead_days": ("computed", "is computed from days_between(order_date, delivery_date); "
                                                        "it cannot be set")}
    line = loom_client.post("/api/v1/sales_order", json={"customer": "b", "lines": [{"quantity": 1, "amount": 5}]})
    assert _errors(line) == {"lines[0].amount": ("computed", "is computed from quantity * unit_price; "
                                                             "it cannot be set")}


def test_an_update_recomputes_from_the_record_as_it_will_be(shop, loom_client):
    lamp = _product(loom_client, "2.00")
    created = loom_client.post("/api/v1/sales_order", json={
        "customer": "acme", "order_date": "2030-01-01", "delivery_date": "2030-01-05",
        "lines": [{"product": lamp, "quantity": 3}]}).get_json()["data"]
    assert (created["code"], created["lead_days"], created["lines"][0]["amount"]) == ("ACME-draft", 4, "6.00")
    reply = loom_client.patch(f"/api/v1/sales_order/{created['id']}", json={"delivery_date": "2030-01-21"})
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["data"]["lead_days"] == 20 and reply.get_json()["data"]["code"] == "ACME-draft"
    reply = loom_client.patch(f"/api/v1/sales_order/{created['id']}", json={
        "customer": "bolt", "lines": [{"product": lamp, "quantity": 60}]})
    body = reply.get_json()["data"]
    assert (body["code"], body["lead_days"], body["lines"][0]["amount"], body["lines"][0]["big"]) == \
        ("BOLT-draft", 20, "120.00", True)
    row = _stored(shop, "sales_order")[0]
    assert (row["code"], row["lead_days"]) == ("BOLT-draft", 20)
    # the audit entry of the change shows the new computed values
    history = loom_client.get(f"/api/v1/sales_order/{created['id']}/_history")
    assert history.status_code == 200, history.get_json()
    assert "BOLT-draft" in history.get_data(as_text=True) and "ACME-draft" in history.get_data(as_text=True)


def test_required_when_holds_on_create_and_update(shop, loom_client):
    reply = loom_client.post("/api/v1/sales_order", json={"customer": "acme", "status": "shipped",
                                                         "delivery_date": "2099-01-01"})
    assert _errors(reply) == {"tracking": ("required", "is required")}
    created = loom_client.post("/api/v1/sales_order", json={"customer": "acme", "delivery_date": "2099-01-01"})
    assert created.status_code == 201 and created.get_json()["data"]["tracking"] is None  # draft: not required
    order_id = created.get_json()["data"]["id"]
    assert _errors(loom_client.patch(f"/api/v1/sales_order/{order_id}", json={"status": "shipped"})) == \
        {"tracking": ("required", "is required")}
    shipped = loom_client.patch(f"/api/v1/sales_order/{order_id}", json={"status": "shipped", "tracking": "T1"})
    assert shipped.status_code == 200 and shipped.get_json()["data"]["code"] == "ACME-shipped"


def test_rules_refuse_the_record_on_the_named_fields_with_their_message(shop, loom_client):
    reply = loom_client.post("/api/v1/sales_order", json={"customer": "acme", "order_date": "2030-02-01",
                                                         "delivery_date": "2030-01-01"})
    assert reply.status_code == 422
    entries = reply.get_json()["errors"]
    assert [(e["field"], e["code"], e["message"]) for e in entries] == [
        ("delivery_date", "rule_failed", RULE["en"]), ("order_date", "rule_failed", RULE["en"])]
    assert entries[0]["params"] == {"messages": RULE}
    # a rule without fields is about the record as a whole
    whole = loom_client.post("/api/v1/sales_order", json={"customer": "acme", "status": "shipped", "tracking": "T"})
    assert _errors(whole) == {"": ("rule_failed", "Ship with a delivery date")}
    assert _stored(shop, "sales_order") == []


def test_the_screens_say_a_rules_message_in_the_interface_language(shop):
    from flask_babel import force_locale

    from loom.ui.messages import message_text

    entry = {"code": "rule_failed", "params": {"messages": RULE}, "message": RULE["en"]}
    with shop.test_request_context():
        with force_locale("zh_CN"):
            assert message_text(entry) == RULE["zh"]
        with force_locale("en"):
            assert message_text(entry) == RULE["en"]


def test_a_bulk_create_computes_every_row_and_reports_each_by_index(shop, loom_client):
    lamp = _product(loom_client, "3.00")
    reply = loom_client.post("/api/v1/sales_order/_bulk", json=[
        {"customer": "a", "order_date": "2030-01-01", "delivery_date": "2030-01-03",
         "lines": [{"product": lamp, "quantity": 2}]},
        {"customer": "b", "order_date": "2030-01-01", "delivery_date": "2029-12-01"},
        {"customer": "c", "status": "shipped", "delivery_date": "2030-01-01"},
    ])
    assert _errors(reply) == {"[1].delivery_date": ("rule_failed", RULE["en"]),
                              "[1].order_date": ("rule_failed", RULE["en"]),
                              "[2].tracking": ("required", "is required")}
    reply = loom_client.post("/api/v1/sales_order/_bulk", json=[
        {"customer": f"c{i}", "order_date": "2030-01-01", "delivery_date": f"2030-01-{i + 1:02d}",
         "lines": [{"product": lamp, "quantity": i}]} for i in range(1, 6)])
    assert reply.status_code == 201, reply.get_json()
    rows = _stored(shop, "sales_order")
    assert [(r["code"], r["lead_days"]) for r in rows] == [(f"C{i}-draft", i) for i in range(1, 6)]
    assert [Decimal(str(line["amount"])) for line in _stored(shop, "order_line")] == \
        [Decimal(3 * i) for i in range(1, 6)]


def test_an_import_computes_like_any_other_write(shop, make_user):
    make_user("ivy", superuser=True)
    principal = shop.extensions["loom"].identity.principal_for("ivy")
    content = "customer,order_date,delivery_date\nacme,2030-01-01,2030-01-11\nbolt,2030-01-05,2030-01-01\n"
    with shop.extensions["loom"].engine.begin() as conn:
        job_id = store_job(conn, user_id=principal.user_id, entity="sales_order", filename="orders.csv",
                           file=io.BytesIO(content.encode()), mapping=["customer", "order_date", "delivery_date"],
                           total=2, status="running")
    run_import(shop, job_id, principal, "en")
    with shop.extensions["loom"].engine.connect() as conn:
        job = conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id)).mappings().one()
    assert (job["status"], job["imported"]) == ("done", 1), job["message"]
    assert [(row["line"], row["reason"]) for row in job["rejected"]] == [
        (3, f"Delivery date: {RULE['en']}; Order date: {RULE['en']}")]
    rows = _stored(shop, "sales_order")
    assert [(r["customer"], r["code"], r["lead_days"], r["handled_by"]) for r in rows] == \
        [("acme", "ACME-draft", 10, principal.user_id)]


# -- random records ------------------------------------------------------------------------------

SAMPLE_COMPUTED = {
    "total": ("decimal", "qty * price"),
    "half": ("integer", "qty / 2"),
    "tag": ("string", "concat(upper(label), '-', if(flag, 'y', 'n'))"),
    "span": ("integer", "days_between(start, finish)"),
    "late": ("boolean", "finish > add_days(start, 30)"),
    "due": ("date", "add_days(start, qty)"),
}


@pytest.fixture
def sample(apply_metadata, make_entity, loom_app):
    apply_metadata(make_entity("sample", [
        {"name": "qty", "type": "integer"},
        {"name": "price", "type": "decimal", "precision": 12, "scale": 3},
        {"name": "label", "type": "string"},
        {"name": "flag", "type": "boolean"},
        {"name": "start", "type": "date"},
        {"name": "finish", "type": "date"},
        *({"name": name, "type": kind, "compute": text, **({"precision": 18, "scale": 2} if kind == "decimal" else {})}
          for name, (kind, text) in SAMPLE_COMPUTED.items()),
    ]))
    return loom_app


def _expected(app, name: str, record: dict):
    value = _model(app).entity("sample").field(name).compute_expr.evaluate(record)
    if value is None or SAMPLE_COMPUTED[name][0] not in ("decimal", "integer"):
        return value.isoformat() if isinstance(value, dt.date) else value
    if SAMPLE_COMPUTED[name][0] == "integer":
        return int(Decimal(value).quantize(Decimal(1), "ROUND_HALF_UP"))
    rounded = Decimal(value).quantize(Decimal("0.01"), "ROUND_HALF_UP")
    return str(abs(rounded) if rounded == 0 else rounded)  # a computed -0.00 is stored as 0.00


def test_random_records_store_exactly_what_the_expressions_give(sample, loom_client):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    dates = st.one_of(st.none(), st.dates(dt.date(1990, 1, 1), dt.date(2090, 12, 31)))
    records = st.fixed_dictionaries({
        "qty": st.one_of(st.none(), st.integers(-5000, 5000)),
        "price": st.one_of(st.none(), st.decimals(-10**6, 10**6, places=3, allow_nan=False, allow_infinity=False)),
        "label": st.one_of(st.none(), st.text("abcXYZ é中", max_size=8)),
        "flag": st.one_of(st.none(), st.booleans()),
        "start": dates, "finish": dates,
    })

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(record=records)
    def check(record):
        body = {k: (str(v) if isinstance(v, Decimal) else v.isoformat() if isinstance(v, dt.date) else v)
                for k, v in record.items()}
        reply = loom_client.post("/api/v1/sample", json=body)
        assert reply.status_code == 201, reply.get_json()
        created = reply.get_json()["data"]
        record["label"] = created["label"]  # as stored: the text Loom keeps (trimmed)
        stored = loom_client.get(f"/api/v1/sample/{created['id']}").get_json()["data"]
        for name in SAMPLE_COMPUTED:
            expected = _expected(sample, name, record)
            assert created[name] == expected, (name, record)
            assert stored[name] == expected, (name, record)

    check()


def test_a_date_past_the_calendars_end_is_stored_empty_not_a_crash(sample, loom_client):
    reply = loom_client.post("/api/v1/sample", json={"start": "9999-12-30", "qty": 5})
    assert reply.status_code == 201, reply.get_json()
    assert reply.get_json()["data"]["due"] is None


def test_a_bulk_create_reads_linked_records_once_per_linked_entity(shop, loom_client):
    products = [_product(loom_client, f"{i}.00") for i in range(1, 31)]
    statements = []

    def note(conn, cursor, statement, parameters, context, executemany):
        if "e_product" in statement:
            statements.append(statement)

    engine = shop.extensions["loom"].engine
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        reply = loom_client.post("/api/v1/sales_order/_bulk", json=[
            {"customer": f"c{i}", "lines": [{"product": p, "quantity": 2} for p in products[i:i + 3]]}
            for i in range(0, 27)])
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert reply.status_code == 201, reply.get_json()
    # one read of the products for the prices, whatever the number of rows (the link check has its own)
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "list_price" in s]
    assert len(reads) == 1, statements
    lines = _stored(shop, "order_line")
    assert len(lines) == 81
    assert sorted({Decimal(str(line["amount"])) for line in lines}) == [Decimal(2 * i) for i in range(1, 30)]


def test_adding_logic_to_a_published_entity_applies_to_the_next_writes(apply_metadata, make_entity, loom_client):
    fields = [{"name": "quantity", "type": "integer"}, {"name": "double", "type": "integer"}]
    apply_metadata(make_entity("stock", fields))
    assert loom_client.post("/api/v1/stock", json={"quantity": 2, "double": 7}).status_code == 201
    fields[1] = {**fields[1], "compute": "quantity * 2"}
    apply_metadata(make_entity("stock", fields, rules=[{"when": "quantity < 0", "message": "No negative stock"}]))
    created = loom_client.post("/api/v1/stock", json={"quantity": 5})
    assert created.status_code == 201 and created.get_json()["data"]["double"] == 10
    assert _errors(loom_client.post("/api/v1/stock", json={"quantity": -1})) == {"": ("rule_failed", "No negative stock")}
    # a row stored before keeps its value until it is saved again
    first = loom_client.get("/api/v1/stock/1").get_json()["data"]
    assert first["double"] == 7
    assert loom_client.patch("/api/v1/stock/1", json={"quantity": 4}).get_json()["data"]["double"] == 8


def test_paths_through_a_link_to_a_user_read_the_users_row(apply_metadata, make_entity, make_user, client_for):
    apply_metadata(make_entity("task", [
        {"name": "title", "type": "string"},
        {"name": "assignee", "type": "link", "target": "user", "default": {"expression": "$user.id"}},
        {"name": "assignee_name", "type": "string", "compute": "assignee.username"},
        {"name": "mine", "type": "boolean", "compute": "assignee = $user.id"},
        {"name": "self_made", "type": "boolean", "compute": "created_by = assignee and owner = created_by"},
    ]), {"kind": "role", "name": "worker", "permissions": {"task": {"actions": ["read", "create", "update"]}}})
    uma = make_user("uma", roles=["worker"])
    vic = make_user("vic", roles=["worker"])
    created = client_for("uma").post("/api/v1/task", json={"title": "t"}).get_json()["data"]
    # on create, the standard fields the record will have are read too
    assert (created["assignee_name"], created["mine"], created["self_made"]) == ("uma", True, True)
    moved = client_for("uma").patch(f"/api/v1/task/{created['id']}", json={"assignee": vic}).get_json()["data"]
    assert (moved["assignee_name"], moved["mine"], moved["self_made"]) == ("vic", False, False)
    assert uma != vic
