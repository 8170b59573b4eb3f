"""The main screens at a laptop's width (1366 px) and a phone's (390 px), in English and
Chinese, for the demo entities and for a generated app: nothing scrolls sideways, lists and
child tables become cards on a phone, inputs fill their column. Screenshots of the list,
record, form and import screens go to ``LOOM_SCREENSHOTS`` (kept by CI)."""

from __future__ import annotations

import re

import pytest

from .conftest import PASSWORD, browser_sign_in, demo_app, serving

try:
    from playwright.sync_api import expect
except ImportError:  # the chromium fixture skips (or, under CI, fails) every test, saying why
    expect = None

WIDTHS = {"wide": {"width": 1366, "height": 800}, "phone": {"width": 390, "height": 844}}
LANGUAGES = {"en": "English", "zh_CN": "中文"}

#: a generated app: long names, many list columns, a date range filter and a child table
SUPPLIER = {
    "kind": "entity", "name": "supplier", "app": "crm", "title_field": "name",
    "label": {"en": "Supplier", "zh": "供应商"},
    "fields": [
        {"name": "name", "type": "string", "label": {"en": "Supplier name", "zh": "供应商名称"}, "required": True},
        {"name": "contact_person", "type": "string", "label": {"en": "Contact person", "zh": "联系人"}},
        {"name": "city", "type": "string", "label": {"en": "City", "zh": "城市"}},
        {"name": "rating", "type": "select", "label": {"en": "Rating", "zh": "评级"},
         "options": [{"value": "preferred", "label": {"en": "Preferred supplier", "zh": "优选供应商"}},
                     {"value": "approved", "label": {"en": "Approved supplier", "zh": "合格供应商"}}]},
        {"name": "since", "type": "date", "label": {"en": "Supplier since", "zh": "合作起始日"}},
        {"name": "annual_volume", "type": "money", "currency": "CNY", "label": {"en": "Annual volume", "zh": "年采购额"}},
        {"name": "main_customer", "type": "link", "target": "customer", "label": {"en": "Main customer", "zh": "主要客户"}},
        {"name": "items", "type": "table", "target": "supplier_item", "label": {"en": "Items", "zh": "供货品项"}},
    ],
    "list": {"columns": ["name", "contact_person", "city", "rating", "since", "annual_volume", "main_customer"],
             "filters": ["rating", "since", "annual_volume"]},
}
SUPPLIER_ITEM = {
    "kind": "entity", "name": "supplier_item", "app": "crm", "child": True,
    "label": {"en": "Supplier item", "zh": "供货品项"},
    "fields": [
        {"name": "product", "type": "link", "target": "product", "label": {"en": "Product", "zh": "产品"}, "required": True},
        {"name": "description", "type": "string", "label": {"en": "Description", "zh": "说明"}},
        {"name": "lead_days", "type": "integer", "label": {"en": "Lead time (days)", "zh": "交货周期（天）"}},
        {"name": "price", "type": "money", "currency": "CNY", "label": {"en": "Price", "zh": "价格"}},
    ],
}
LONG_NAME = "浙江省杭州市余杭区未来科技城精密机电设备制造有限责任公司"

#: the document's width, and every element that scrolls sideways inside it
OVERFLOW = """() => {
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const style = getComputedStyle(el);
    if (['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1)
      wide.push((el.id ? '#' + el.id : el.tagName.toLowerCase() + '.' + el.className) + ' ' + el.scrollWidth + '>' + el.clientWidth);
  }
  return {page: document.documentElement.scrollWidth, view: window.innerWidth, wide: wide};
}"""


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The demo app plus a generated supplier entity (with a child table), served on a free
    port, with a superuser ``boss``; records with long names in both."""
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService
    from loom.schema.service import model_from_documents

    app, engine = demo_app(tmp_path_factory.mktemp("responsive"))
    loom = app.extensions["loom"]
    demo = loom.metadata.documents_of(loom.metadata.live().number)
    loom.metadata.apply(model_from_documents([*demo, SUPPLIER, SUPPLIER_ITEM]), author="test")
    loom.identity.create_user("boss", password=PASSWORD, display_name="Boss", is_superuser=True)
    ids = {}
    with app.app_context():
        context = record_context(Principal.system("test"))
        customer = RecordService(context, "customer").create({"name": LONG_NAME, "level": "A", "region": "east"})["id"]
        product = RecordService(context, "product").create({"sku": "LONG-1", "name": "工业级变频离心式冷水机组（双压缩机）",
                                                            "price": "128000.00"})["id"]
        ids["customer"] = customer
        ids["sales_order"] = RecordService(context, "sales_order").create({
            "customer": customer, "order_date": "2026-11-02",
            "lines": [{"product": product, "quantity": "2", "unit_price": "128000.00"},
                      {"product": product, "quantity": "1", "unit_price": "0.00"}]})["id"]
        ids["service_ticket"] = RecordService(context, "service_ticket").list({"limit": "1"}).data[0]["id"]
        ids["supplier"] = RecordService(context, "supplier").create({
            "name": LONG_NAME + "供应部", "contact_person": "欧阳明月", "city": "杭州", "rating": "preferred",
            "since": "2020-03-01", "annual_volume": "12345678.90", "main_customer": customer,
            "items": [{"product": product, "description": "含安装调试及三年质保服务", "lead_days": 45, "price": "128000.00"}]})["id"]
    try:
        with serving(app, {"boss": PASSWORD, "ids": ids}, "loom-responsive-server") as server:
            yield server
    finally:
        engine.dispose()


def assert_fits(page, what: str) -> None:
    """Nothing on the page scrolls sideways: not the page, not a box inside it."""
    page.wait_for_load_state("networkidle")
    measured = page.evaluate(OVERFLOW)
    assert measured["page"] <= measured["view"], f"{what}: the page is {measured['page']} px wide in a {measured['view']} px window"
    assert not measured["wide"], f"{what}: scrolls sideways inside {measured['wide']}"


def screens(ids: dict[str, int]) -> list[tuple[str, str]]:
    """Every main screen of the demo entities and the generated one: (name, url)."""
    urls = [("home", "/"), ("audit-log", "/audit"), ("audit-entry", "/audit/1")]
    for entity in ("customer", "sales_order", "service_ticket", "supplier"):
        record = ids[entity]
        urls += [(f"{entity}-list", f"/r/{entity}"), (f"{entity}-record", f"/r/{entity}/{record}"),
                 (f"{entity}-new", f"/r/{entity}/new"), (f"{entity}-edit", f"/r/{entity}/{record}/edit"),
                 (f"{entity}-import", f"/r/{entity}/_import")]
    return urls


#: the screens kept as screenshots: list, record, form (with a table field) and import
KEPT = {"customer-list": "list", "sales_order-record": "record", "sales_order-edit": "form",
        "customer-import": "import", "supplier-list": "generated-list", "supplier-edit": "generated-form"}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("width", WIDTHS)
def test_no_screen_scrolls_sideways(page, live_server, screenshots, width, language):
    page.set_viewport_size(WIDTHS[width])
    browser_sign_in(page, "boss", language=LANGUAGES[language])
    for name, url in screens(live_server.users["ids"]):
        page.goto(url)
        assert_fits(page, f"{name} at {WIDTHS[width]['width']} px ({language})")
        if name in KEPT:
            page.screenshot(path=screenshots / f"{KEPT[name]}-{width}-{language}.png", full_page=True)


def test_lists_and_child_tables_are_cards_on_a_phone(page, live_server):
    ids = live_server.users["ids"]
    page.set_viewport_size(WIDTHS["phone"])
    browser_sign_in(page, "boss")
    for entity in ("customer", "service_ticket", "supplier"):
        page.goto(f"/r/{entity}")
        title = page.locator("#list-rows tr td.card-title").first
        # the title spans the card (a ticket's title was one character wide), the rest are label: value
        assert title.bounding_box()["width"] > 300, entity
        other = page.locator("#list-rows tr").first.locator("td[data-label]:not(.card-title)").first
        shown = other.evaluate("el => getComputedStyle(el, '::before').content")
        assert other.get_attribute("data-label") in shown, f"{entity}: a card's value has no label ({shown})"
    page.goto(f"/r/sales_order/{ids['sales_order']}/edit")
    rows = page.locator("#f-lines-rows tr")
    expect(rows).to_have_count(2)
    for row in (rows.nth(0), rows.nth(1)):
        assert row.locator("input[name$='.quantity']").bounding_box()["width"] > 250
        product = row.locator("input[type=search]")
        assert product.evaluate("el => el.scrollWidth <= el.clientWidth"), "the product's name is cut off"
        remove = row.get_by_role("button", name="Remove this row").bounding_box()
        assert remove["x"] + remove["width"] <= WIDTHS["phone"]["width"]
    assert_fits(page, "the order's edit form")


def test_inputs_fill_their_column_and_filters_stay_out_of_the_way(page, live_server):
    page.set_viewport_size(WIDTHS["wide"])
    browser_sign_in(page, "boss")
    page.goto(f"/r/supplier/{live_server.users['ids']['supplier']}/edit")
    for name in ("contact_person", "rating", "since", "annual_volume"):
        field = page.locator(f"#field-{name}").bounding_box()
        box = page.locator(f"#f-{name}").bounding_box()
        assert box["width"] > field["width"] * 0.75, f"{name} is {box['width']} px in a {field['width']} px column"
    page.goto(f"/r/sales_order/{live_server.users['ids']['sales_order']}/edit")
    for product in page.locator("#f-lines-rows input[type=search]").all():
        assert product.evaluate("el => el.scrollWidth <= el.clientWidth"), "the product's name is cut off"
    # the filter panel starts closed, and opens when a filter is set
    page.goto("/r/sales_order")
    panel = page.locator("details.filter-panel")
    expect(panel).not_to_have_attribute("open", "")
    page.get_by_text("Filters", exact=False).first.click()
    order_date = page.locator(".filters fieldset").filter(has_text="Order date")
    for bound in ("from", "to"):
        date = order_date.get_by_label(f"Order date {bound}")
        expect(order_date.locator("label").get_by_text(bound, exact=True)).to_be_visible()
        assert date.bounding_box()["width"] >= 150, "a date is cut off"
    order_date.get_by_label("Order date from").fill("2026-01-01")
    expect(page).to_have_url(re.compile(r"order_date"))
    page.reload()
    expect(page.locator("details.filter-panel")).to_have_attribute("open", "")
    # the column chooser opens in a row of its own, not over the views
    page.goto("/r/customer")
    page.locator(".column-chooser summary").click()
    chooser = page.locator(".column-chooser .checks").bounding_box()
    views = page.locator("details.views summary").bounding_box()
    assert views["y"] >= chooser["y"] + chooser["height"], "the column chooser lies over the views"
    assert_fits(page, "the open column chooser")


def test_a_comment_clears_the_saved_message_and_its_error_reads_as_one(page, live_server):
    browser_sign_in(page, "boss")
    page.goto(f"/r/customer/{live_server.users['ids']['customer']}/edit")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".message-success")).to_be_visible()
    page.get_by_role("button", name="Post comment").click()
    error = page.locator("#comment-body-error")
    expect(error).to_have_attribute("role", "alert")
    assert error.evaluate("el => getComputedStyle(el).color") == "rgb(180, 35, 24)"   # --danger
    expect(page.locator(".message-success")).to_have_count(0)
    page.get_by_label("Add a comment").fill("Called, will order in May")
    page.get_by_role("button", name="Post comment").click()
    expect(page.locator("#record-timeline .comment-body").first).to_have_text("Called, will order in May")
    expect(page.locator("#messages .message")).to_have_count(0)
