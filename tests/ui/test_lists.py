"""The list screen: keyset pages, bulk actions, saved views and clear messages for bad
list arguments."""

from __future__ import annotations

import re

ROW_LINK = re.compile(r'href="/r/customer/(\d+)"')


def test_load_more_walks_the_list_in_pages(page_client, demo):
    client = page_client("admin")
    first = client.get("/r/customer?limit=25&sort=name").get_data(as_text=True)
    assert first.count('name="ids"') == 3  # only three customers: no "load more"
    assert "Load more" not in first
    page = client.get("/r/customer?sort=name&limit=2").get_data(as_text=True)
    assert page.count('name="ids"') == 2 and "Load more" in page
    more_url = re.search(r'hx-get="(/r/customer\?[^"]*cursor=[^"]+)"', page).group(1).replace("&amp;", "&")
    more = client.hx(more_url, target="list-rows")
    text = more.get_data(as_text=True)
    assert "<html" not in text and text.count('name="ids"') == 1 and "Load more" not in text
    assert "Gamma Hotels" in text


def test_bad_list_arguments_get_a_message_not_an_error(page_client, demo):
    client = page_client("admin")
    for url in ("/r/customer?filter%5Bcredit_limit%5D%5Bgte%5D=lots", "/r/customer?sort=nope",
                "/r/customer?limit=100000", "/r/customer?cursor=forged", "/r/customer?view=abc",
                "/r/nothing_here"):
        response = client.get(url)
        assert response.status_code in (400, 404), url
        assert "message-error" in response.get_data(as_text=True)


def test_bulk_update_and_delete_report_each_record(page_client, demo, loom_app):
    client = page_client("admin")
    acme, beta, gamma = demo["customers"]
    updated = client.post("/r/customer/_bulk/update", {"ids": [acme, beta], "bulk_field": "region",
                                                       "bulk_value": "west"}, htmx="list-results")
    assert updated.status_code == 200 and "Updated 2 records" in updated.get_data(as_text=True)
    assert updated.headers["HX-Trigger"] == "loom:list-changed"
    listing = client.get("/r/customer?filter%5Bregion%5D%5Bin%5D=west").get_data(as_text=True)
    assert "Acme Trading" in listing and "Beta Logistics" in listing and "Gamma Hotels" not in listing
    bad = client.post("/r/customer/_bulk/update", {"ids": [acme], "bulk_field": "cooperation_years",
                                                   "bulk_value": "-3"}, htmx="list-results")
    assert "1 record was not changed" in bad.get_data(as_text=True)
    # a customer with an order cannot be deleted; the others are
    client.post("/r/sales_order/new", {"number": "SO-1", "customer": acme})
    deleted = client.post("/r/customer/_bulk/delete", {"ids": [acme, gamma]}, htmx="list-results")
    text = deleted.get_data(as_text=True)
    assert "Deleted 1 record" in text and f"#{acme}" in text and "still link" in text
    assert client.get(f"/r/customer/{gamma}").status_code == 404
    nothing = client.post("/r/customer/_bulk/delete", {}, htmx="list-results")
    assert nothing.status_code == 400 and "Select one or more records" in nothing.get_data(as_text=True)


def test_the_bulk_value_widget_follows_the_field(page_client, demo):
    client = page_client("admin")
    widget = client.get("/r/customer/_bulk/value?bulk_field=level").get_data(as_text=True)
    assert '<select id="bulk-value-input" name="bulk_value"' in widget and "Key account" in widget
    assert client.get("/r/customer/_bulk/value?bulk_field=id").get_data(as_text=True).strip() == ""


def test_saved_views_keep_filters_columns_and_sort_and_one_is_the_default(page_client, demo):
    client = page_client("admin")
    query = "filter%5Bregion%5D%5Bin%5D=east&sort=-name&columns=name,region"
    saved = client.post("/r/customer/_views", {"name": "East", "query": query, "is_default": "true"})
    assert saved.status_code == 303
    default = client.get("/r/customer").get_data(as_text=True)
    assert "Views</summary>" not in default and "East" in default
    names = re.findall(r'href="/r/customer/\d+">([^<]+)</a>', default)
    assert names == ["Gamma Hotels", "Acme Trading"]
    headers = re.findall(r'<th scope="col"[^>]*>\s*<a [^>]*>([^<]+)</a>', default)
    assert headers == ["Name", "Region"]  # only the saved columns
    # explicit arguments win over the default view
    assert "Beta Logistics" in client.get("/r/customer?sort=name").get_data(as_text=True)
    view_id = re.search(r"view=(\d+)", default).group(1)
    assert client.post(f"/r/customer/_views/{view_id}/delete").status_code == 303
    assert "Beta Logistics" in client.get("/r/customer").get_data(as_text=True)
    # views are per user
    assert page_client("wang").post(f"/r/customer/_views/{view_id}/delete").status_code == 404


def test_columns_can_be_chosen_and_export_follows_them(page_client, demo):
    client = page_client("admin")
    page = client.get("/r/customer?columns=name&columns=credit_limit&columns=city_missing").get_data(as_text=True)
    headers = re.findall(r'<th scope="col"[^>]*>\s*<a [^>]*>([^<]+)</a>', page)
    assert headers == ["Name", "Credit limit"]
    assert 'name="columns" value="name" checked' in page and 'name="columns" value="level" >' in " ".join(page.split())
    exported = client.get("/r/customer/_export?format=csv&columns=name&columns=credit_limit").get_data(as_text=True)
    assert exported.lstrip("\ufeff").splitlines()[0] == "ID,Name,Credit limit"
    # a rep's column choices hold no field they may not read
    liu = page_client("liu").get("/r/customer?columns=name,credit_limit").get_data(as_text=True)
    assert 'value="credit_limit"' not in liu and "Credit limit" not in liu


def test_a_list_counts_its_matches_only_up_to_a_limit(page_client, demo, monkeypatch):
    from loom.ui import lists

    monkeypatch.setattr(lists, "COUNT_LIMIT", 2)
    admin = page_client("admin")
    everything = admin.get("/r/customer").get_data(as_text=True)       # three customers
    assert re.search(r'id="list-count">More than 2 records<', everything)
    one = admin.get("/r/customer?filter[level][in]=A").get_data(as_text=True)
    assert re.search(r'id="list-count">1 record<', one)
    # the API's count=exact is exact
    assert admin.get("/api/v1/customer?count=exact").get_json()["count"] == 3
