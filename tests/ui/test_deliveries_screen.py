"""The deliveries screens: the list with its status tabs and filters, one delivery with its
attempts, retrying one or a selection, replaying a range after its count, the record
page's panel; in English and Chinese; and nobody but a superuser gets any of it."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

from loom.integrations.models import deliveries
from tests.integrations.test_deliveries_api import (
    T0,
    add_attempt,
    add_delivery,
    audit_entries,
    rows,
)
from tests.ui.conftest import PASSWORD, browser_sign_in, sign_in

XSS = "<script>alert(1)</script>"


@pytest.fixture
def engine(loom_app):
    return loom_app.extensions["loom"].engine


@pytest.fixture
def made(engine, demo):
    """Deliveries of the demo's first customer and of a product, one of each kind."""
    customer, product = demo["customers"][0], demo["products"][0]
    return {
        "dead": add_delivery(engine, status="dead", attempts=8, entity="customer", record_id=customer,
                             rule="push_customers", last_error=f"HTTP 500 {XSS} " + "x" * 300,
                             finished_at=T0 + dt.timedelta(hours=1)),
        "dead2": add_delivery(engine, status="dead", attempts=3, max_attempts=3, entity="customer",
                              record_id=customer, rule="push_customers", last_error="HTTP 404 no such customer"),
        "failed": add_delivery(engine, attempts=2, entity="product", record_id=product, rule="sync_stock",
                               action="erp.push_stock", plugin="loom_erp", last_error="timed out"),
        "succeeded": add_delivery(engine, status="succeeded", attempts=1, entity="customer", record_id=customer,
                                  rule="push_customers", finished_at=T0 + dt.timedelta(hours=2)),
    }


@pytest.fixture
def boss(loom_app, demo):
    return sign_in(loom_app, "admin")          # the demo fixture's superuser


def row_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="delivery-(\d+)"', html)]


def test_the_list_filters_by_status_tab_and_by_rule_and_record(boss, made):
    page = boss.get("/deliveries")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert row_ids(html) == sorted(made.values(), reverse=True)
    assert XSS not in html and "&lt;script&gt;" in html           # errors are escaped ...
    assert re.search(r">HTTP 500 [^<]*x{200}", html) is None and "x…</span>" in html   # ... and shortened
    assert 'href="/deliveries"' in boss.get("/").get_data(as_text=True)     # the navigation links it
    assert row_ids(boss.get("/deliveries?status=dead").get_data(as_text=True)) == [made["dead2"], made["dead"]]
    assert row_ids(boss.get("/deliveries?status=failed").get_data(as_text=True)) == [made["failed"]]
    assert row_ids(boss.get("/deliveries?plugin=loom_erp").get_data(as_text=True)) == [made["failed"]]
    found = boss.get("/deliveries?status=dead&rule=push_customers&entity=customer").get_data(as_text=True)
    assert row_ids(found) == [made["dead2"], made["dead"]]
    # the tabs keep the other filters
    assert 'href="/deliveries?status=succeeded&amp;rule=push_customers&amp;entity=customer"' in found
    assert "3/3" in found and "8/8" in found
    fragment = boss.hx("/deliveries?status=dead")
    assert fragment.status_code == 200 and "<html" not in fragment.get_data(as_text=True)
    bad = boss.get("/deliveries?status=lost")
    assert bad.status_code == 400 and "status" in bad.get_data(as_text=True)


def test_the_list_shows_the_records_with_links_and_loads_more(boss, engine, demo):
    customer = demo["customers"][0]
    made = [add_delivery(engine, entity="customer", record_id=customer) for _ in range(55)]
    html = boss.get("/deliveries").get_data(as_text=True)
    assert row_ids(html) == sorted(made, reverse=True)[:50]
    assert f'href="/r/customer/{customer}"' in html
    more = re.search(r'hx-get="(/deliveries\?cursor=\d+)"', html).group(1)
    rest = boss.hx(more.replace("&amp;", "&"))
    assert row_ids(rest.get_data(as_text=True)) == sorted(made, reverse=True)[50:]


def test_a_delivery_page_shows_its_attempts_and_context(boss, engine, made):
    dead = made["dead"]
    add_attempt(engine, dead, 1, "failed", error="HTTP 503 busy")
    add_attempt(engine, dead, 2, "dead", error=f"HTTP 500 {XSS}")
    html = boss.get(f"/deliveries/{dead}").get_data(as_text=True)
    assert "HTTP 503 busy" in html and "Failed, last attempt" in html and "1000 ms" in html
    assert "&#34;name&#34;: &#34;Order 7&#34;" in html or "&quot;name&quot;: &quot;Order 7&quot;" in html
    assert XSS not in html
    assert f'name="one" value="{dead}"' in html                         # a dead one can be retried
    assert 'name="one"' not in boss.get(f"/deliveries/{made['succeeded']}").get_data(as_text=True)
    assert boss.get(f"/deliveries/{dead + 1000}").status_code == 404


def test_retry_of_one_row_and_of_a_selection(boss, engine, made):
    reply = boss.post("/deliveries/retry", {"one": str(made["dead"]), "ids": [str(made["dead2"])],
                                             "keep.status": "dead"})
    assert reply.status_code == 303 and reply.headers["Location"].endswith("/deliveries?status=dead")
    status = {r["id"]: r["status"] for r in rows(engine)}
    assert status[made["dead"]] == "pending" and status[made["dead2"]] == "dead"   # only the row's button
    page = boss.get("/deliveries?status=dead").get_data(as_text=True)
    assert "1 delivery will be tried again." in page
    reply = boss.post("/deliveries/retry", {"ids": [str(made["dead2"]), str(made["succeeded"])]})
    assert reply.status_code == 303
    status = {r["id"]: r["status"] for r in rows(engine)}
    assert status[made["dead2"]] == "pending" and status[made["succeeded"]] == "succeeded"
    page = boss.get("/deliveries").get_data(as_text=True)
    assert "1 delivery will be tried again." in page and f"#{made['succeeded']} Succeeded" in page
    assert [e["rows"] for e in audit_entries(engine, "delivery.retry")] == [1, 1]
    nothing = boss.post("/deliveries/retry", {}, htmx="main")
    assert nothing.status_code == 400 and "Select one or more deliveries first." in nothing.get_data(as_text=True)


def test_retry_from_the_delivery_page_goes_back_to_it(boss, engine, made):
    reply = boss.post("/deliveries/retry", {"one": str(made["failed"]), "back": "delivery"}, htmx="main")
    assert reply.status_code == 204 and f'"/deliveries/{made["failed"]}"' in reply.headers["HX-Location"]
    assert rows(engine)[2]["max_attempts"] == 10


def test_replay_counts_first_then_sends_new_deliveries(boss, engine, made):
    form = boss.get("/deliveries/replay?since=2026-11-20T00:00&until=2026-11-21T00:00&rule=push_customers")
    html = form.get_data(as_text=True)
    assert form.status_code == 200
    assert "3 deliveries would be sent again." in html and "Replay 3 deliveries" in html
    assert len(rows(engine)) == 4                                        # counting sends nothing
    reply = boss.post("/deliveries/replay", {"since": "2026-11-20T00:00", "until": "2026-11-21T00:00",
                                              "rule": "push_customers"})
    assert reply.status_code == 303
    new = rows(engine)[4:]
    assert len(new) == 3 and {r["status"] for r in new} == {"pending"}
    assert all(r["idempotency_key"].endswith(":replay:1") for r in new)
    assert "3 deliveries will be sent again." in boss.get(reply.headers["Location"]).get_data(as_text=True)
    none = boss.get("/deliveries/replay?since=2030-01-01T00:00&until=2030-01-02T00:00").get_data(as_text=True)
    assert "nothing would be replayed" in none
    bad = boss.get("/deliveries/replay?since=2026-11-21T00:00&until=2026-11-20T00:00")
    assert bad.status_code == 400 and "until" in bad.get_data(as_text=True)


def test_the_record_page_shows_its_deliveries_to_a_superuser_only(boss, page_client, made, demo):
    customer = demo["customers"][0]
    html = boss.get(f"/r/customer/{customer}").get_data(as_text=True)
    panel = html[html.index('id="panel-deliveries"'):]
    assert all(f'href="/deliveries/{made[k]}"' in panel for k in ("dead", "dead2", "succeeded"))
    assert f'href="/deliveries/{made["failed"]}"' not in panel                 # another record's
    assert f"/deliveries?entity=customer&amp;record_id={customer}" in panel
    assert 'id="panel-deliveries"' not in boss.get(f"/r/customer/{demo['customers'][1]}").get_data(as_text=True)
    wang = page_client("wang")                       # owns the customer, may read it
    page = wang.get(f"/r/customer/{customer}").get_data(as_text=True)
    assert "Acme Trading" in page and 'id="panel-deliveries"' not in page and "HTTP 500" not in page


def test_the_screens_speak_chinese(boss, made):
    boss.post("/language", {"locale": "zh_CN", "next": "/deliveries"})
    html = boss.get("/deliveries").get_data(as_text=True)
    assert "投递" in html and "重试所选" in html and "死信" in html
    detail = boss.get(f"/deliveries/{made['dead']}").get_data(as_text=True)
    assert "尝试" in detail and "重试" in detail
    assert "重放" in boss.get("/deliveries/replay").get_data(as_text=True)


@pytest.mark.parametrize("who", ["wang", "zhang", "manager"])
def test_nobody_else_gets_any_delivery_screen(loom_app, make_user, engine, made, demo, who):
    if who == "manager":
        # reads the whole audit log, no superuser; the demo's admin role carries the
        # integrations right, so a role with every other one is tried in tests/plugins/test_settings_screen.py
        make_user("manager", roles=["auditor"], password=PASSWORD)
    client = sign_in(loom_app, who)
    before = rows(engine)
    assert 'href="/deliveries"' not in client.get("/").get_data(as_text=True)
    for url in ("/deliveries", "/deliveries?status=dead", f"/deliveries/{made['dead']}", "/deliveries/replay",
                "/deliveries/replay?since=2026-11-20T00:00&until=2026-11-21T00:00"):
        reply = client.get(url)
        assert reply.status_code == 403, url
        assert "HTTP 500" not in reply.get_data(as_text=True)
    for url, data in (("/deliveries/retry", {"ids": [str(made["dead"])]}),
                      ("/deliveries/retry", {"one": str(made["dead"])}),
                      ("/deliveries/replay", {"since": "2026-11-20T00:00", "until": "2026-11-21T00:00"})):
        assert client.post(url, data).status_code == 403, url
        assert client.post(url, data, htmx="main").status_code == 403, url
    assert rows(engine) == before
    assert audit_entries(engine, "delivery.retry") == [] and audit_entries(engine, "delivery.replay") == []


def test_a_read_only_token_and_a_missing_csrf_token_change_nothing(loom_app, client_for, engine, made):
    token = client_for("admin", read_only=True)
    before = rows(engine)
    assert token.get("/deliveries").status_code == 200               # it reads what its user may
    for url, data in (("/deliveries/retry", {"ids": str(made["dead"])}),
                      ("/deliveries/replay", {"since": "2026-11-20T00:00", "until": "2026-11-21T00:00"})):
        assert token.post(url, data=data).status_code == 403
    boss = sign_in(loom_app, "admin")
    reply = boss.client.post("/deliveries/retry", data={"ids": str(made["dead"])})      # no CSRF token
    assert reply.status_code == 400
    assert rows(engine) == before


# -- in the browser -------------------------------------------------------------------------------

def test_an_admin_filters_to_dead_selects_two_and_retries_them(page, live_server, screenshots):
    engine = live_server.app.extensions["loom"].engine
    with engine.begin() as conn:
        conn.execute(deliveries.delete())
    first, second, third = (add_delivery(engine, status="dead", attempts=8, last_error=f"HTTP 500 number {n}",
                                         rule="browser_rule") for n in range(3))
    browser_sign_in(page, "boss")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deliveries", exact=True).click()
    page.wait_for_url("**/deliveries")
    page.get_by_role("navigation", name="Status").get_by_role("link", name="Dead").click()
    page.wait_for_url("**/deliveries?status=dead")
    assert page.locator("#deliveries-rows tr[id^=delivery-]").count() == 3
    retry = page.get_by_role("button", name="Retry selected")
    assert retry.is_disabled()
    page.get_by_label(f"Select delivery {first}").check()
    page.get_by_label(f"Select delivery {third}").check()
    assert page.locator("[data-selected-count]").inner_text() == "2"
    page.screenshot(path=screenshots / "deliveries-dead.png", full_page=True)
    retry.click()
    page.get_by_text("2 deliveries will be tried again.").wait_for()
    assert page.url.endswith("/deliveries?status=dead")
    assert [int(i) for i in page.locator("#deliveries-rows tr[id^=delivery-] td.card-title").all_inner_texts()] \
        == [second]
    page.get_by_role("navigation", name="Status").get_by_role("link", name="Pending").click()
    page.wait_for_url("**/deliveries?status=pending")
    pending = page.locator("#deliveries-rows tr[id^=delivery-]")
    assert sorted(int(t) for t in pending.locator("td.card-title").all_inner_texts()) == [first, third]
    assert pending.locator(".delivery-status").all_inner_texts() == ["Pending, to retry"] * 2
    page.locator(f"#delivery-{first} td.card-title a").click()
    page.wait_for_url(f"**/deliveries/{first}")
    page.get_by_role("heading", name=f"Delivery {first}").wait_for()
    page.screenshot(path=screenshots / "delivery.png", full_page=True)
    with engine.connect() as conn:
        status = dict(conn.execute(sa.select(deliveries.c.id, deliveries.c.status)).all())
    assert status == {first: "pending", second: "dead", third: "pending"}
