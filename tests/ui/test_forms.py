"""The record form: widgets per type, errors beside their fields (422), child rows, the
record page and edit conflicts."""

from __future__ import annotations

import re


def _errors(html: str) -> dict[str, str]:
    return dict(re.findall(r'<p class="error" id="f-([\w.-]+?)-error">([^<]*)</p>', html))


def test_a_bad_submit_comes_back_with_every_error_and_what_was_typed(page_client, demo):
    client = page_client("admin")
    response = client.post("/r/customer/new", {"name": "", "cooperation_years": "three", "mobile": "12",
                                               "website": "ftp://x", "notes": "keep me <b>", "tags": ["strategic"],
                                               "industry": "retail"}, htmx="record-form")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "<html" not in html and 'id="record-form"' in html
    errors = _errors(html)
    assert set(errors) == {"name", "cooperation_years", "mobile", "website"}
    assert errors["name"] == "This field is required." and errors["cooperation_years"] == "Enter a whole number."
    assert 'aria-invalid="true"' in html and 'aria-describedby="f-mobile-error"' in html
    assert "keep me &lt;b&gt;" in html and 'value="three"' in html
    assert 'value="strategic" checked' in html and 'value="retail" selected' in html


def test_widgets_follow_the_field_types(page_client, demo):
    client = page_client("admin")
    html = " ".join(client.get("/r/customer/new").get_data(as_text=True).split())
    assert 'type="number" id="f-credit_limit" name="credit_limit" value="" step="0.01"' in html
    assert '<span class="unit">CNY</span>' in html
    assert 'id="f-cooperation_years" name="cooperation_years" value="" step="1"' in html
    assert '<select id="f-level" name="level"' in html and '<option value="C" selected>' in html
    assert 'type="checkbox" name="tags" value="frequent_buyer"' in html
    assert 'role="combobox"' in html and "/r/customer/_link/account_manager" in html
    assert 'class="help" id="f-credit_code-help"' in html
    assert 'aria-required="true"' in html and "required-mark" in html
    order = " ".join(client.get("/r/sales_order/new").get_data(as_text=True).split())
    assert 'type="date" id="f-order_date"' in order and "Add a row" in order
    ticket = " ".join(client.get("/r/service_ticket/new").get_data(as_text=True).split())
    assert 'type="datetime-local" id="f-opened_at"' in ticket
    product = " ".join(client.get("/r/product/new").get_data(as_text=True).split())
    assert 'type="checkbox" id="f-active" name="active" value="true" checked' in product


def test_an_order_with_lines_is_saved_and_its_row_errors_are_placed(page_client, demo):
    client = page_client("admin")
    acme = demo["customers"][0]
    ac, wm = demo["products"]
    row = client.get("/r/sales_order/_row/lines").get_data(as_text=True)
    key = re.search(r'name="lines.row" value="(\w+)"', row).group(1)
    assert f'name="lines.{key}.product"' in row
    bad = client.post("/r/sales_order/new", {
        "customer": acme, "lines.row": ["a", "b"],
        "lines.a.product": ac, "lines.a.quantity": "2", "lines.b.product": "", "lines.b.quantity": "x"},
        htmx="record-form")
    assert bad.status_code == 422
    errors = _errors(bad.get_data(as_text=True))
    assert errors == {"lines-b-product": "This field is required.", "lines-b-quantity": "Enter a number."}
    good = client.post("/r/sales_order/new", {
        "customer": acme, "order_date": "2026-11-20", "lines.row": ["a", "b"],
        "lines.a.product": ac, "lines.a.quantity": "2", "lines.a.unit_price": "2999",
        "lines.b.product": wm, "lines.b.quantity": "1"}, htmx="record-form")
    assert good.status_code == 204
    location = good.headers["HX-Location"]
    record_id = int(re.search(r"/r/sales_order/(\d+)", location).group(1))
    page = client.get(f"/r/sales_order/{record_id}").get_data(as_text=True)
    assert "Air conditioner" in page and "Washing machine" in page and "2,999.00" in page
    # Loom numbered the order; the washing machine's price came from the product, and each
    # line's amount is quantity x unit price
    number = re.search(r"SO-\d{6}-\d{5}", page).group(0)
    assert "5,998.00" in page and "1,999.00" in page
    # the customer's page lists the order among the records linking to it
    customer_page = client.get(f"/r/customer/{acme}").get_data(as_text=True)
    assert 'id="related-sales_order-customer"' in customer_page and number in customer_page
    # editing keeps the row ids, removing a row drops it
    form = client.get(f"/r/sales_order/{record_id}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    first_id = re.search(r'name="lines.r0.id" value="(\d+)"', form).group(1)
    saved = client.post(f"/r/sales_order/{record_id}/edit", {
        "version": version, "customer": acme, "status": "draft", "lines.row": ["r0"],
        "lines.r0.id": first_id, "lines.r0.product": ac, "lines.r0.quantity": "3"}, htmx="record-form")
    assert saved.status_code == 204
    # the record's values (its timeline tells of the removed row)
    page = client.get(f"/r/sales_order/{record_id}").get_data(as_text=True).split('id="record-timeline"')[0]
    assert "Washing machine" not in page and "3.00" in page


def test_an_edit_conflict_merges_instead_of_overwriting(page_client, demo):
    client = page_client("admin")
    other = page_client("admin")
    acme = demo["customers"][0]
    form = client.get(f"/r/customer/{acme}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    base = re.search(r'name="_base" value="([^"]*)"', form).group(1).replace("&#34;", '"')
    other_form = other.get(f"/r/customer/{acme}/edit").get_data(as_text=True)
    other_base = re.search(r'name="_base" value="([^"]*)"', other_form).group(1).replace("&#34;", '"')
    assert other.post(f"/r/customer/{acme}/edit", {"version": version, "_base": other_base, "name": "Acme Trading",
                                                   "phone": "021-999", "notes": "theirs"}).status_code == 303
    conflict = client.post(f"/r/customer/{acme}/edit", {"version": version, "_base": base, "name": "Acme Trading",
                                                        "notes": "mine"}, htmx="record-form")
    assert conflict.status_code == 409
    html = conflict.get_data(as_text=True)
    assert "Someone else saved this record" in html
    assert 'name="phone" value="021-999"' in html  # only they changed it: theirs
    assert ">mine</textarea>" in html and "yours — check it" in html  # both changed it: mine, flagged
    # "Yours" holds what this user's form held: nothing for the phone they left alone
    phone = re.search(r'<th scope="row">Phone</th>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>', html)
    assert phone.group(1).strip() == "021-999" and phone.group(2).strip() == "—"
    notes = re.search(r'<th scope="row">Notes</th>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>', html)
    assert notes.group(1).strip() == "theirs" and notes.group(2).strip() == "mine"
    new_version = re.search(r'name="version" value="(\d+)"', html).group(1)
    assert new_version != version
    again = client.post(f"/r/customer/{acme}/edit", {"version": new_version, "name": "Acme Trading",
                                                     "phone": "021-999", "notes": "mine"}, htmx="record-form")
    assert again.status_code == 204
    page = client.get(f"/r/customer/{acme}").get_data(as_text=True)
    assert "021-999" in page and "mine" in page


def test_deleting_from_the_record_page(page_client, demo):
    client = page_client("admin")
    gamma = demo["customers"][2]
    page = client.get(f"/r/customer/{gamma}").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', page).group(1)
    assert client.post(f"/r/customer/{gamma}/delete", {"version": version}).status_code == 303
    assert client.get(f"/r/customer/{gamma}").status_code == 404


def test_times_are_shown_and_typed_in_the_screens_time_zone(loom_app, page_client, demo):
    loom_app.extensions["babel"].default_timezone = "Asia/Shanghai"  # BABEL_DEFAULT_TIMEZONE, set late
    client = page_client("admin")
    created = client.post("/r/service_ticket/new", {"title": "Broken", "priority": "normal", "opened_at": "2026-11-20T09:30"},
                          htmx="record-form")
    assert created.status_code == 204, created.get_data(as_text=True)
    record_id = int(re.search(r"/r/service_ticket/(\d+)", created.headers["HX-Location"]).group(1))
    api = loom_app.test_client()
    token = loom_app.extensions["loom"].identity.create_token("admin").token
    stored = api.get(f"/api/v1/service_ticket/{record_id}", headers={"Authorization": f"Bearer {token}"}).json
    # a normal ticket is due 72 hours after it was opened (the demo's computed SLA)
    assert (stored["data"]["opened_at"], stored["data"]["sla_due"]) == ("2026-11-20T01:30:00Z", "2026-11-23T01:30:00Z")
    page = client.get(f"/r/service_ticket/{record_id}").get_data(as_text=True)
    assert "2026-11-20 09:30 CST" in page and "2026-11-23 09:30 CST" in page
    assert 'value="2026-11-20T09:30"' in client.get(f"/r/service_ticket/{record_id}/edit").get_data(as_text=True)
    listed = client.get("/r/service_ticket?filter%5Bsla_due%5D%5Bgte%5D=2026-11-23T09:00"
                        "&filter%5Bsla_due%5D%5Blte%5D=2026-11-23T10:00").get_data(as_text=True)
    assert "Broken" in listed


def test_fields_locked_in_the_records_state_are_shown_read_only(page_client, demo, loom_app):
    """The demo's approved orders keep their customer and lines (``read_only_when``)."""
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    acme, beta = demo["customers"][:2]
    with loom_app.app_context():
        orders = RecordService(record_context(Principal.system("test")), "sales_order")
        order = orders.create({"customer": acme, "status": "approved", "owner": demo["users"]["wang"],
                               "lines": [{"product": demo["products"][0], "quantity": "1"}]})
    wang = page_client("wang")
    form = wang.get(f"/r/sales_order/{order['id']}/edit").get_data(as_text=True)
    assert 'id="f-customer"' not in form and 'name="lines.row"' not in form
    assert form.count("locked in this state") == 2
    assert 'id="f-status"' in form and 'id="f-delivery_date"' in form
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    # a hand-made post that names the customer anyway does not change it
    saved = wang.post(f"/r/sales_order/{order['id']}/edit", {
        "version": version, "number": "SO-77", "customer": beta, "status": "delivered",
        "delivery_date": "2026-12-01"}, htmx="record-form")
    assert saved.status_code == 204
    with loom_app.app_context():
        stored = orders.get(order["id"])
    assert (stored["customer"]["id"], stored["status"], len(stored["lines"])) == (acme, "delivered", 1)
    # a draft order's customer is free
    with loom_app.app_context():
        draft = orders.create({"number": "SO-78", "customer": acme, "owner": demo["users"]["wang"]})
    assert 'id="f-customer"' in wang.get(f"/r/sales_order/{draft['id']}/edit").get_data(as_text=True)


def test_a_products_page_lists_the_orders_whose_lines_hold_it(page_client, demo, loom_app):
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    ac, wm = demo["products"]
    acme = demo["customers"][0]
    with loom_app.app_context():
        orders = RecordService(record_context(Principal.system("test")), "sales_order")
        for number, products in (("SO-101", [ac, wm]), ("SO-102", [wm]), ("SO-103", [ac])):
            orders.create({"number": number, "customer": acme, "owner": demo["users"]["wang"],
                           "lines": [{"product": p, "quantity": "1"} for p in products]})
    page = page_client("admin").get(f"/r/product/{ac}").get_data(as_text=True)
    section = page.split('id="related-sales_order-lines-product"')[1].split("</section>")[0]
    assert "SO-101" in section and "SO-103" in section and "SO-102" not in section
    assert "<span class=\"muted\">(2)</span>" in section
    # the full list behind it is the same filter
    listed = page_client("admin").get(f"/r/sales_order?filter[lines.product][eq]={ac}").get_data(as_text=True)
    assert "SO-101" in listed and "SO-103" in listed and "SO-102" not in listed
    # the filter shows as a chip (the panel has no control for it) and stays on the form
    assert re.search(r'<li class="chip">Lines · Product: Air conditioner\s*<button type="button" '
                     r'data-clear-filter="filter\[lines.product\]\[eq\]"', listed)
    assert f'<input type="hidden" name="filter[lines.product][eq]" value="{ac}">' in listed
    # finance reads orders but not their lines: no list, not even a count
    finance = page_client("zhang").get(f"/r/product/{ac}").get_data(as_text=True)
    assert "related-sales_order-lines-product" not in finance and "SO-101" not in finance


def test_a_generated_entitys_state_lock_and_comments_on_screen(loom_app, apply_metadata, make_entity, make_user):
    """Any entity, not only the demo's: its locked fields are read-only in the form, and its
    record page takes comments."""
    from .conftest import PASSWORD, sign_in

    apply_metadata(
        make_entity("permit", [{"name": "holder", "type": "string", "read_only_when": {"stage": {"eq": "issued"}}},
                               {"name": "stage", "type": "select", "options": [{"value": "draft"}, {"value": "issued"}]},
                               {"name": "note", "type": "text"}], title_field="holder"),
        {"kind": "role", "name": "clerk", "permissions": {"permit": {"actions": ["read", "create", "update"]}}},
    )
    make_user("kim", roles=["clerk"], password=PASSWORD)
    kim = sign_in(loom_app, "kim")
    created = kim.post("/r/permit/new", {"holder": "Harbour Co", "stage": "issued"}, htmx="record-form")
    record_id = int(re.search(r"/r/permit/(\d+)", created.headers["HX-Location"]).group(1))
    form = kim.get(f"/r/permit/{record_id}/edit").get_data(as_text=True)
    assert 'id="f-holder"' not in form and "locked in this state" in form and 'id="f-stage"' in form
    kim.post(f"/r/permit/{record_id}/comments", {"body": "Stamped by the harbour office"}, htmx="record-timeline")
    page = kim.get(f"/r/permit/{record_id}").get_data(as_text=True)
    assert "Stamped by the harbour office" in page and "Harbour Co" in page


def test_a_field_left_out_of_the_form_layout_still_gets_an_input(loom_app, make_user, make_entity, apply_metadata):
    """A field published after the layout was written (not in ``form.sections``) gets an
    input in a trailing section on the new and the edit form, is saved, and shows once on
    the record page."""
    from .conftest import PASSWORD, sign_in

    fields = [{"name": "name", "type": "string", "required": True}, {"name": "city", "type": "string"}]
    layout = {"sections": [{"label": {"en": "Basics", "zh": "基本"}, "fields": ["name", "city"]}]}
    apply_metadata(make_entity("depot", fields, form=layout))
    apply_metadata(make_entity("depot", [*fields, {"name": "dock_count", "type": "integer", "label": "Docks"},
                                          {"name": "remarks", "type": "text"}], form=layout))
    make_user("boss", superuser=True, password=PASSWORD)
    client = sign_in(loom_app, "boss")
    new = client.get("/r/depot/new").get_data(as_text=True)
    assert 'id="f-dock_count" name="dock_count"' in new and 'id="f-remarks" name="remarks"' in new
    assert "<legend>More</legend>" in new
    created = client.post("/r/depot/new", {"name": "North", "city": "Xi'an", "dock_count": "4", "remarks": "gate B"})
    assert created.status_code == 303
    record_url = created.headers["Location"]
    edit = client.get(record_url + "/edit").get_data(as_text=True)
    assert 'id="f-dock_count" name="dock_count" value="4"' in edit and ">gate B</textarea>" in edit
    page = client.get(record_url).get_data(as_text=True)
    assert page.count("<dt>Docks</dt>") == 1 and "<h2>More</h2>" in page and "gate B" in page


def test_a_read_only_field_without_a_value_shows_a_dash(page_client, demo):
    """A sales rep may read but not set the credit limit: the new form shows "—" beside its
    label and help, not the help text alone."""
    html = page_client("wang").get("/r/customer/new").get_data(as_text=True)
    field = re.search(r'id="field-credit_limit".*?</div>\s*</div>', html, re.S).group(0)
    read_only = re.search(r'<div class="read-only"[^>]*>(.*?)</div>', field, re.S).group(1)
    assert read_only.strip() == '<span class="muted empty">—</span>'
    assert 'name="credit_limit"' not in field


def test_bulk_set_offers_no_field_that_tells_records_apart(loom_app, make_user, make_entity, apply_metadata):
    """The title and unique fields (on their own or by a unique index) are neither offered
    nor accepted by bulk "Set": one value on many rows would make them alike."""
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    from .conftest import PASSWORD, sign_in

    apply_metadata(make_entity("part", [
        {"name": "label", "type": "string"}, {"name": "serial", "type": "string", "unique": True},
        {"name": "batch", "type": "string"}, {"name": "bin", "type": "string"}, {"name": "colour", "type": "string"}],
        title_field="label", indexes=[{"fields": ["batch"], "unique": True}, {"fields": ["bin", "colour"], "unique": True}]))
    make_user("boss", superuser=True, password=PASSWORD)
    with loom_app.app_context():
        ids = RecordService(record_context(Principal.system("seed")), "part").bulk_create(
            [{"label": "A", "serial": "1", "batch": "x", "bin": "b1"}, {"label": "B", "serial": "2", "batch": "y", "bin": "b2"}])
    client = sign_in(loom_app, "boss")
    page = client.get("/r/part").get_data(as_text=True)
    offered = re.findall(r'<option value="(\w+)">', page.split('name="bulk_field"', 1)[1].split("</select>", 1)[0])
    assert offered == ["bin", "colour"]
    for name in ("label", "serial", "batch"):
        refused = client.post("/r/part/_bulk/update", {"ids": ids, "bulk_field": name, "bulk_value": "same"},
                              htmx="list-results")
        assert refused.status_code == 400
        assert "tells the records apart" in refused.get_data(as_text=True)
    with loom_app.app_context():
        parts = RecordService(record_context(Principal.system("seed")), "part")
        records = [parts.get(i) for i in ids]
    assert [r["label"] for r in records] == ["A", "B"] and [r["serial"] for r in records] == ["1", "2"]
    assert client.post("/r/part/_bulk/update", {"ids": ids, "bulk_field": "colour", "bulk_value": "red"},
                       htmx="list-results").status_code == 200
