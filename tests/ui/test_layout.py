"""Signing in, the navigation, the language, full pages versus htmx fragments, and the
security headers every screen carries."""

from __future__ import annotations

import re

from .conftest import CSRF, PASSWORD, PageClient, sign_in

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)


def test_sign_in_with_the_form_opens_a_session(loom_app, demo):
    client = PageClient(loom_app.test_client())
    page = client.get("/sign-in")
    assert page.status_code == 200 and 'name="password"' in page.get_data(as_text=True)
    client.token = CSRF.search(page.get_data(as_text=True)).group(1)
    wrong = client.post("/sign-in", {"username": "wang", "password": "not it"})
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.get_data(as_text=True)
    right = client.post("/sign-in", {"username": "wang", "password": PASSWORD, "next": "/r/customer"})
    assert right.status_code == 303 and right.headers["Location"] == "/r/customer"
    assert client.get("/r/customer").status_code == 200


def test_sign_in_refuses_a_post_without_the_csrf_token(loom_app, demo):
    client = loom_app.test_client()
    response = client.post("/sign-in", data={"username": "wang", "password": PASSWORD})
    assert response.status_code == 400 and "Form expired" in response.get_data(as_text=True)


def test_sign_in_never_redirects_to_another_site(loom_app, demo):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        client = PageClient(loom_app.test_client())
        client.token = CSRF.search(client.get("/sign-in").get_data(as_text=True)).group(1)
        response = client.post("/sign-in", {"username": "wang", "password": PASSWORD, "next": target})
        assert response.headers["Location"] == "/"


def test_pages_need_a_session_and_send_back_to_sign_in(loom_app, demo):
    response = loom_app.test_client().get("/r/customer?sort=name")
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/sign-in?next=/r/customer")
    htmx = loom_app.test_client().get("/r/customer", headers={"HX-Request": "true"})
    assert htmx.status_code == 204 and htmx.headers["HX-Redirect"].startswith("/sign-in")


def test_navigation_shows_only_what_the_user_may_read_grouped_by_app(page_client):
    finance = page_client("zhang").get("/").get_data(as_text=True)
    assert "Sales order" in finance and "Customer" in finance and "Product" in finance
    assert "Service ticket" not in finance and "Contact" not in finance
    assert "CRM" in finance and "ERP" in finance
    assert "zhang" in finance and "Sign out" in finance


def test_the_audit_log_link_shows_to_whom_it_is_meant(page_client):
    """The screens' own link comes through the navigation_links hook, for auditors only."""
    assert "Audit log" in page_client("admin").get("/").get_data(as_text=True)
    assert "Audit log" not in page_client("wang").get("/").get_data(as_text=True)


def test_htmx_requests_get_the_fragment_normal_requests_the_page(page_client):
    client = page_client("wang")
    full = client.get("/r/customer")
    fragment = client.hx("/r/customer")
    assert "<html" in full.get_data(as_text=True) and "<html" not in fragment.get_data(as_text=True)
    assert "Acme Trading" in fragment.get_data(as_text=True)
    assert "HX-Request" in full.headers["Vary"]
    restore = client.client.get("/r/customer", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.get_data(as_text=True)


def test_every_page_has_a_strict_policy_and_no_inline_script(page_client, demo):
    client = page_client("admin")
    customer = demo["customers"][0]
    for url in ("/", "/r/customer", "/r/customer/new", f"/r/customer/{customer}",
                f"/r/customer/{customer}/edit", "/r/sales_order/new", "/r/customer/_import"):
        response = client.get(url)
        assert response.status_code == 200, url
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe" not in policy
        html = response.get_data(as_text=True)
        assert not INLINE_SCRIPT.search(html), url
        assert not INLINE_HANDLER.search(html), url


def test_the_language_follows_the_switch_else_the_browser(loom_app, demo):
    anonymous = loom_app.test_client()
    chinese = anonymous.get("/sign-in", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    assert "登录" in chinese
    client = sign_in(loom_app, "wang")
    assert "Customer" in client.get("/").get_data(as_text=True)
    switched = client.post("/language", {"locale": "zh_CN", "next": "/r/customer"})
    assert switched.status_code == 303 and switched.headers["Location"] == "/r/customer"
    page = client.get("/r/customer").get_data(as_text=True)
    assert "客户名称" in page and "退出" in page
    # the choice is kept in the user's profile for the next session
    assert "客户" in sign_in(loom_app, "wang").get("/").get_data(as_text=True)


def test_static_files_are_served_without_signing_in(loom_app):
    client = loom_app.test_client()
    for path in ("/static/loom/vendor/htmx.min.js", "/static/loom/loom.js", "/static/loom/loom.css"):
        with client.get(path) as response:
            assert response.status_code == 200, path


def _nav_entities(html: str) -> list[str]:
    nav = html.split('<nav', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'href="/r/(\w+)"', nav)


def test_the_navigation_keeps_one_order_in_every_language(loom_app, make_user, make_entity, apply_metadata):
    """Labels sort differently in English and Chinese; the navigation follows ``nav_order``,
    then the entities' names, in both."""
    fields = [{"name": "name", "type": "string"}]
    apply_metadata(
        make_entity("kiwi", fields, app="shop", label={"en": "Apples", "zh": "甲"}),
        make_entity("fig", fields, app="shop", label={"en": "Zebras", "zh": "乙"}),
        make_entity("plum", fields, app="shop", label={"en": "Mangoes", "zh": "丙"}, nav_order=1),
        make_entity("lime", fields, app="back", label={"en": "Bananas", "zh": "丁"}, nav_order=5),
    )
    make_user("boss", superuser=True, password=PASSWORD)
    client = sign_in(loom_app, "boss")
    english = _nav_entities(client.get("/").get_data(as_text=True))
    client.post("/language", {"locale": "zh_CN"})
    chinese = _nav_entities(client.get("/").get_data(as_text=True))
    assert english == chinese == ["plum", "fig", "kiwi", "lime"]


def test_lists_are_headed_by_the_plural_label(loom_app, make_user, make_entity, apply_metadata, demo):
    client = sign_in(loom_app, "admin")
    customers = client.get("/r/customer").get_data(as_text=True)
    assert "<h1>Customers</h1>" in customers and "<title>Customers" in customers
    nav = customers.split("<nav", 1)[1].split("</nav>", 1)[0]
    assert re.findall(r'href="/r/\w+"[^>]*>([^<]+)</a>', nav) == [
        "Customers", "Contacts", "Sales orders", "Service tickets", "Products"]
    # without a plural label the singular one heads the list
    apply_metadata(make_entity("depot", [{"name": "name", "type": "string"}], label={"en": "Depot", "zh": "仓库"}))
    assert "<h1>Depot</h1>" in client.get("/r/depot").get_data(as_text=True)
