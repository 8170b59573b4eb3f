"""No field or record a user may not read shows up on any screen: lists, filters, sort,
record pages, forms, link suggestions, exports or error messages."""

from __future__ import annotations

MARKER_LIMIT = "500,000.00"


def _everything(client, demo, customer) -> str:
    pages = [
        client.get("/r/customer").get_data(as_text=True),
        client.get("/r/customer?search=Acme").get_data(as_text=True),
        client.get(f"/r/customer/{customer}").get_data(as_text=True),
        client.get("/r/customer/_export?format=csv").get_data(as_text=True),
    ]
    edit = client.get(f"/r/customer/{customer}/edit")
    if edit.status_code == 200:
        pages.append(edit.get_data(as_text=True))
    return "\n".join(pages)


def test_a_field_the_user_may_not_read_is_on_no_screen(page_client, demo):
    client = page_client("liu")  # service agent: every customer, but not the credit limit
    acme = demo["customers"][0]
    seen = _everything(client, demo, acme)
    assert "Acme Trading" in seen
    assert "Credit limit" not in seen and "credit_limit" not in seen
    assert MARKER_LIMIT not in seen and "500000" not in seen
    for probe in ("/r/customer?sort=credit_limit", "/r/customer?filter%5Bcredit_limit%5D%5Bgte%5D=1",
                  "/r/customer/_export?format=csv&columns=credit_limit"):
        response = client.get(probe)
        text = response.get_data(as_text=True)
        assert response.status_code in (200, 400, 403), probe
        assert "500000" not in text and MARKER_LIMIT not in text
    # an htmx request for a field it cannot read gets the same refusal, in the message area
    refused = client.hx("/r/customer?sort=-credit_limit", target="list-results")
    assert refused.status_code == 400 and refused.headers["HX-Retarget"] == "#messages"


def test_finance_sees_the_customer_name_and_its_orders_only(page_client, demo):
    client = page_client("zhang")
    record = client.get(f"/r/customer/{demo['customers'][0]}").get_data(as_text=True)
    assert "Acme Trading" in record
    assert "Region" not in record and "East China" not in record and "Contact" not in record
    listing = client.get("/r/customer").get_data(as_text=True)
    assert "Level" not in listing and "Key account" not in listing
    assert client.get(f"/r/customer/{demo['customers'][0]}/edit").status_code == 403
    assert client.get("/r/customer/new").status_code == 403
    assert client.get("/r/contact").status_code == 403


def test_a_rep_sees_only_their_own_customers_everywhere(page_client, demo):
    client = page_client("wang")
    gamma = demo["customers"][2]  # zhao's
    listing = client.get("/r/customer").get_data(as_text=True)
    assert "Acme Trading" in listing and "Gamma Hotels" not in listing
    assert client.get(f"/r/customer/{gamma}").status_code == 404
    assert client.get(f"/r/customer/{gamma}/edit").status_code == 404
    suggestions = client.get("/r/contact/_link/customer?_title.customer=a").get_data(as_text=True)
    assert "Acme Trading" in suggestions and "Gamma Hotels" not in suggestions
    exported = client.get("/r/customer/_export?format=csv").get_data(as_text=True)
    assert "Acme Trading" in exported and "Gamma Hotels" not in exported
    # a made-up id in a filter chip reveals nothing either
    chip = client.get(f"/r/sales_order?filter%5Bcustomer%5D%5Beq%5D={gamma}").get_data(as_text=True)
    assert "Gamma Hotels" not in chip


def test_read_only_fields_are_shown_not_editable_and_never_sent(page_client, demo, loom_app):
    client = page_client("wang")
    acme = demo["customers"][0]
    form = client.get(f"/r/customer/{acme}/edit").get_data(as_text=True)
    assert 'name="credit_limit"' not in form and 'name="level"' not in form
    assert "500,000.00" in form  # shown as text
    version = int(form.split('name="version" value="')[1].split('"')[0])
    # the form as the browser sends it: the account manager (whose customer it is) stays wang
    saved = client.post(f"/r/customer/{acme}/edit", {"version": version, "name": "Acme Trading",
                                                       "account_manager": demo["users"]["wang"],
                                                       "credit_limit": "1", "level": "C"})
    assert saved.status_code == 303, saved.get_data(as_text=True)
    record = client.get(f"/r/customer/{acme}").get_data(as_text=True)
    assert "500,000.00" in record and "A – Key account" in record


def test_actions_the_user_may_not_take_are_not_offered_and_refused(page_client, demo):
    client = page_client("wang")
    listing = client.get("/r/customer").get_data(as_text=True)
    assert "Delete selected" not in listing and "Import" not in listing
    refused = client.post("/r/customer/_bulk/delete", {"ids": demo["customers"][0]}, htmx="list-results")
    assert refused.status_code == 403
    assert "Acme Trading" in client.get("/r/customer").get_data(as_text=True)
    assert client.get("/r/customer/_import").status_code == 403


def test_refusals_are_explained_in_the_users_language(page_client, demo):
    client = page_client("wang")
    english = client.get("/r/customer/_import").get_data(as_text=True)
    assert "You may not import Customer records." in english
    client.post("/language", {"locale": "zh_CN"})
    chinese = client.get("/r/customer/_import").get_data(as_text=True)
    assert "您无权导入客户记录。" in chinese and "无权操作" in chinese
    missing = client.get(f"/r/customer/{demo['customers'][2]}").get_data(as_text=True)
    assert "没有编号为" in missing and "Gamma" not in missing
