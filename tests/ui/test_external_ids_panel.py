"""The record page's "External ids" panel: the record's ids in other systems, in both
languages, for whoever may read the record, and only when it has some."""

from __future__ import annotations

import re

from loom.records import external_ids

from .conftest import PASSWORD, sign_in


def _panel(html: str) -> str | None:
    found = re.search(r'<section class="card plugin-panel" id="panel-external-ids">(.*?)</section>', html, re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split()) if found else None


def test_the_panel_lists_each_system_and_id_in_english_and_chinese(loom_app, loom_engine, apply_metadata,
                                                                     make_entity, make_user, client_for):
    apply_metadata(
        make_entity("supplier", [{"name": "name", "type": "string"}], title_field="name"),
        {"kind": "role", "name": "reader", "permissions": {"supplier": {"actions": ["read"], "scope": "own"}}},
    )
    make_user("boss", superuser=True, password=PASSWORD)
    make_user("other", roles=["reader"], password=PASSWORD)
    api = client_for("boss")
    linked = api.post("/api/v1/supplier", json={"name": "Linked"}).get_json()["data"]["id"]
    plain = api.post("/api/v1/supplier", json={"name": "Plain"}).get_json()["data"]["id"]
    external_ids.link(loom_engine, "erp", "supplier", "S/<b>42</b>", linked, "test")
    external_ids.link(loom_engine, "dialer", "supplier", "供应商-7", linked, "test")

    boss = sign_in(loom_app, "boss")
    page = boss.get(f"/r/supplier/{linked}").get_data(as_text=True)
    assert _panel(page) == "External ids System Id there dialer 供应商-7 erp S/<b>42</b>".replace(
        "<b>", "&lt;b&gt;").replace("</b>", "&lt;/b&gt;")
    assert "<b>42</b>" not in page  # the id is shown as text, never as markup
    assert _panel(boss.get(f"/r/supplier/{plain}").get_data(as_text=True)) is None  # no links: no panel

    boss.post("/language", {"locale": "zh_CN", "next": "/"})
    zh = _panel(boss.get(f"/r/supplier/{linked}").get_data(as_text=True))
    assert zh is not None and zh.startswith("外部编号 外部系统 对方编号 dialer 供应商-7 erp")

    # someone who may not read the record sees no page, so no panel and no ids
    denied = sign_in(loom_app, "other").get(f"/r/supplier/{linked}")
    assert denied.status_code == 404 and "供应商-7" not in denied.get_data(as_text=True)
