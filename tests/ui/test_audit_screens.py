"""The auditor's screens (log, filters, entry diff, chain check) and a record's history
on its page, limited to what the reader may see."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from tests.ui.conftest import PASSWORD, sign_in

XSS = "<script>alert(1)</script>\"'{{7*7}}"


@pytest.fixture
def auditor(loom_app, demo, make_user):
    make_user("audrey", roles=["auditor"], password=PASSWORD)
    return sign_in(loom_app, "audrey")


def test_the_auditor_filters_the_log_and_opens_an_entry_with_its_diff(auditor, page_client, demo):
    wang = page_client("wang")
    customer = demo["customers"][0]
    form = wang.get(f"/r/customer/{customer}/edit").get_data(as_text=True)
    assert "Acme Trading" in form
    home = auditor.get("/").get_data(as_text=True)
    assert "/audit" in home                       # the navigation links the log for auditors
    page = auditor.get("/audit?entity=customer").get_data(as_text=True)
    assert "record.create" in page and "Acme Trading" not in page
    rows = auditor.hx("/audit?entity=customer&action=record.create")
    assert rows.status_code == 200
    assert "<html" not in rows.get_data(as_text=True)      # htmx gets the fragment
    bad = auditor.get("/audit?since=not-a-date")
    assert bad.status_code == 400 and "since" in bad.get_data(as_text=True)


def test_entry_page_shows_before_and_after_escaped(auditor, loom_app, demo):
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    with loom_app.app_context():
        service = RecordService(record_context(Principal.system("test")), "customer")
        service.update(demo["customers"][1], {"name": XSS})
        with loom_app.extensions["loom"].engine.connect() as conn:
            seq = conn.exec_driver_sql("SELECT max(seq) FROM loom_audit WHERE action = 'record.update'").scalar()
    html = auditor.get(f"/audit/{seq}").get_data(as_text=True)
    assert "Beta Logistics" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert 'class="before"' in html and 'class="after"' in html


def test_the_chain_check_button_reports_the_result(auditor):
    reply = auditor.post("/audit/verify", htmx="verify-result")
    assert reply.status_code == 200
    assert "The chain is intact" in reply.get_data(as_text=True)


def test_others_get_no_audit_screens(page_client):
    wang = page_client("wang")
    assert "/audit" not in wang.get("/").get_data(as_text=True)
    assert wang.get("/audit").status_code == 403


def test_the_record_page_shows_its_history_without_unreadable_fields(loom_app, page_client, demo):
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    customer = demo["customers"][0]
    with loom_app.app_context():
        service = RecordService(record_context(Principal.system("test")), "customer")
        service.update(customer, {"credit_limit": "654321.00", "name": "Acme Wholesale"})
    liu = page_client("liu")          # a service agent: may not read the credit limit
    html = liu.get(f"/r/customer/{customer}").get_data(as_text=True)
    assert 'id="record-timeline"' in html
    assert "654321" not in html and "654,321" not in html
    assert "Acme Trading" in html and "Acme Wholesale" in html     # the rename, before and after


def test_the_log_shows_labels_and_local_times_not_codes(loom_app, auditor, demo):
    """Actions, entities and fields by their labels (in the interface language), times in
    the configured time zone, hashes shortened with the whole value on hover."""
    loom_app.extensions["babel"].default_timezone = "Asia/Shanghai"
    from loom.audit import reading
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    with loom_app.app_context():
        RecordService(record_context(Principal.system("test")), "customer").update(
            demo["customers"][0], {"level": "B"})
        with loom_app.extensions["loom"].engine.connect() as conn:
            seq = conn.exec_driver_sql("SELECT max(seq) FROM loom_audit WHERE action = 'record.update'").scalar()
        at = reading.get(loom_app.extensions["loom"].engine, seq)["at"]
    local = dt.datetime.fromisoformat(at).astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S")
    log = auditor.get("/audit").get_data(as_text=True)
    assert ">Signed in<" in log and ">Record changed<" in log and ">Customer #" in log
    assert ">auth.sign_in<" not in log and ">customer #" not in log
    assert f"{local} CST" in log and "Time (UTC)" not in log
    assert '<option value="customer" label="Customer">' in log          # the filters suggest codes by label
    assert '<option value="auth.sign_in" label="Signed in">' in log
    entry = auditor.get(f"/audit/{seq}").get_data(as_text=True)
    assert f"{local} CST" in entry and "Record changed" in entry
    assert '<th scope="row">Level</th>' in entry and '<th scope="row">level</th>' not in entry
    full = re.search(r'<code class="hash" title="([0-9a-f]{64})">([0-9a-f]{12})…</code>', entry)
    assert full and full.group(1).startswith(full.group(2))
    assert auditor.post("/language", {"locale": "zh_CN"}).status_code == 303
    chinese = auditor.get("/audit").get_data(as_text=True)
    assert ">登录<" in chinese and ">记录已修改<" in chinese and ">客户 #" in chinese


def test_an_auditors_home_lists_the_audit_log(auditor):
    home = auditor.get("/").get_data(as_text=True)
    assert "There is nothing here you may open yet" not in home
    assert 'id="home-links"' in home and 'href="/audit"' in home


def test_a_user_with_nothing_to_open_is_told_so(loom_app, demo, make_user):
    make_user("nobody", password=PASSWORD)
    home = sign_in(loom_app, "nobody").get("/").get_data(as_text=True)
    assert "There is nothing here you may open yet" in home and 'id="home-links"' not in home


def test_a_user_with_only_admin_rights_is_shown_what_they_may_use(loom_app, demo, make_user, apply_metadata):
    loom = loom_app.extensions["loom"]
    documents = [*loom.metadata.live().model.documents,
                 {"kind": "role", "name": "user_admin", "admin": ["users", "teams"]}]
    apply_metadata(*documents)
    make_user("uma", roles=["user_admin"], password=PASSWORD)
    home = sign_in(loom_app, "uma").get("/").get_data(as_text=True)
    assert "There is nothing here you may open yet" not in home
    assert 'id="home-admin-areas"' in home and "/api/v1/_admin/users" in home and "/api/v1/_admin/teams" in home
    assert "/api/v1/_admin/roles" not in home
