"""The screens in a real browser (Debian's Chromium, headless, through Playwright): what a
sales rep does in a day, in both languages, with screenshots of the main screens."""

from __future__ import annotations

import io
import re

from .conftest import browser_sign_in

try:
    from playwright.sync_api import expect
except ImportError:  # the chromium fixture skips (or, under CI, fails) every test, saying why
    expect = None


def test_sign_in_and_the_start_page(page, screenshots):
    page.goto("/r/customer")
    expect(page).to_have_url(re.compile(r"/sign-in\?next="))
    page.screenshot(path=screenshots / "sign-in.png")
    page.locator("#username").fill("rep")
    page.locator("#password").fill("wrong password")
    page.locator("form.stacked button[type=submit]").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    browser_sign_in(page, "rep")
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Customer")
    expect(page.locator(".user-name")).to_have_text("Rep")          # the display name
    page.screenshot(path=screenshots / "start.png")


def test_list_filter_search_and_sort(page, screenshots):
    browser_sign_in(page, "boss")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Customer").click()
    expect(page).to_have_url(re.compile(r"/r/customer$"))
    expect(page.locator("h1")).to_have_text("Customers")
    total = int(re.search(r"\d+", page.locator("#list-count").inner_text()).group())
    page.locator("details.filter-panel > summary").click()   # closed while no filter is set
    page.get_by_label("A – Key account").check()
    expect(page).to_have_url(re.compile(r"filter%5Blevel%5D%5Bin%5D=A"))
    expect(page.locator(".chip")).to_contain_text("A – Key account")
    filtered = int(re.search(r"\d+", page.locator("#list-count").inner_text()).group())
    assert 0 < filtered < total
    levels = page.locator("#list-rows tr td:nth-child(3)").all_inner_texts()
    assert levels and all(level.strip().startswith("A") for level in levels)
    page.get_by_role("link", name="Name", exact=True).click()
    expect(page.locator("th[aria-sort=ascending]")).to_contain_text("Name")
    names = page.locator("#list-rows tr td:nth-child(2)").all_inner_texts()
    assert names == sorted(names)
    page.get_by_role("link", name="Name", exact=True).click()
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Name")
    names = page.locator("#list-rows tr td:nth-child(2)").all_inner_texts()
    assert names == sorted(names, reverse=True)
    page.screenshot(path=screenshots / "customer-list.png", full_page=True)
    # the URL holds the state: a reload shows the same list
    page.reload()
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Name")
    expect(page.locator(".chip")).to_contain_text("A – Key account")
    # removing the chip clears the filter
    page.locator(".chip button").click()
    expect(page.locator(".chip")).to_have_count(0)
    expect(page.locator("#list-count")).to_contain_text(str(total))


def test_create_a_customer_with_a_validation_error_then_fix_it(page, screenshots):
    browser_sign_in(page, "rep")
    page.goto("/r/customer")
    page.get_by_role("link", name="New").click()
    expect(page.locator("h1")).to_have_text("New Customer")
    # a rep may read but not set the level and the credit limit: shown, not editable
    expect(page.locator("#field-credit_limit input")).to_have_count(0)
    expect(page.locator("#field-level")).to_contain_text("Level")
    page.get_by_label("Unified social credit code").fill("91310115771086404X")
    page.get_by_label("Mobile").fill("12345")
    page.get_by_label("Notes").fill("met at the Canton fair")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-name-error")).to_have_text("This field is required.")
    expect(page.locator("#f-mobile-error")).to_contain_text("11 digits")
    expect(page.locator("#f-credit_code-error")).to_contain_text("check character")
    expect(page.get_by_label("Notes")).to_have_value("met at the Canton fair")
    expect(page.get_by_label("Mobile")).to_have_attribute("aria-invalid", "true")
    page.screenshot(path=screenshots / "customer-form-errors.png", full_page=True)
    page.locator("#f-name").fill("Hangzhou Browser Test Trading Co.")
    page.get_by_label("Unified social credit code").fill("")
    page.get_by_label("Mobile").fill("13812345678")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("Hangzhou Browser Test Trading Co.")
    expect(page).to_have_url(re.compile(r"/r/customer/\d+$"))
    expect(page.locator(".message-success")).to_contain_text("Customer saved")
    expect(page.locator("main")).to_contain_text("13812345678")
    page.screenshot(path=screenshots / "customer-record.png", full_page=True)


def test_comment_on_a_customer_from_its_page(page, screenshots, live_server):
    from loom.records.door import record_context
    from loom.records.service import RecordService

    app = live_server.app
    with app.app_context():
        rep = app.extensions["loom"].identity.principal_for("rep")
        record_id = RecordService(record_context(rep), "customer").create({"name": "Comment Test Ltd"})["id"]
    browser_sign_in(page, "rep")
    page.goto(f"/r/customer/{record_id}")
    expect(page.locator("#record-timeline")).to_contain_text("created")
    page.get_by_role("button", name="Post comment").click()
    expect(page.locator("#comment-body-error")).to_have_text("Write a comment first.")
    expect(page.get_by_label("Add a comment")).to_have_attribute("aria-invalid", "true")
    note = "Asked for a quote on 20 units <script>alert('c')</script>\nCall back on Monday"
    page.get_by_label("Add a comment").fill(note)
    page.get_by_role("button", name="Post comment").click()
    first = page.locator("#record-timeline .timeline li").first
    expect(first).to_contain_text("Rep · commented")          # the display name
    expect(first.locator(".comment-body")).to_have_text(note)
    expect(page.get_by_label("Add a comment")).to_have_value("")
    page.screenshot(path=screenshots / "record-comments.png", full_page=True)
    page.reload()
    expect(page.locator("#record-timeline .comment-body").first).to_have_text(note)


def test_link_picker_and_two_order_lines(page, screenshots, live_server):
    browser_sign_in(page, "boss")
    page.goto("/r/sales_order/new")
    picker = page.locator("#f-customer")
    picker.fill("有限公司")
    options = page.locator("#f-customer-options [data-pick-id]")
    expect(options.first).to_be_visible()
    chosen = options.first.get_attribute("data-pick-title")
    options.first.click()
    expect(picker).to_have_value(chosen)
    for _ in range(2):
        page.get_by_role("button", name="Add a row").click()
    rows = page.locator("#f-lines-rows tr")
    expect(rows).to_have_count(2)
    for i, (sku, quantity, price) in enumerate((("空调", "2", "2999.00"), ("洗衣机", "1", "1999.00"))):
        row = rows.nth(i)
        product = row.locator("input[type=search]")
        product.fill(sku)
        suggestion = row.locator("[data-pick-id]").first
        expect(suggestion).to_be_visible()
        suggestion.click()
        row.locator("input[name$='.quantity']").fill(quantity)
        row.locator("input[name$='.unit_price']").fill(price)
    # a third row added by mistake is removed again
    page.get_by_role("button", name="Add a row").click()
    expect(rows).to_have_count(3)
    rows.nth(2).get_by_role("button", name="Remove this row").click()
    expect(rows).to_have_count(2)
    page.screenshot(path=screenshots / "order-form.png", full_page=True)
    page.get_by_role("button", name="Save").click()
    # Loom numbered the order and worked out each line's amount and the total
    expect(page.locator("h1")).to_have_text(re.compile(r"^SO-\d{6}-\d{5}$"))
    expect(page.locator("dl.values").first).to_contain_text(chosen)
    expect(page.locator("dl.values").first).to_contain_text("7,997.00")
    lines = page.locator("dl.values table tbody tr")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_contain_text("2.00")
    expect(lines.nth(0)).to_contain_text("5,998.00")
    page.screenshot(path=screenshots / "order-record.png", full_page=True)


def test_an_edit_conflict_is_shown_and_reapplied(page, live_server):
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    app = live_server.app
    with app.app_context():
        service = RecordService(record_context(Principal.system("test")), "customer")
        record_id = service.create({"name": "Conflict Test Ltd", "phone": "021-1111111", "notes": "first"})["id"]
    browser_sign_in(page, "boss")
    page.goto(f"/r/customer/{record_id}/edit")
    page.get_by_label("Notes").fill("my notes")
    with app.app_context():
        RecordService(record_context(Principal.system("colleague")), "customer").update(
            record_id, {"phone": "021-2222222"})
    page.get_by_role("button", name="Save").click()
    conflict = page.locator("#conflict")
    expect(conflict).to_contain_text("Someone else saved this record")
    expect(conflict).to_contain_text("021-2222222")
    # the field only they changed now holds their value; mine is kept
    expect(page.get_by_label("Phone")).to_have_value("021-2222222")
    expect(page.get_by_label("Notes")).to_have_value("my notes")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("Conflict Test Ltd")
    with app.app_context():
        stored = RecordService(record_context(Principal.system("test")), "customer").get(record_id)
    assert stored["phone"] == "021-2222222" and stored["notes"] == "my notes"


def _customer_csv(rows: int, bad: dict[int, tuple[str, str]]) -> str:
    lines = ["客户名称,Level,Region,手机号,Notes"]
    for i in range(rows):
        level, mobile = bad.get(i, ("B", f"139{i:08d}"))
        lines.append(f"Imported customer {i:04d},{level},East China,{mobile},row {i}")
    return "\n".join(lines) + "\n"


def test_import_a_thousand_rows_with_a_few_bad_ones(page, screenshots, tmp_path):
    bad = {10: ("B", "12345"), 200: ("Z", "13900000000"), 555: ("B", "abc"), 999: ("Q", "1")}
    upload = tmp_path / "customers.csv"
    upload.write_text(_customer_csv(1000, bad), encoding="utf-8")
    browser_sign_in(page, "boss")
    page.goto("/r/customer")
    page.get_by_role("link", name="Import").click()
    page.get_by_label(re.compile("CSV or Excel file")).set_input_files(str(upload))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("h1")).to_contain_text("customers.csv")
    expect(page.locator("main")).to_contain_text("1000 rows to import")
    # columns matched by Chinese label, English label and name
    for column, field in (("0", "name"), ("1", "level"), ("2", "region"), ("3", "mobile"), ("4", "notes")):
        expect(page.locator(f"#column-{column}")).to_have_value(field)
    page.screenshot(path=screenshots / "import-mapping.png", full_page=True)
    page.get_by_role("button", name="Import").click()
    progress = page.locator("#import-bar")
    expect(progress).to_be_visible()
    expect(page.locator("#import-progress h2")).to_have_text("Import finished", timeout=60_000)
    expect(progress).to_have_attribute("value", "1000")
    expect(page.locator("#import-imported")).to_have_text("996 imported")
    expect(page.locator("#import-rejected")).to_have_text("4 rejected")
    # the page survives a reload: the job's state is kept on the server
    page.reload()
    expect(page.locator("#import-rejected")).to_have_text("4 rejected")
    page.screenshot(path=screenshots / "import-done.png", full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the rejected rows").click()
    report = download.value.path().read_text(encoding="utf-8-sig").splitlines()
    assert len(report) == 5 and report[0].startswith("Line,Reason")
    assert [line.split(",")[0] for line in report[1:]] == ["12", "202", "557", "1001"]
    assert "Mobile" in report[1] and "choices" in report[2]


def test_a_product_leads_to_its_orders_and_the_filter_chip_clears(page):
    browser_sign_in(page, "boss")
    page.goto("/r/product")
    page.locator("#list-rows a").first.click()
    related = page.locator("section.related[id^=related-sales_order-lines-product]")
    expect(related).to_be_visible()
    total = int(re.search(r"\((\d+)\)", related.locator("h2").inner_text()).group(1))
    page.goto(page.url.replace("/r/product/", "/r/sales_order?filter[lines.product][eq]="))
    expect(page.locator("#list-count")).to_have_text(re.compile(rf"^{total} records?$"))
    chip = page.locator(".chip", has_text="Lines · Product")
    expect(chip).to_be_visible()
    chip.get_by_role("button").click()
    expect(page.locator(".chip", has_text="Lines · Product")).to_have_count(0)
    expect(page).not_to_have_url(re.compile(r"lines\.product"))
    expect(page.locator("#list-count")).not_to_have_text(re.compile(rf"^{total} records?$"))


def test_export_the_current_view(page, live_server):
    from openpyxl import load_workbook

    browser_sign_in(page, "boss")
    page.goto("/r/customer?filter%5Bregion%5D%5Bin%5D=north")
    count = int(re.search(r"\d+", page.locator("#list-count").inner_text()).group())
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    lines = download.value.path().read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("ID,") and "Credit limit" in lines[0]
    assert len(lines) == count + 1 and all("North China" in line for line in lines[1:])
    with page.expect_download() as download:
        page.get_by_role("link", name="Export Excel").click()
    sheet = load_workbook(io.BytesIO(download.value.path().read_bytes()), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    assert len(rows) == count + 1 and rows[0][0] == "ID"
    # ticked rows only
    page.locator("input[name=ids]").nth(0).check()
    page.locator("input[name=ids]").nth(1).check()
    expect(page.locator("[data-selected-count]")).to_have_text("2")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export selected (CSV)").click()
    assert len(download.value.path().read_text(encoding="utf-8-sig").splitlines()) == 3


def test_switch_to_chinese(page, screenshots):
    browser_sign_in(page, "rep")
    page.get_by_role("button", name="中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    nav = page.get_by_role("navigation", name="主导航")
    expect(nav).to_contain_text("客户")
    nav.get_by_role("link", name="客户", exact=True).click()
    expect(page.locator("h1")).to_have_text("客户")
    expect(page.get_by_role("link", name="新建")).to_be_visible()
    expect(page.locator("th").filter(has_text="客户名称")).to_have_count(1)
    page.screenshot(path=screenshots / "customer-list-zh.png", full_page=True)
    page.get_by_role("link", name="新建").click()
    expect(page.locator("legend").first).to_have_text("基本信息")
    page.get_by_role("button", name="保存").click()
    expect(page.locator("#f-name-error")).to_have_text("此字段为必填项。")
    page.screenshot(path=screenshots / "customer-form-zh.png", full_page=True)
    page.get_by_role("button", name="English").click()
    expect(page.locator("h1")).to_have_text("New Customer")


XSS = {
    "name": "<script>alert('name')</script>\"'{{7*7}}",
    "phone": "<img src=x onerror=alert(1)>",
    "notes": "\"><svg onload=alert('notes')>{{ config }}{% raw %}</textarea><script>alert('notes2')</script>",
    "website": "https://x.example/?q=\"><script>alert('site')</script>",
}


def test_an_xss_record_runs_no_script_anywhere(page, live_server, screenshots):
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    with live_server.app.app_context():
        context = record_context(Principal.system("test"))
        customer = RecordService(context, "customer").create({**XSS, "level": "A", "region": "east"})["id"]
        RecordService(context, "contact").create({"name": "<b onmouseover=alert('contact')>x</b>", "customer": customer,
                                                  "role": "{{ request.environ }}"})
    browser_sign_in(page, "boss")
    page.goto("/r/customer?search=%3Cscript%3E")
    expect(page.locator("#list-rows")).to_contain_text(XSS["name"])
    page.screenshot(path=screenshots / "xss-list.png", full_page=True)
    page.goto(f"/r/customer/{customer}")
    expect(page.locator("h1")).to_have_text(XSS["name"])
    expect(page.locator("main")).to_contain_text(XSS["notes"])
    expect(page.locator("main")).to_contain_text("{{ request.environ }}")
    page.screenshot(path=screenshots / "xss-record.png", full_page=True)
    page.goto(f"/r/customer/{customer}/edit")
    expect(page.locator("#f-name")).to_have_value(XSS["name"])
    expect(page.locator("#f-notes")).to_have_value(XSS["notes"])
    expect(page.locator("#f-website")).to_have_value(XSS["website"])
    page.screenshot(path=screenshots / "xss-form.png", full_page=True)
    # its title in a link picker's suggestions, and a form re-rendered with errors
    page.locator("#f-mobile").fill("1")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-mobile-error")).to_be_visible()
    expect(page.locator("#f-name")).to_have_value(XSS["name"])
    page.goto("/r/contact/new")
    page.locator("#f-customer").fill("script")
    expect(page.locator("#f-customer-options [data-pick-id]").first).to_have_text(XSS["name"])
    assert page.evaluate("document.querySelectorAll('main script, main img, main svg').length") == 0
    assert page.evaluate("typeof window.alert") == "function"


def test_phone_width_and_keyboard_only(page, screenshots):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/sign-in")
    page.get_by_role("button", name="English").click()
    page.locator("#username").focus()
    page.keyboard.type("rep")
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery")
    page.keyboard.press("Enter")
    page.wait_for_url("**/")
    menu = page.get_by_role("button", name="Menu")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).to_be_hidden()
    menu.focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(nav).to_be_visible()
    page.screenshot(path=screenshots / "phone-menu.png")
    nav.get_by_role("link", name="Customer").click()
    expect(page.locator("h1")).to_have_text("Customers")
    page.screenshot(path=screenshots / "phone-list.png", full_page=True)
    page.get_by_role("link", name="New").click()
    expect(page.locator("#f-name")).to_be_visible()
    # the two-column sections stack at phone width
    name_box, code_box = page.locator("#field-name").bounding_box(), page.locator("#field-credit_code").bounding_box()
    assert code_box["y"] > name_box["y"] + name_box["height"] - 1
    page.locator("#f-name").focus()
    page.keyboard.type("Keyboard Co.")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Keyboard Co.")
    page.screenshot(path=screenshots / "phone-record.png", full_page=True)
