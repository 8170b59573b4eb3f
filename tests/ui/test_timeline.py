"""A record's timeline reads as a person would tell it: labels, option labels in the
interface language, formatted money, linked records by title (only those the reader may
read) and child rows compared one by one, in English and in Chinese."""

from __future__ import annotations

import re

import pytest

from tests.ui.conftest import PASSWORD, sign_in


def _timeline(html: str) -> str:
    """The timeline's text: tags removed, spaces collapsed, none before punctuation or
    after full-width punctuation."""
    part = html[html.index('id="record-timeline"'):]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", part))
    return re.sub(r"([：，]) ", r"\1", re.sub(r" ([:,：，])", r"\1", text))


@pytest.fixture
def job(apply_metadata, make_entity, loom_client, make_user):
    """A job with a select, money, a link and order-like lines, changed once; the reader
    ``rita`` may read jobs and only the part ``Bolt`` (not ``Nut``), ``sam`` reads all."""
    part = make_entity("part", [{"name": "name", "type": "string", "label": {"en": "Name", "zh": "名称"}},
                                {"name": "secret", "type": "boolean"}],
                       title_field="name", label={"en": "Part", "zh": "零件"})
    line = make_entity("job_line", [
        {"name": "part", "type": "link", "target": "part", "label": {"en": "Part", "zh": "零件"}},
        {"name": "quantity", "type": "integer", "label": {"en": "Quantity", "zh": "数量"}}], child=True)
    job = make_entity("job", [
        {"name": "title", "type": "string"},
        {"name": "stage", "type": "select", "label": {"en": "Stage", "zh": "阶段"},
         "options": [{"value": "draft", "label": {"en": "Draft", "zh": "草稿"}},
                     {"value": "submitted", "label": {"en": "Submitted", "zh": "已提交"}}]},
        {"name": "price", "type": "money", "currency": "CNY", "label": {"en": "Price", "zh": "价格"}},
        {"name": "supplier", "type": "link", "target": "part", "label": {"en": "Supplier", "zh": "供应商"}},
        {"name": "lines", "type": "table", "target": "job_line", "label": {"en": "Lines", "zh": "明细"}}],
        title_field="title")
    role = {"kind": "role", "name": "job_reader", "permissions": {
        "job": {"actions": ["read"]},
        "job_line": {"actions": ["read"]},
        "part": {"actions": ["read"], "scope": {"where": {"secret": {"eq": False}}}}}}
    apply_metadata(part, line, job, role)
    bolt = loom_client.post("/api/v1/part", json={"name": "Bolt", "secret": False}).get_json()["data"]["id"]
    nut = loom_client.post("/api/v1/part", json={"name": "Nut", "secret": True}).get_json()["data"]["id"]
    created = loom_client.post("/api/v1/job", json={
        "title": "Fit-out", "stage": "draft", "price": "1234.5", "supplier": bolt,
        "lines": [{"part": bolt, "quantity": 3}, {"part": nut, "quantity": 1}]}).get_json()["data"]
    first, second = created["lines"]
    changed = loom_client.patch(f"/api/v1/job/{created['id']}", json={
        "stage": "submitted", "price": "20000", "supplier": nut,
        "lines": [{"id": first["id"], "quantity": 5}, {"part": bolt, "quantity": 7}]})
    assert changed.status_code == 200, changed.get_json()
    make_user("rita", roles=["job_reader"], password=PASSWORD)
    make_user("sam", superuser=True, password=PASSWORD)
    return {"id": created["id"], "bolt": bolt, "nut": nut}


def test_the_timeline_shows_labels_formatted_values_titles_and_row_changes(loom_app, job):
    text = _timeline(sign_in(loom_app, "sam").get(f"/r/job/{job['id']}").get_data(as_text=True))
    assert "Stage: Draft → Submitted" in text
    assert "Price: 1,234.50 CNY → 20,000.00 CNY" in text
    assert "Supplier: Bolt → Nut" in text
    assert "line 1: Quantity 3 → 5" in text
    assert "line 2 added: Part Bolt, Quantity 7" in text
    assert "line 2 removed: Part Nut, Quantity 1" in text
    assert "draft" not in text and "1234.50" not in text and '"part"' not in text and "&#34;" not in text


def test_a_linked_record_the_reader_may_not_read_is_shown_by_id(loom_app, job):
    text = _timeline(sign_in(loom_app, "rita").get(f"/r/job/{job['id']}").get_data(as_text=True))
    assert f"Supplier: Bolt → #{job['nut']}" in text
    assert f"line 2 removed: Part #{job['nut']}" in text
    assert "Nut" not in text


def test_the_timeline_in_chinese(loom_app, job):
    sam = sign_in(loom_app, "sam")
    assert sam.post("/language", {"locale": "zh_CN"}).status_code == 303
    html = sam.get(f"/r/job/{job['id']}").get_data(as_text=True)
    text = _timeline(html)
    assert "阶段：草稿 → 已提交" in text
    assert "供应商：Bolt → Nut" in text
    assert "第 1 行：数量 3 → 5" in text
    assert "新增第 2 行：零件 Bolt，数量 7" in text
    assert "删除第 2 行：零件 Nut，数量 1" in text
    assert "Draft" not in text and "Submitted" not in text
