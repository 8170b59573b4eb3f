"""Giving records to someone else from the screens: the record page's Transfer form, the
list's "Transfer selected to", the administrator's "Transfer all records of a user" with
its preview, and an import's owner column; each refused, with nothing moved, to a user
without the ``transfer`` action; in English and Chinese."""

from __future__ import annotations

import io
import re
import time

import pytest
import sqlalchemy as sa

from .conftest import PASSWORD, browser_sign_in, sign_in

ACCOUNT = [
    {"name": "name", "type": "string", "required": True, "label": {"en": "Name", "zh": "名称"}},
    {"name": "account_manager", "type": "link", "target": "user", "label": {"en": "Account manager", "zh": "客户经理"}},
]


@pytest.fixture
def world(apply_metadata, make_entity, make_user, loom_app):
    account = make_entity("account", ACCOUNT, title_field="name", owner_field="account_manager",
                          label={"en": "Account", "zh": "客户"})
    every = ["read", "create", "update", "import"]
    apply_metadata(account,
                   {"kind": "role", "name": "rep", "permissions": {"account": {"actions": every, "scope": "own"}}},
                   {"kind": "role", "name": "lead",
                    "permissions": {"account": {"actions": [*every, "transfer"], "scope": "own"}}},
                   {"kind": "role", "name": "hr", "admin": ["users"]})
    ids = {"wang": make_user("wang", roles=["rep"], team="east", password=PASSWORD),
           "li": make_user("li", roles=["lead"], team="east", password=PASSWORD),
           "zhao": make_user("zhao", team="east", password=PASSWORD),
           "gone": make_user("gone", team="east", password=PASSWORD),
           "hr": make_user("hr", roles=["hr"], password=PASSWORD),
           "admin": make_user("admin", superuser=True, password=PASSWORD)}
    loom_app.extensions["loom"].identity.update_user(ids["gone"], {"is_active": False}, actor="test")
    return {"ids": ids, "client": lambda name: sign_in(loom_app, name)}


def new_account(client, name):
    response = client.post("/r/account/new", {"name": name})
    assert response.status_code == 303, response.get_data(as_text=True)
    return int(response.headers["Location"].rstrip("/").rsplit("/", 1)[-1])


def owners(engine):
    with engine.connect() as conn:
        return {row.name: (row.account_manager, row.owner) for row in
                conn.execute(sa.text("SELECT name, account_manager, owner FROM e_account"))}


def transfers(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT record_id, outcome FROM loom_audit WHERE action = 'record.transfer' "
                                    "ORDER BY seq")).all()


def test_the_record_page_transfers_to_the_user_picked(world, loom_engine):
    ids = world["ids"]
    lead = world["client"]("li")
    record_id = new_account(lead, "Acme")
    page = lead.get(f"/r/account/{record_id}").get_data(as_text=True)
    assert f'href="/r/account/{record_id}/transfer"' in page
    form = lead.get(f"/r/account/{record_id}/transfer")
    assert form.status_code == 200
    html = form.get_data(as_text=True)
    assert "li owns this record now." in html and 'name="_title.to"' in html
    # the picker suggests active users only
    suggestions = lead.get("/r/account/_link/account_manager?_title.to=").get_data(as_text=True)
    assert "zhao" in suggestions and "gone" not in suggestions

    moved = lead.post(f"/r/account/{record_id}/transfer", {"to": str(ids["zhao"]), "_title.to": "zhao"})
    assert moved.status_code == 303
    # out of the lead's reach now: back to the list, with the news
    assert moved.headers["Location"].endswith("/r/account")
    assert "Transferred to zhao." in lead.get("/r/account").get_data(as_text=True)
    assert owners(loom_engine) == {"Acme": (ids["zhao"], ids["zhao"])}
    assert transfers(loom_engine) == [(record_id, "ok")]


def test_a_refused_transfer_comes_back_to_the_form_in_the_users_language(world, loom_engine):
    ids = world["ids"]
    lead = world["client"]("li")
    record_id = new_account(lead, "Acme")
    typed = lead.post(f"/r/account/{record_id}/transfer", {"to": "", "_title.to": "nobody"})
    assert typed.status_code == 422 and "not one of them" in typed.get_data(as_text=True)
    gone = lead.post(f"/r/account/{record_id}/transfer", {"to": str(ids["gone"])})
    assert gone.status_code == 422
    assert "gone is deactivated and cannot own records." in gone.get_data(as_text=True)
    lead.post("/language", {"locale": "zh_CN"})
    chinese = lead.post(f"/r/account/{record_id}/transfer", {"to": str(ids["gone"])})
    assert chinese.status_code == 422
    text = chinese.get_data(as_text=True)
    assert "已停用" in text and "deactivated" not in text
    assert "转移" in lead.get(f"/r/account/{record_id}").get_data(as_text=True)
    assert owners(loom_engine) == {"Acme": (ids["li"], ids["li"])}


def test_without_transfer_no_screen_gives_a_record_away(world, loom_engine):
    ids = world["ids"]
    rep = world["client"]("wang")
    record_id = new_account(rep, "Mine")
    page = rep.get(f"/r/account/{record_id}").get_data(as_text=True)
    assert "/transfer" not in page
    assert "Transfer selected to" not in rep.get("/r/account").get_data(as_text=True)
    assert rep.get(f"/r/account/{record_id}/transfer").status_code == 403
    assert rep.post(f"/r/account/{record_id}/transfer", {"to": str(ids["zhao"])}).status_code == 403
    bulk = rep.post("/r/account/_bulk/transfer", {"ids": [str(record_id)], "transfer_to": str(ids["zhao"])},
                    htmx="list-results")
    assert bulk.status_code == 403
    # nor the edit form, nor the bulk "Set" of the owner field
    edit = rep.post(f"/r/account/{record_id}/edit", {"name": "Mine", "account_manager": str(ids["zhao"]),
                                                     "version": "1"})
    assert edit.status_code == 422
    setting = rep.post("/r/account/_bulk/update", {"ids": [str(record_id)], "bulk_field": "account_manager",
                                                   "bulk_value": str(ids["zhao"])}, htmx="list-results")
    assert "not changed" in setting.get_data(as_text=True)
    assert rep.get("/admin/transfer").status_code == 403
    assert owners(loom_engine) == {"Mine": (ids["wang"], ids["wang"])}
    assert [outcome for _r, outcome in transfers(loom_engine)] == ["denied", "denied", "denied"]


def test_the_list_transfers_the_selection_all_or_nothing(world, loom_engine):
    ids = world["ids"]
    lead, admin = world["client"]("li"), world["client"]("admin")
    first, second = new_account(lead, "One"), new_account(lead, "Two")
    theirs = new_account(admin, "Theirs")
    listing = lead.get("/r/account").get_data(as_text=True)
    assert "Transfer selected to" in listing and 'name="_title.transfer_to"' in listing

    refused = lead.post("/r/account/_bulk/transfer", {"ids": [str(first), str(theirs)],
                                                       "transfer_to": str(ids["zhao"])}, htmx="list-results")
    assert refused.status_code == 404 and refused.headers["HX-Retarget"] == "#messages"
    assert owners(loom_engine)["One"] == (ids["li"], ids["li"])

    done = lead.post("/r/account/_bulk/transfer", {"ids": [str(first), str(second)],
                                                    "transfer_to": str(ids["zhao"])}, htmx="list-results")
    assert done.status_code == 200 and "Transferred 2 records to zhao." in done.get_data(as_text=True)
    assert done.headers["HX-Trigger"] == "loom:list-changed"
    assert owners(loom_engine) == {"One": (ids["zhao"], ids["zhao"]), "Two": (ids["zhao"], ids["zhao"]),
                                   "Theirs": owners(loom_engine)["Theirs"]}
    assert len([r for r, outcome in transfers(loom_engine) if outcome == "ok"]) == 2


def test_an_administrator_moves_every_record_of_a_user_after_a_preview(world, loom_engine):
    ids = world["ids"]
    zhao = world["client"]("zhao")
    admin = world["client"]("admin")
    for name in ("A", "B", "C"):
        new_account(admin, name)
    admin_id = ids["admin"]
    hr = world["client"]("hr")
    assert "Transfer records" in hr.get("/").get_data(as_text=True)
    assert "Transfer records" not in zhao.get("/").get_data(as_text=True)
    assert zhao.get("/admin/transfer").status_code == 403

    preview = admin.get(f"/admin/transfer?from={admin_id}&to={ids['zhao']}").get_data(as_text=True)
    assert "Accounts" in preview or "Account" in preview
    assert '<td class="number">3</td>' in preview
    assert "gone — deactivated" in preview
    moved = admin.post("/admin/transfer", {"from": str(admin_id), "to": str(ids["zhao"])})
    assert moved.status_code == 303
    after = admin.get(moved.headers["Location"]).get_data(as_text=True)
    assert "Transferred 3 records of admin to zhao." in after
    assert "owns no records you may transfer" in after
    assert set(owners(loom_engine).values()) == {(ids["zhao"], ids["zhao"])}
    # hr manages users but may not transfer accounts: nothing to count, nothing moved
    hr_preview = hr.get(f"/admin/transfer?from={ids['zhao']}").get_data(as_text=True)
    assert "owns no records you may transfer" in hr_preview
    assert hr.post("/admin/transfer", {"from": str(ids["zhao"]), "to": str(admin_id)}).status_code == 403
    # to a deactivated user: refused whole
    refused = admin.post("/admin/transfer", {"from": str(ids["zhao"]), "to": str(ids["gone"])})
    assert refused.status_code == 422
    assert set(owners(loom_engine).values()) == {(ids["zhao"], ids["zhao"])}


# -- import --------------------------------------------------------------------------------------

def _import(client, entity: str, csv_text: str) -> str:
    """Upload ``csv_text``, keep the column mapping Loom proposes, run it; the finished
    progress fragment."""
    uploaded = client.post(f"/r/{entity}/_import", {"file": (io.BytesIO(csv_text.encode()), f"{entity}.csv")},
                           content_type="multipart/form-data")
    assert uploaded.status_code == 303, uploaded.get_data(as_text=True)
    job = int(uploaded.headers["Location"].rstrip("/").rsplit("/", 1)[-1])
    mapping = client.get(f"/r/{entity}/_import/{job}").get_data(as_text=True)
    columns = len(csv_text.splitlines()[0].split(","))
    chosen = {}
    for i in range(columns):
        match = re.search(rf'name="column-{i}".*?<option value="([a-z_]*)" selected', mapping, re.S)
        chosen[f"column-{i}"] = match.group(1) if match else ""
    started = client.post(f"/r/{entity}/_import/{job}", chosen)
    assert started.status_code == 303, started.get_data(as_text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        html = client.hx(f"/r/{entity}/_import/{job}/progress", target="import-progress").get_data(as_text=True)
        if "every 1s" not in html:
            return html
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def test_an_owner_column_needs_transfer_beyond_the_importers_scope(world, loom_engine):
    ids = world["ids"]
    rep, lead = world["client"]("wang"), world["client"]("li")
    text = "Name,Account manager\nMine,wang\nTheirs,zhao\nBy id,{zhao}\nGone,gone\n".format(zhao=ids["zhao"])
    report = _import(rep, "account", text)
    assert "1 imported" in report and "3 rejected" in report, report
    assert owners(loom_engine) == {"Mine": (ids["wang"], ids["wang"])}
    refusal = "Account manager: This change would put the record outside the records you may create.</td>"
    assert report.count(refusal) == 2, report
    assert "Account manager: gone is deactivated and cannot own records." in report

    report = _import(lead, "account", text.replace("Mine", "Lead's").replace("wang", "li"))
    assert "3 imported" in report and "1 rejected" in report, report
    assert owners(loom_engine) == {"Mine": (ids["wang"], ids["wang"]), "Lead's": (ids["li"], ids["li"]),
                                   "Theirs": (ids["zhao"], ids["zhao"]), "By id": (ids["zhao"], ids["zhao"])}
    assert "gone is deactivated and cannot own records." in report
    # the rows given to zhao used the transfer right, and say so in the log
    assert len([r for r, outcome in transfers(loom_engine) if outcome == "ok"]) == 2


def test_the_standard_owner_is_an_import_column_where_it_is_the_owner(apply_metadata, make_entity, make_user,
                                                                      loom_app, loom_engine):
    apply_metadata(make_entity("lead", [{"name": "title", "type": "string"}], title_field="title"),
                   {"kind": "role", "name": "rep", "permissions": {
                       "lead": {"actions": ["read", "create", "import"], "scope": "own"}}})
    wang = make_user("wang", roles=["rep"], team="east", password=PASSWORD)
    make_user("zhao", team="east", password=PASSWORD)
    rep = sign_in(loom_app, "wang")
    assert "Owner" in rep.get("/r/lead/_import").get_data(as_text=True)
    _import(rep, "lead", "Title,Owner\nmine,wang\ntheirs,zhao\n")
    with loom_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT title, owner FROM e_lead")).all()
    assert [tuple(r) for r in rows] == [("mine", wang)]


# -- in a browser --------------------------------------------------------------------------------

@pytest.mark.parametrize(("language", "button", "done"), [("English", "Transfer", "Transferred to Rep."),
                                                          ("中文", "转移", "已转给 Rep。")])
def test_the_record_page_transfer_in_a_browser(page, live_server, screenshots, language, button, done):
    from playwright.sync_api import expect

    with live_server.app.extensions["loom"].engine.connect() as conn:
        rep = conn.execute(sa.text("SELECT id FROM loom_users WHERE username = 'rep'")).scalar()
        # one of someone else's customers for each language
        customer = conn.execute(sa.text("SELECT id FROM e_customer WHERE owner <> :rep ORDER BY id LIMIT 1 OFFSET :n"),
                                {"rep": rep, "n": 0 if language == "English" else 1}).scalar()
    browser_sign_in(page, "boss", language=language)
    page.goto(f"/r/customer/{customer}")
    page.locator("#transfer-record").click()
    expect(page.locator("h1")).to_contain_text(button)
    picker = page.locator("#transfer-to")
    picker.fill("Rep")
    option = page.locator(f"#transfer-to-options [data-pick-id='{rep}']")
    expect(option).to_be_visible()
    option.click()
    expect(picker).to_have_value("Rep")
    page.screenshot(path=screenshots / f"transfer-{'en' if language == 'English' else 'zh'}.png", full_page=True)
    page.locator("#transfer-form button[type=submit]").click()
    expect(page.locator("#messages")).to_contain_text(done)
    expect(page.locator("h1")).not_to_contain_text(button)
    with live_server.app.extensions["loom"].engine.connect() as conn:
        owner = conn.execute(sa.text("SELECT owner FROM e_customer WHERE id = :i"), {"i": customer}).scalar()
    assert owner == rep
