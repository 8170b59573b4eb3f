"""One order, written through every door a user has (the API, a bulk API call, the form,
a spreadsheet import, a list's bulk update), ends up with the same computed values: the
unit price from the product, each line's amount, the roll-up of the lines and the total
after the discount, the customer's roll-up of its orders. Generated entities, not the demo's."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
import sqlalchemy as sa

from loom.ui.importing import run_import, store_job
from loom.ui.models import import_jobs
from tests.ui.conftest import PASSWORD, sign_in


@pytest.fixture
def trade(apply_metadata, make_entity, make_user, loom_app):
    apply_metadata(
        make_entity("ware", [{"name": "title", "type": "string", "required": True},
                             {"name": "list_price", "type": "money"}], title_field="title"),
        make_entity("buyer", [{"name": "title", "type": "string", "required": True},
                              {"name": "open_value", "type": "money",
                               "rollup": {"from": "deal.buyer", "sum": "total", "where": "stage != 'lost'"}}],
                    title_field="title"),
        make_entity("deal", [
            {"name": "label", "type": "string", "required": True},
            {"name": "buyer", "type": "link", "target": "buyer"},
            {"name": "ware", "type": "link", "target": "ware"},
            {"name": "qty", "type": "integer", "required": True},
            {"name": "unit_price", "type": "money", "default": {"from": "ware.list_price"}},
            {"name": "discount", "type": "percent"},
            {"name": "items", "type": "table", "target": "deal_item"},
            {"name": "items_total", "type": "money", "rollup": {"from": "items", "sum": "amount"}},
            {"name": "total", "type": "money",
             "compute": "round((qty * unit_price + items_total) * (1 - coalesce(discount, 0) / 100), 2)"},
            {"name": "stage", "type": "select", "options": [{"value": "open"}, {"value": "lost"}], "default": "open"},
        ], title_field="label"),
        make_entity("deal_item", [{"name": "ware", "type": "link", "target": "ware"},
                                  {"name": "count", "type": "integer"},
                                  {"name": "price", "type": "money", "default": {"from": "ware.list_price"}},
                                  {"name": "amount", "type": "money", "compute": "count * price"}], child=True),
    )
    make_user("ada", password=PASSWORD, superuser=True)
    return loom_app


def _all(app, entity):
    loom = app.extensions["loom"]
    table = loom.metadata.live().tables[entity]
    with loom.engine.connect() as conn:
        return {r["label"] if "label" in r else r["title"]: dict(r)
                for r in conn.execute(sa.select(table).order_by(table.c.id)).mappings()}


def test_every_path_computes_the_same_values(trade, loom_client):
    ware = loom_client.post("/api/v1/ware", json={"title": "Pump", "list_price": "120.00"}).get_json()["data"]["id"]
    buyer = loom_client.post("/api/v1/buyer", json={"title": "Acme"}).get_json()["data"]["id"]
    # expected: 3 x 120 + 2 x 120 = 600, less 10 % = 540
    body = {"buyer": buyer, "ware": ware, "qty": 3, "discount": "10", "items": [{"ware": ware, "count": 2}]}

    assert loom_client.post("/api/v1/deal", json={**body, "label": "api"}).status_code == 201
    assert loom_client.post("/api/v1/deal/_bulk", json=[{**body, "label": "bulk"}]).status_code == 201

    page = sign_in(trade, "ada")
    form = page.post("/r/deal/new", {"label": "form", "buyer": str(buyer), "ware": str(ware), "qty": "3",
                                     "discount": "10", "unit_price": "", "stage": "open", "items.row": ["a"],
                                     "items.a.ware": str(ware), "items.a.count": "2", "items.a.price": ""},
                     htmx="record-form")
    assert form.status_code == 204, form.get_data(as_text=True)

    principal = trade.extensions["loom"].identity.principal_for("ada")
    content = f"label,buyer,ware,qty,discount\nimport,{buyer},{ware},3,10\n"
    with trade.extensions["loom"].engine.begin() as conn:
        job_id = store_job(conn, user_id=principal.user_id, entity="deal", filename="deals.csv",
                           file=io.BytesIO(content.encode()), mapping=["label", "buyer", "ware", "qty", "discount"],
                           total=1, status="running")
    run_import(trade, job_id, principal, "en")
    with trade.extensions["loom"].engine.connect() as conn:
        job = conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id)).mappings().one()
    assert (job["status"], job["imported"]) == ("done", 1), job["message"]

    deals = _all(trade, "deal")
    for label in ("api", "bulk", "form"):
        d = deals[label]
        assert (d["unit_price"], d["items_total"], d["total"]) == (Decimal("120.00"), Decimal("240.00"),
                                                                   Decimal("540.00")), label
    # the import has no lines: 3 x 120 less 10 %
    assert (deals["import"]["unit_price"], deals["import"]["items_total"], deals["import"]["total"]) == (
        Decimal("120.00"), Decimal("0.00"), Decimal("324.00"))
    assert _all(trade, "buyer")["Acme"]["open_value"] == Decimal("540.00") * 3 + Decimal("324.00")

    # a list's bulk update of the quantity recomputes each selected deal, and the buyer's roll-up
    ids = [str(deals[label]["id"]) for label in ("api", "bulk")]
    changed = page.post("/r/deal/_bulk/update", {"bulk_field": "qty", "bulk_value": "5", "ids": ids})
    assert changed.status_code in (200, 204, 303), changed.get_data(as_text=True)
    deals = _all(trade, "deal")
    # 5 x 120 + 240 = 840, less 10 % = 756
    assert [deals[label]["total"] for label in ("api", "bulk", "form")] == [Decimal("756.00"), Decimal("756.00"),
                                                                            Decimal("540.00")]
    assert _all(trade, "buyer")["Acme"]["open_value"] == Decimal("756.00") * 2 + Decimal("540.00") + Decimal("324.00")
    # losing a deal takes it out of the buyer's open value, on the API path too
    lost = loom_client.patch(f"/api/v1/deal/{deals['form']['id']}", json={"stage": "lost"})
    assert lost.status_code == 200, lost.get_json()
    assert _all(trade, "buyer")["Acme"]["open_value"] == Decimal("756.00") * 2 + Decimal("324.00")
