"""Live forms: as the user types, the form asks for a preview of its save and shows what
Loom would compute, which fields are shown and required, a price read from the product
picked, and broken rules beside their fields — through htmx swaps of elements that hold
no input, with every rule on the server. Then the same in a real browser (Chromium)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from .conftest import PASSWORD, serving, sign_in

try:
    from playwright.sync_api import expect
except ImportError:  # the chromium fixture skips (or, under CI, fails) every browser test
    expect = None

SHOP = (
    {"kind": "entity", "name": "product", "title_field": "name", "fields": [
        {"name": "name", "type": "string", "required": True},
        {"name": "list_price", "type": "money", "label": {"en": "List price", "zh": "标价"}},
    ]},
    {"kind": "entity", "name": "order", "title_field": "customer", "fields": [
        {"name": "number", "type": "string", "autonumber": "SO-{seq:4}", "label": {"en": "Number", "zh": "编号"}},
        {"name": "customer", "type": "string", "required": True},
        {"name": "kind", "type": "select", "default": "retail",
         "options": [{"value": "retail"}, {"value": "wholesale"}]},
        {"name": "vat_number", "type": "string", "required": True, "visible_when": "kind = 'wholesale'",
         "label": {"en": "VAT number", "zh": "税号"}},
        {"name": "discount", "type": "percent"},
        {"name": "lines_total", "type": "money", "rollup": {"from": "lines", "sum": "amount"}},
        {"name": "total", "type": "money", "label": {"en": "Total", "zh": "合计"},
         "compute": "round(lines_total * (1 - coalesce(discount, 0) / 100), 2)"},
        {"name": "lines", "type": "table", "target": "order_line"},
    ], "rules": [{"when": "discount > 50", "message": {"en": "At most half off", "zh": "折扣不能超过一半"},
                  "fields": ["discount"]}]},
    {"kind": "entity", "name": "order_line", "child": True, "fields": [
        {"name": "product", "type": "link", "target": "product"},
        {"name": "quantity", "type": "integer", "label": {"en": "Quantity", "zh": "数量"}},
        {"name": "unit_price", "type": "money", "default": {"from": "product.list_price"},
         "label": {"en": "Unit price", "zh": "单价"}},
        {"name": "amount", "type": "money", "compute": "quantity * unit_price", "label": {"en": "Amount", "zh": "金额"}},
    ]},
    {"kind": "role", "name": "clerk", "permissions": {
        "order": {"actions": ["read", "create", "update"]}, "product": {"actions": ["read"]}}},
    {"kind": "role", "name": "auditor", "permissions": {
        "order": {"actions": ["read"]}, "product": {"actions": ["read"]}}},
)


@pytest.fixture
def shop(loom_app, apply_metadata, make_user):
    apply_metadata(*SHOP)
    make_user("kim", roles=["clerk"], password=PASSWORD)
    make_user("ada", roles=["auditor"], password=PASSWORD)
    make_user("root", superuser=True, password=PASSWORD)
    return loom_app


def _lamp(client) -> int:
    reply = client.post("/api/v1/product", json={"name": "Lamp", "list_price": "12.50"})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]["id"]


def _oob(html: str, element_id: str) -> str:
    """The out-of-band element with ``element_id`` in an answer (up to the next one)."""
    match = re.search(rf'<\w+ id="{re.escape(element_id)}"[^>]*hx-swap-oob="true"', html)
    assert match, f"no out-of-band {element_id} in {html[:3000]}"
    rest = html[match.end():]
    following = re.search(r'<\w+ id="[^"]+"[^>]*hx-swap-oob="true"', rest)
    return match.group(0) + (rest[:following.start()] if following else rest)


def _audit_rows(app) -> int:
    with app.extensions["loom"].engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM loom_audit")).scalar()


def test_the_new_form_shows_what_loom_fills_in_and_hides_what_does_not_apply(shop):
    kim = sign_in(shop, "kim")
    html = kim.get("/r/order/new").get_data(as_text=True)
    # a field whose visible_when is not met starts hidden (retail is the default kind)
    assert re.search(r'id="field-vat_number" data-field hidden', html)
    assert 'id="state-vat_number" class="field-state" data-field-state data-visible="false"' in html
    # computed and numbered fields are read-only, with how Loom fills them in
    assert 'id="f-total"' not in html and 'id="f-number"' not in html
    assert "computed as round(sum(amount) of lines" not in html  # the roll-up says what it adds up
    assert "computed as sum(amount) of lines" in html
    assert "numbered SO-{seq:4}" in html and "assigned when saved" in html
    assert "computed as Quantity × Unit price" in html and "taken from product.list_price when empty" in html
    # the live trigger: a preview of the save, on change and (after a pause) on input
    assert 'hx-post="/r/order/form/preview"' in html and 'hx-sync="this:queue last"' in html


def test_a_preview_answers_with_computed_values_states_and_rule_messages(shop, loom_client):
    lamp = _lamp(loom_client)
    kim = sign_in(shop, "kim")
    before = _audit_rows(shop)
    answer = kim.post("/r/order/form/preview", {
        "customer": "Acme", "kind": "wholesale", "discount": "60", "vat_number": "",
        "lines.row": ["a1", "a2"],
        "lines.a1.product": str(lamp), "_title.lines.a1.product": "Lamp", "lines.a1.quantity": "3",
        "lines.a1.unit_price": "", "lines.a1.unit_price:auto": "",
        "lines.a2.quantity": "2", "lines.a2.unit_price": "4.00", "lines.a2.unit_price:auto": "",
    }, htmx="record-form")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    # the price arrives from the product: the input is drawn again, with what Loom put there
    refill = _oob(html, "auto-lines-a1-unit_price")
    assert 'value="12.50"' in refill and 'name="lines.a1.unit_price:auto" value="12.50"' in refill
    # the price the user typed on the second line is not touched
    assert 'id="auto-lines-a2-unit_price"' not in html
    assert "37.50" in _oob(html, "value-lines-a1-amount") and "8.00" in _oob(html, "value-lines-a2-amount")
    assert "45.50" in _oob(html, "value-lines_total")
    assert "18.20" in _oob(html, "value-total")          # 45.50 less 60 %
    assert 'data-visible="true" data-required="true"' in _oob(html, "state-vat_number")
    assert "At most half off" in _oob(html, "live-discount")
    assert "required" not in _oob(html, "live-vat_number")  # the mark says it; no nagging while typing
    # no input the user typed into is in the answer
    assert 'name="customer"' not in html and 'name="discount"' not in html
    assert _audit_rows(shop) == before
    with shop.extensions["loom"].engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM e_order")).scalar() == 0


def test_an_edit_preview_follows_a_changed_product_unless_the_price_was_typed(shop, loom_client):
    lamp = _lamp(loom_client)
    desk = loom_client.post("/api/v1/product", json={"name": "Desk", "list_price": "99.00"}).get_json()["data"]["id"]
    order = loom_client.post("/api/v1/order", json={"customer": "Acme", "lines": [
        {"product": lamp, "quantity": 1}]}).get_json()["data"]
    kim = sign_in(shop, "kim")
    form = kim.get(f"/r/order/{order['id']}/edit").get_data(as_text=True)
    assert 'name="lines.r0.unit_price:auto" value="12.50"' in form
    common = {"customer": "Acme", "kind": "retail", "lines.row": "r0", "lines.r0.id": str(order["lines"][0]["id"]),
              "lines.r0.product": str(desk), "_title.lines.r0.product": "Desk", "lines.r0.quantity": "1",
              "lines.r0.unit_price:auto": "12.50"}
    followed = kim.post(f"/r/order/{order['id']}/form/preview", {**common, "lines.r0.unit_price": "12.50"},
                        htmx="record-form").get_data(as_text=True)
    assert 'value="99.00"' in _oob(followed, "auto-lines-r0-unit_price")
    kept = kim.post(f"/r/order/{order['id']}/form/preview", {**common, "lines.r0.unit_price": "11.00"},
                    htmx="record-form").get_data(as_text=True)
    assert "auto-lines-r0-unit_price" not in kept and "11.00" in _oob(kept, "value-lines-r0-amount")
    # saving what the form holds stores the price of the new product
    saved = kim.post(f"/r/order/{order['id']}/edit", {**common, "lines.r0.unit_price": "12.50",
                                                      "version": str(order["version"])}, htmx="record-form")
    assert saved.status_code == 204, saved.get_data(as_text=True)
    line = loom_client.get(f"/api/v1/order/{order['id']}").get_json()["data"]["lines"][0]
    assert (line["unit_price"], line["amount"]) == ("99.00", "99.00")


def test_the_preview_is_refused_where_the_save_is(shop, loom_client, client_for):
    order = loom_client.post("/api/v1/order", json={"customer": "Acme"}).get_json()["data"]
    ada = sign_in(shop, "ada")   # may read orders, not create or change them
    assert ada.post("/r/order/form/preview", {"customer": "x"}, htmx="record-form").status_code == 403
    assert ada.post(f"/r/order/{order['id']}/form/preview", {"customer": "x"}, htmx="record-form").status_code == 403
    kim = sign_in(shop, "kim")
    missing = kim.post(f"/r/order/{order['id'] + 99}/form/preview", {"customer": "x"}, htmx="record-form")
    assert missing.status_code == 404
    # without the form's CSRF token (a post from another site) nothing is worked out
    forged = kim.client.post("/r/order/form/preview", data={"customer": "x"}, headers={"HX-Request": "true"})
    assert forged.status_code == 400
    # a read-only token is refused before anything is worked out, as for a save
    token = client_for("kim", read_only=True)
    refused = token.post("/r/order/form/preview", data={"customer": "x"}, headers={"HX-Request": "true"})
    assert refused.status_code == 403
    assert "Acme" not in refused.get_data(as_text=True)


def test_the_record_page_and_chinese_forms_say_how_fields_are_filled_in(shop, loom_client):
    lamp = _lamp(loom_client)
    order = loom_client.post("/api/v1/order", json={"customer": "Acme", "lines": [
        {"product": lamp, "quantity": 2}]}).get_json()["data"]
    kim = sign_in(shop, "kim")
    page = kim.get(f"/r/order/{order['id']}").get_data(as_text=True)
    assert "SO-0001" in page and "computed as sum(amount) of lines" in page
    assert "computed as Quantity × Unit price" in page and "25.00" in page
    kim.post("/language", {"locale": "zh_CN", "next": "/"})
    chinese = kim.get("/r/order/new").get_data(as_text=True)
    assert "计算：数量 × 单价" in chinese and "自动编号 SO-{seq:4}" in chinese and "保存时分配" in chinese


def test_lists_show_filter_and_sort_computed_fields(shop, loom_client):
    lamp = _lamp(loom_client)
    for customer, quantity in (("Small", 1), ("Big", 8), ("Middle", 4)):
        reply = loom_client.post("/api/v1/order", json={"customer": customer, "lines": [
            {"product": lamp, "quantity": quantity}]})
        assert reply.status_code == 201, reply.get_json()
    api = loom_client.get("/api/v1/order?filter[total][gte]=50&sort=-total&fields=customer,total").get_json()
    assert [(r["customer"], r["total"]) for r in api["data"]] == [("Big", "100.00"), ("Middle", "50.00")]
    kim = sign_in(shop, "kim")
    listed = kim.get("/r/order?filter[total][gte]=50&sort=-total&columns=customer,total").get_data(as_text=True)
    rows = re.findall(r"<tr[^>]*>.*?</tr>", listed.split('id="list-rows"', 1)[1], re.S)
    texts = [re.sub(r"<[^>]+>", " ", row) for row in rows]
    assert len(texts) == 2 and "Big" in texts[0] and "100.00" in texts[0] and "Middle" in texts[1]
    assert "Small" not in listed.split('id="list-rows"', 1)[1]


# -- in a real browser ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The shop above served over HTTP (SQLite) for the browser, with a clerk ``kim``."""
    from loom.app import create_app
    from loom.db import create_engine, upgrade
    from loom.schema.service import model_from_documents

    instance = tmp_path_factory.mktemp("live-forms")
    url = f"sqlite:///{instance / 'loom.db'}"
    engine = create_engine(url)
    upgrade(engine)
    app = create_app({"ENGINE": engine, "DATABASE_URL": url, "INSTANCE_PATH": str(instance),
                      "SECRET_KEY": "live-forms", "DISCOVER_PLUGINS": False})
    loom = app.extensions["loom"]
    loom.metadata.apply(model_from_documents(SHOP), author="test")
    loom.identity.create_user("kim", password=PASSWORD, display_name="Kim", roles=["clerk"])
    loom.identity.create_user("boss", password=PASSWORD, display_name="Boss", is_superuser=True)
    with app.app_context():
        from loom.principal import Principal
        from loom.records.door import record_context
        from loom.records.service import RecordService

        RecordService(record_context(Principal.system("test")), "product").bulk_create([
            {"name": "Lamp", "list_price": "12.50"}, {"name": "Desk", "list_price": "99.00"}])
    try:
        with serving(app, {"kim": PASSWORD}, "loom-live-forms") as server:
            yield server
    finally:
        engine.dispose()


def test_an_order_form_recomputes_as_the_user_types(page, live_server, screenshots):
    from .conftest import browser_sign_in

    browser_sign_in(page, "kim")
    page.goto("/r/order/new")
    loads = []
    page.on("framenavigated", lambda frame: loads.append(frame.url))
    page.locator("#f-customer").fill("Acme")
    # a field appears when a select changes, required
    vat = page.locator("#field-vat_number")
    expect(vat).to_be_hidden()
    page.locator("#f-kind").select_option("wholesale")
    expect(vat).to_be_visible()
    expect(vat.locator("[data-required-mark]")).to_be_visible()
    page.get_by_role("button", name="Add a row").click()
    row = page.locator("#f-lines-rows tr").first
    # type quantity and unit price: the amount and the totals follow, without a page load
    row.locator("input[name$='.quantity']").fill("3")
    row.locator("input[name$='.unit_price']").fill("2.50")
    expect(row.locator("output[id$='-amount']")).to_have_text("7.50")
    expect(page.locator("#value-total")).to_contain_text("7.50")
    # pick a product on a second line: its price arrives, and the total follows
    page.get_by_role("button", name="Add a row").click()
    second = page.locator("#f-lines-rows tr").nth(1)
    second.locator("input[type=search]").fill("Desk")
    second.locator("[data-pick-id]").first.click()
    expect(second.locator("input[name$='.unit_price']")).to_have_value("99.00")
    second.locator("input[name$='.quantity']").fill("2")
    expect(second.locator("output[id$='-amount']")).to_have_text("198.00")
    expect(page.locator("#value-total")).to_contain_text("205.50")
    # a broken rule is shown beside its field as soon as it is typed
    page.locator("#f-discount").fill("60")
    expect(page.locator("#live-discount")).to_have_text("At most half off")
    page.locator("#f-discount").fill("10")
    expect(page.locator("#live-discount")).to_have_text("")
    expect(page.locator("#value-total")).to_contain_text("184.95")
    # what the user typed is all still there
    expect(page.locator("#f-customer")).to_have_value("Acme")
    expect(row.locator("input[name$='.unit_price']")).to_have_value("2.50")
    assert loads == []
    page.screenshot(path=screenshots / "live-order-form.png", full_page=True)
    page.locator("#f-vat_number").fill("CN-123")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("Acme")
    expect(page.locator("main")).to_contain_text("SO-0001")
    expect(page.locator("main")).to_contain_text("184.95")


def test_an_answer_about_a_row_removed_meanwhile_changes_only_what_is_left(page, live_server):
    from .conftest import browser_sign_in

    browser_sign_in(page, "kim")
    page.goto("/r/order/new")
    page.locator("#f-customer").fill("Acme")
    for _ in range(2):
        page.get_by_role("button", name="Add a row").click()
    rows = page.locator("#f-lines-rows tr")
    rows.nth(0).locator("input[name$='.quantity']").fill("2")
    rows.nth(0).locator("input[name$='.unit_price']").fill("5.00")
    expect(page.locator("#value-total")).to_contain_text("10.00")
    held = []
    page.route("**/form/preview", lambda route: held.append(route))
    rows.nth(1).locator("input[name$='.quantity']").fill("1")
    rows.nth(1).locator("input[name$='.unit_price']").fill("7.00")
    rows.nth(1).locator("input[name$='.unit_price']").dispatch_event("change")
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "no preview was asked for"
    # the row goes while the answer about it is on its way
    rows.nth(1).get_by_role("button", name="Remove this row").click()
    expect(rows).to_have_count(1)
    for _ in range(50):  # the late answer, then the one asked for without the row
        if held:
            held.pop(0).continue_()
        page.wait_for_timeout(100)
    page.unroute("**/form/preview")
    # the late answer (17.00 with the removed row) is followed by the one without it
    expect(page.locator("#value-total")).to_contain_text("10.00")
    expect(rows.nth(0).locator("input[name$='.unit_price']")).to_have_value("5.00")


def test_a_price_typed_while_the_product_answer_is_on_its_way_is_kept(page, live_server):
    from .conftest import browser_sign_in

    browser_sign_in(page, "kim")
    page.goto("/r/order/new")
    page.locator("#f-customer").fill("Acme")
    page.get_by_role("button", name="Add a row").click()
    row = page.locator("#f-lines-rows tr").first
    held = []
    page.route("**/form/preview", lambda route: held.append(route))
    row.locator("input[type=search]").fill("Desk")
    row.locator("[data-pick-id]").first.click()
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "no preview was asked for"
    # the user types a price of their own before the answer with the product's price is back
    row.locator("input[name$='.quantity']").fill("2")
    row.locator("input[name$='.unit_price']").fill("80.00")
    page.locator("#f-discount").focus()
    for _ in range(50):  # the late answer (99.00 from the product), then the later ones
        if held:
            held.pop(0).continue_()
        page.wait_for_timeout(100)
    page.unroute("**/form/preview")
    expect(row.locator("input[name$='.unit_price']")).to_have_value("80.00")
    expect(row.locator("output[id$='-amount']")).to_have_text("160.00")
    expect(page.locator("#value-total")).to_contain_text("160.00")
