"""Attacks on live forms and the screens' transfer: a form posted with hostile values —
ids that are not whole numbers (superscripts, other scripts' digits, thousands of digits),
thousands of rows, NUL bytes, values of fields the user may not read — is answered with a
clear message or nothing at all, never a server error, never a record changed or a value
the user may not read shown; and the preview is refused wherever the save is."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from .conftest import PASSWORD, sign_in

SHOP = (
    {"kind": "entity", "name": "product", "title_field": "name", "fields": [
        {"name": "name", "type": "string", "required": True},
        {"name": "list_price", "type": "money"},
        {"name": "cost", "type": "money"},
    ]},
    {"kind": "entity", "name": "order", "title_field": "customer", "owner_field": "rep", "fields": [
        {"name": "customer", "type": "string", "required": True},
        {"name": "rep", "type": "link", "target": "user"},
        {"name": "product", "type": "link", "target": "product"},
        {"name": "discount", "type": "percent"},
        {"name": "secret", "type": "integer"},
        {"name": "doubled", "type": "integer", "compute": "secret * 2 + coalesce(discount, 0)"},
        {"name": "supplier_price", "type": "money", "compute": "product.cost"},
        {"name": "lines_total", "type": "money", "rollup": {"from": "lines", "sum": "amount"}},
        {"name": "lines", "type": "table", "target": "order_line"},
    ], "rules": [{"when": "discount > 50", "message": {"en": "At most half off"}, "fields": ["discount"]}]},
    {"kind": "entity", "name": "order_line", "child": True, "fields": [
        {"name": "product", "type": "link", "target": "product"},
        {"name": "quantity", "type": "integer"},
        {"name": "unit_price", "type": "money", "default": {"from": "product.list_price"}},
        {"name": "amount", "type": "money", "compute": "quantity * unit_price"},
        {"name": "bought_at", "type": "money", "default": {"from": "product.cost"}},
    ]},
    {"kind": "role", "name": "clerk", "permissions": {
        "order": {"actions": ["read", "create", "update", "transfer"], "scope": "own",
                  "fields": {"secret": "none"}},
        "product": {"actions": ["read"], "scope": {"where": {"name": {"ne": "Hidden"}}}, "fields": {"cost": "none"}}}},
    {"kind": "role", "name": "auditor", "permissions": {
        "order": {"actions": ["read"]}, "product": {"actions": ["read"]}}},
)


@pytest.fixture
def shop(loom_app, apply_metadata, make_user, loom_client):
    apply_metadata(*SHOP)
    users = {"kim": make_user("kim", roles=["clerk"], password=PASSWORD),
             "ada": make_user("ada", roles=["auditor"], password=PASSWORD),
             "bo": make_user("bo", roles=["clerk"], password=PASSWORD)}
    products = {}
    for name, price in (("Lamp", "12.50"), ("Hidden", "77.00")):
        reply = loom_client.post("/api/v1/product", json={"name": name, "list_price": price, "cost": "3.25"})
        assert reply.status_code == 201, reply.get_json()
        products[name] = reply.get_json()["data"]["id"]
    return {"app": loom_app, "users": users, "products": products, "admin": loom_client}


def orders(app) -> list[tuple]:
    with app.extensions["loom"].engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT id, customer, rep, owner, version, secret, lines_total FROM e_order ORDER BY id"))]


def new_order(shop, **values) -> dict:
    reply = shop["admin"].post("/api/v1/order", json={"customer": "Acme", "rep": shop["users"]["kim"], **values})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]


NOT_IDS = ["²", "¹²", "١٢", "9" * 5000, str(2**63), str(2**64), "-1", "0", "1e3", "1\x00", "0x1", "١"]


@pytest.mark.parametrize("raw", NOT_IDS, ids=lambda v: repr(v)[:12])
def test_a_row_or_link_that_is_not_an_id_never_breaks_a_live_form_or_its_save(shop, raw):
    order = new_order(shop, lines=[{"quantity": 1}])
    kim = sign_in(shop["app"], "kim")
    before = orders(shop["app"])
    base = {"customer": "Acme", "rep": str(shop["users"]["kim"]), "lines.row": "r0", "lines.r0.quantity": "2"}
    forms = [{**base, "lines.r0.id": raw}, {**base, "product": raw},
             {**base, "product": raw, "_title.product": "Lamp"},
             {**base, "lines.r0.product": raw, "_title.lines.r0.product": "#" + raw[:10]}]
    for form in forms:
        for url in ("/r/order/form/preview", f"/r/order/{order['id']}/form/preview"):
            reply = kim.post(url, form, htmx="record-form")
            assert reply.status_code in (200, 204, 400, 404, 422), (url, form, reply.status_code)
        saved = kim.post(f"/r/order/{order['id']}/edit", {**form, "version": str(order["version"])},
                         htmx="record-form")
        assert saved.status_code in (204, 400, 404, 409, 422), (form, saved.status_code)
        created = kim.post("/r/order/new", form, htmx="record-form")
        assert created.status_code in (204, 400, 404, 422), (form, created.status_code)
    assert kim.get(f"/r/order/new?product={raw}").status_code in (200, 400)
    for url in ("/r/order/_bulk/transfer", "/r/order/_bulk/delete"):
        bulk = kim.post(url, {"ids": raw, "transfer_to": str(shop["users"]["bo"])}, htmx="list")
        assert bulk.status_code in (400, 403, 404, 422), (url, bulk.status_code)
    exported = kim.get(f"/r/order/export?format=csv&ids={raw}")
    assert exported.status_code in (200, 400, 404, 422)
    transfer = kim.post(f"/r/order/{order['id']}/transfer", {"to": raw})
    assert transfer.status_code in (400, 403, 404, 422), transfer.status_code
    # whatever was saved stays kim's: no transfer to bo went through
    assert {rep for _id, _c, rep, _o, _v, _s, _t in orders(shop["app"])} == {shop["users"]["kim"]}
    assert orders(shop["app"])[0][:4] == before[0][:4]


def live(kim, url, form):
    reply = kim.post(url, form, htmx="record-form")
    assert reply.status_code in (200, 204), (url, reply.status_code, reply.get_data(as_text=True)[:500])
    return reply.get_data(as_text=True)


def test_a_live_form_shows_nothing_of_a_field_or_record_the_user_may_not_read(shop):
    hidden, lamp = shop["products"]["Hidden"], shop["products"]["Lamp"]
    order = new_order(shop, secret=4242, lines=[{"product": lamp, "quantity": 1}])
    kim = sign_in(shop["app"], "kim")
    edit = f"/r/order/{order['id']}/form/preview"
    line = str(order["lines"][0]["id"])
    answers = [
        # the hidden field sent by hand, and a rule over it
        live(kim, "/r/order/form/preview", {"customer": "Acme", "secret": "4242", "discount": "60"}),
        live(kim, edit, {"customer": "Acme", "secret": "1", "lines.row": "r0", "lines.r0.id": line,
                         "lines.r0.product": str(lamp), "lines.r0.quantity": "2"}),
        # a product outside kim's read scope, picked by id or by its title, on the order or a line
        live(kim, "/r/order/form/preview", {"customer": "Acme", "product": str(hidden)}),
        live(kim, "/r/order/form/preview", {"customer": "Acme", "product": str(hidden), "_title.product": "Hidden"}),
        live(kim, "/r/order/form/preview", {"customer": "Acme", "lines.row": "a1", "lines.a1.product": str(hidden),
                                            "lines.a1.quantity": "1", "lines.a1.unit_price:auto": "",
                                            "lines.a1.unit_price": ""}),
        live(kim, edit, {"customer": "Acme", "lines.row": "r0", "lines.r0.id": line, "lines.r0.product": str(hidden),
                         "_title.lines.r0.product": "#" + str(hidden), "lines.r0.quantity": "1"}),
    ]
    for html in answers:
        assert "4242" not in html and "secret" not in html.lower()
        assert "77.00" not in html and "77" not in html and "Hidden" not in html



def test_the_live_form_is_refused_wherever_the_save_is(shop, client_for):
    mine, theirs = new_order(shop), new_order(shop, rep=shop["users"]["bo"], customer="Theirs")
    kim, ada = sign_in(shop["app"], "kim"), sign_in(shop["app"], "ada")
    form = {"customer": "X"}
    assert kim.post(f"/r/order/{theirs['id']}/form/preview", form, htmx="record-form").status_code == 404
    assert kim.post(f"/r/order/{theirs['id'] + 1000}/form/preview", form, htmx="record-form").status_code == 404
    assert ada.post("/r/order/form/preview", form, htmx="record-form").status_code == 403
    assert ada.post(f"/r/order/{mine['id']}/form/preview", form, htmx="record-form").status_code == 403
    for entity in ("order_line", "user", "no_such_entity", "product"):
        reply = kim.post(f"/r/{entity}/form/preview", form, htmx="record-form")
        assert reply.status_code in (403, 404), (entity, reply.status_code)
    for url in (f"/r/order/{2**63}/form/preview", f"/r/order/{10**30}/form/preview", "/r/order/-1/form/preview"):
        assert kim.post(url, form, htmx="record-form").status_code == 404, url
    token = client_for("kim", read_only=True)
    assert token.post("/r/order/form/preview", data=form, headers={"HX-Request": "true"}).status_code == 403
    forged = kim.client.post(f"/r/order/{mine['id']}/form/preview", data=form, headers={"HX-Request": "true"})
    assert forged.status_code == 400
    assert "Theirs" not in kim.post(f"/r/order/{theirs['id']}/form/preview", form,
                                    htmx="record-form").get_data(as_text=True)


def test_a_live_form_with_thousands_of_rows_or_nul_bytes_answers_without_error(shop):
    order = new_order(shop)
    kim = sign_in(shop["app"], "kim")
    keys = [f"k{i}" for i in range(3000)]
    many = {"customer": "Acme", "lines.row": keys, **{f"lines.{k}.quantity": "1" for k in keys}}
    reply = kim.post("/r/order/form/preview", many, htmx="record-form")
    assert reply.status_code in (200, 204, 413, 422), reply.status_code
    for value in ("a\x00b", "\x00", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"), "😀" * 5000):
        for url in ("/r/order/form/preview", f"/r/order/{order['id']}/form/preview"):
            form = {"customer": value, "discount": value, "lines.row": ["r0", value],
                    "lines.r0.quantity": value, f"lines.{value}.quantity": "1"}
            reply = kim.post(url, form, htmx="record-form")
            assert reply.status_code in (200, 204, 400, 422), (url, repr(value)[:20], reply.status_code)
    assert orders(shop["app"]) == [tuple(orders(shop["app"])[0])] and orders(shop["app"])[0][4] == order["version"]


@pytest.mark.parametrize("to", ["' or 1=1 --", "0", "-1", str(2**70), "a\x00b", "", "gone", "nobody"])
def test_the_transfer_screens_refuse_a_hostile_new_owner_and_change_nothing(shop, to):
    identity = shop["app"].extensions["loom"].identity
    gone = identity.create_user("gone", password=PASSWORD)
    identity.update_user(gone, {"is_active": False}, actor="test")
    order = new_order(shop)
    kim = sign_in(shop["app"], "kim")
    before = orders(shop["app"])
    for form in ({"to": to}, {"to": to, "_title.to": to}, {"to": str(gone), "_title.to": to}):
        reply = kim.post(f"/r/order/{order['id']}/transfer", form)
        assert reply.status_code in (400, 422), (form, reply.status_code)
        bulk = kim.post("/r/order/_bulk/transfer", {"ids": str(order["id"]), "transfer_to": to,
                                                    "_title.transfer_to": to}, htmx="list")
        assert bulk.status_code in (400, 422), (form, bulk.status_code)
    assert orders(shop["app"]) == before


@pytest.mark.parametrize("raw", ["²", "-1", "0", "9" * 5000, "' or 1=1", "a\x00b", ""], ids=lambda v: repr(v)[:12])
def test_the_screen_moving_every_record_of_a_user_refuses_hostile_users_and_non_admins(shop, make_user, raw):
    make_user("root", superuser=True, password=PASSWORD)
    order = new_order(shop)
    root, kim = sign_in(shop["app"], "root"), sign_in(shop["app"], "kim")
    before = orders(shop["app"])
    assert kim.get("/admin/transfer").status_code == 403
    assert kim.post("/admin/transfer", {"from": str(shop["users"]["kim"]), "to": str(shop["users"]["bo"])}
                    ).status_code == 403
    for query in ({"from": raw}, {"to": raw}, {"from": str(shop["users"]["kim"]), "to": raw}):
        assert root.get("/admin/transfer", query_string=query).status_code in (200, 400, 404), query
        assert root.post("/admin/transfer", query).status_code in (400, 404, 422), query
    assert orders(shop["app"]) == before and before[0][0] == order["id"]


def test_a_row_id_of_another_records_rows_shows_and_changes_nothing_of_it(shop):
    lamp = shop["products"]["Lamp"]
    theirs = new_order(shop, rep=shop["users"]["bo"], customer="Theirs",
                       lines=[{"product": lamp, "quantity": 7, "unit_price": "31.75"}])
    mine = new_order(shop, lines=[{"quantity": 1, "unit_price": "2.00"}])
    stolen = str(theirs["lines"][0]["id"])
    kim = sign_in(shop["app"], "kim")
    html = live(kim, f"/r/order/{mine['id']}/form/preview", {
        "customer": "Acme", "rep": str(shop["users"]["kim"]), "lines.row": "r0", "lines.r0.id": stolen})
    assert "31.75" not in html and "222.25" not in html
    saved = kim.post(f"/r/order/{mine['id']}/edit", {"customer": "Acme", "rep": str(shop["users"]["kim"]),
                                                     "lines.row": "r0", "lines.r0.id": stolen,
                                                     "version": str(mine["version"])}, htmx="record-form")
    assert saved.status_code in (204, 404, 422), saved.status_code
    api = shop["admin"].patch(f"/api/v1/order/{mine['id']}", json={"lines": [{"id": int(stolen), "quantity": 1}]})
    assert api.status_code in (404, 422), api.get_json()
    after = shop["admin"].get(f"/api/v1/order/{theirs['id']}").get_json()["data"]
    assert [(line["id"], line["quantity"], line["unit_price"]) for line in after["lines"]] == \
        [(int(stolen), 7, "31.75")]
    assert after["lines_total"] == "222.25"


def test_a_user_picked_from_the_list_gets_the_records_even_when_a_username_spells_their_id(shop, make_user):
    bo = shop["users"]["bo"]
    impostor = make_user(str(bo), roles=["clerk"], password=PASSWORD)     # a user called like bo's id
    first, second = new_order(shop, customer="One"), new_order(shop, customer="Two")
    kim = sign_in(shop["app"], "kim")
    one = kim.post(f"/r/order/{first['id']}/transfer", {"to": str(bo), "_title.to": "bo"})
    assert one.status_code in (200, 303), one.get_data(as_text=True)[:500]
    many = kim.post("/r/order/_bulk/transfer", {"ids": str(second["id"]), "transfer_to": str(bo),
                                                "_title.transfer_to": "bo"}, htmx="list")
    assert many.status_code == 200 and "to bo." in many.get_data(as_text=True)
    reps = {customer: rep for _i, customer, rep, _o, _v, _s, _t in orders(shop["app"])}
    assert reps == {"One": bo, "Two": bo} and impostor not in reps.values()


def test_how_a_field_is_computed_names_no_field_the_user_may_not_read(shop, make_user):
    """The note beside a computed field (on the form and the record page) says how Loom
    works it out in the words of fields the user may read; a field they may not read, on
    the record or through a link, is left out of it."""
    order = new_order(shop, secret=21, product=shop["products"]["Lamp"])
    kim = sign_in(shop["app"], "kim")
    for url in ("/r/order/new", f"/r/order/{order['id']}/edit", f"/r/order/{order['id']}"):
        html = kim.get(url).get_data(as_text=True)
        assert "computed as" in html and "Discount" in html, url
        assert "Secret" not in html and "secret" not in html, url
        assert "product.cost" not in html and "Cost" not in html, url
    # whoever may read them is told every field
    make_user("root", superuser=True, password=PASSWORD)
    html = sign_in(shop["app"], "root").get("/r/order/new").get_data(as_text=True)
    assert "computed as Secret × 2 + coalesce(Discount, 0)" in html and "computed as product.cost" in html
    assert "taken from product.cost when empty" in html
