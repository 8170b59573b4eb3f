"""Every screen in the Chinese interface is Chinese: a generated app's home, lists, record
page, forms, import, audit log and entry, sign-in, error pages and refusals show no
untranslated interface text, and the catalogue uses full-width punctuation."""

from __future__ import annotations

import html
import re
from importlib.resources import files

import pytest
from babel.messages.pofile import read_po

from .conftest import CSRF, PASSWORD, PageClient, sign_in

#: what may stay in Latin letters on a Chinese screen: names, codes and formats
ALLOWED = {"ID", "CSV", "Excel", "xlsx", "csv", "UTF-8", "GB18030", "KB", "MB", "Loom", "English", "JSON",
           "http", "https", "name@example.com", "CNY", "UTC", "API", "SHA",
           "locale", "en", "zh", "zh_CN"}  # a user's language setting, as stored
#: the values the test creates, which the screens show as they are
DATA = ("Harbour Office", "North Wing", "Alice Example", "Bob Example", "reader", "keeper", "office", "desk",
        "room", "A-101", "B-202", "admin")

#: what a browser sends when it opens an address
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
#: markup, and codes shown as they are stored (<code>: action and detail keys)
TAG = re.compile(r"<(script|style|code)\b.*?</\1>|<[^>]+>", re.S)
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’-]*(?:[ \t]+[A-Za-z][A-Za-z'’-]*)+")


def visible_text(page: str) -> str:
    """The text a reader sees, plus the attributes a screen reader or a tooltip shows."""
    spoken = " · ".join(re.findall(r'\b(?:title|aria-label|placeholder|alt)="([^"]*)"', page))
    text = TAG.sub(" ", page) + " " + spoken
    text = html.unescape(text)
    for value in DATA:
        text = text.replace(value, " ")
    return text


def english_runs(page: str) -> list[str]:
    """Runs of two or more English words left on the page, other than allowed tokens."""
    runs = []
    for run in ENGLISH_RUN.findall(visible_text(page)):
        words = [w for w in run.split() if w not in ALLOWED]
        if len(words) >= 2:
            runs.append(run)
    return runs


def ascii_punctuation(page: str) -> list[str]:
    """ASCII : , ; next to Chinese text (a Chinese sentence uses the full-width marks)."""
    return re.findall(r"[\u4e00-\u9fff][:,;]|[:,;][ ]?[\u4e00-\u9fff]", visible_text(page))


@pytest.fixture
def office_app(loom_app, apply_metadata, make_entity, make_user):
    """A generated app with Chinese labels: offices with desks (a link), rooms as a child
    table; a keeper who may do everything and a reader who may only read offices."""
    zh = lambda en, cn: {"en": en, "zh": cn}  # noqa: E731
    apply_metadata(
        make_entity("office", [
            {"name": "name", "type": "string", "label": zh("Name", "名称"), "required": True, "unique": True},
            {"name": "kind", "type": "select", "label": zh("Kind", "类型"),
             "options": [{"value": "head", "label": zh("Head office", "总部")},
                         {"value": "branch", "label": zh("Branch", "分部")}]},
            {"name": "opened", "type": "date", "label": zh("Opened", "启用日期")},
            {"name": "rent", "type": "money", "label": zh("Rent", "租金")},
            {"name": "rooms", "type": "table", "target": "room", "label": zh("Rooms", "房间")},
        ], title_field="name", app="estate",
           label=zh("Office", "办公室"), label_plural=zh("Offices", "办公室")),
        make_entity("room", [{"name": "code", "type": "string", "label": zh("Code", "编号")}],
                    label=zh("Room", "房间"), child=True),
        make_entity("desk", [
            {"name": "label", "type": "string", "label": zh("Label", "标签"), "required": True},
            {"name": "office", "type": "link", "target": "office", "label": zh("Office", "办公室")},
        ], title_field="label", app="estate", label=zh("Desk", "工位"), label_plural=zh("Desks", "工位")),
        {"kind": "role", "name": "keeper", "label": zh("Keeper", "管理员"),
         "permissions": {"office": {"actions": ["read", "create", "update", "delete", "import", "export"]},
                         "desk": {"actions": ["read", "create", "update", "delete", "import", "export"]}},
         "admin": ["audit"]},
        {"kind": "role", "name": "reader", "label": zh("Reader", "读者"),
         "permissions": {"office": {"actions": ["read"]}}},
    )
    make_user("keeper", roles=["keeper"], password=PASSWORD)
    make_user("reader", roles=["reader"], password=PASSWORD)
    return loom_app


def chinese(app, username: str) -> PageClient:
    client = sign_in(app, username)
    assert client.post("/language", {"locale": "zh_CN", "next": "/"}).status_code == 303
    client.token = CSRF.search(client.get("/").get_data(as_text=True)).group(1)
    return client


def check(page: str, where: str) -> None:
    assert not english_runs(page), f"{where}: untranslated {english_runs(page)}"
    assert not ascii_punctuation(page), f"{where}: ASCII punctuation in {ascii_punctuation(page)}"


def test_every_screen_is_chinese_in_the_chinese_interface(office_app):
    keeper = chinese(office_app, "keeper")
    created = keeper.post("/r/office/new", {"name": "Harbour Office", "kind": "head", "opened": "2024-01-02",
                                            "rent": "1200.50", "rooms.row": "a", "rooms.a.code": "A-101"})
    assert created.status_code == 303, created.get_data(as_text=True)
    office = int(created.headers["Location"].rstrip("/").split("/")[-1])
    desk = keeper.post("/r/desk/new", {"label": "North Wing", "office": str(office)})
    assert desk.status_code == 303, desk.get_data(as_text=True)
    edited = keeper.post(f"/r/office/{office}/edit", {"name": "Harbour Office", "kind": "branch", "version": "1",
                                                      "rent": "1300", "rooms.row": "a", "rooms.a.code": "B-202"})
    assert edited.status_code == 303, edited.get_data(as_text=True)

    screens = {"home": "/", "offices": "/r/office", "desks": "/r/desk", "record": f"/r/office/{office}",
               "new form": "/r/office/new", "edit form": f"/r/office/{office}/edit", "import": "/r/office/_import",
               "audit log": "/audit", "filtered audit log": "/audit?since=2020-01-01&until=2999-01-01",
               "unknown entity": "/r/nosuch", "unknown record": "/r/office/999999", "unknown page": "/no/such/page",
               "unknown audit entry": "/audit/99999999"}
    for where, url in screens.items():
        response = keeper.get(url, headers={"Accept": BROWSER_ACCEPT})
        assert response.status_code in (200, 404), (where, response.status_code)
        check(response.get_data(as_text=True), where)
    log = keeper.get("/audit").get_data(as_text=True)
    for seq in sorted(set(re.findall(r'href="/audit/(\d+)"', log)))[:8]:
        check(keeper.get(f"/audit/{seq}").get_data(as_text=True), f"audit entry {seq}")

    reader = chinese(office_app, "reader")
    for where, url in {"refused form": "/r/office/new", "refused edit": f"/r/office/{office}/edit",
                       "refused list": "/r/desk", "refused audit log": "/audit",
                       "refused import": "/r/office/_import"}.items():
        response = reader.get(url)
        assert response.status_code in (403, 404), (where, response.status_code)
        check(response.get_data(as_text=True), where)
    refused = reader.post(f"/r/office/{office}/delete", {"version": "2"})
    assert refused.status_code == 403
    check(refused.get_data(as_text=True), "refused delete")
    refused = reader.post(f"/r/office/{office}/delete", {"version": "2"}, htmx="main")
    check(refused.get_data(as_text=True), "refused delete (htmx)")

    # a link still held by a desk: the conflict is told whole, in Chinese
    conflict = keeper.post(f"/r/office/{office}/delete", {"version": "2"})
    assert conflict.status_code == 409, conflict.get_data(as_text=True)
    check(conflict.get_data(as_text=True), "delete conflict")


def test_the_sign_in_page_is_chinese_for_a_chinese_browser(office_app):
    client = office_app.test_client()
    page = client.get("/sign-in", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(as_text=True)
    check(page, "sign-in")
    token = CSRF.search(page).group(1)
    wrong = client.post("/sign-in", data={"username": "keeper", "password": "wrong", "csrf_token": token},
                        headers={"Accept-Language": "zh-CN"})
    check(wrong.get_data(as_text=True), "failed sign-in")


def test_a_refusal_is_translated_whole(office_app):
    reader = chinese(office_app, "reader")
    page = reader.get("/audit").get_data(as_text=True)
    assert "无权操作" in page and "audit log" not in page and "needs" not in page
    page = reader.get("/r/nosuch").get_data(as_text=True)
    assert "nosuch" in page and "there is no entity" not in page


def test_an_unknown_address_is_an_error_page_for_a_browser_and_a_problem_for_the_api(office_app):
    keeper = chinese(office_app, "keeper")
    page = keeper.get("/no/such/page", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 404 and "<html" in page.get_data(as_text=True)
    assert "未找到" in page.get_data(as_text=True) or "没有" in page.get_data(as_text=True)
    api = keeper.get("/api/v1/no/such/thing", headers={"Accept": BROWSER_ACCEPT})
    assert api.status_code == 404 and api.mimetype == "application/problem+json"


def test_the_audit_time_filter_says_before_a_day_not_before_a_change(office_app):
    keeper = chinese(office_app, "keeper")
    page = keeper.get("/audit").get_data(as_text=True)
    label = re.search(r'<label for="audit-until">([^<]*)<', page).group(1).strip()
    assert label in ("早于", "之前", "截至")
    assert "修改前" not in label


def test_the_catalogue_uses_full_width_punctuation_in_chinese():
    base = files("loom.ui") / "translations" / "zh_CN" / "LC_MESSAGES"
    with open(base / "messages.po", "rb") as po:
        catalogue = read_po(po, locale="zh_CN")
    # placeholders, markup and web addresses keep their ASCII characters
    kept = re.compile(r"%\(\w+\)[sd]|%[sd]|<[^>]+>|https?://\S*|\{\w+\}")
    wrong = []
    for message in catalogue:
        if not message.id:
            continue
        for text in message.string if isinstance(message.string, tuple) else (message.string,):
            if re.search(r"[:,;()]", kept.sub("", text or "")):
                wrong.append(text)
    assert not wrong, wrong
