"""One time format per medium: the screens show every time in the interface's time zone in
one format (one helper), the API and exports give ISO 8601 with an offset."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from importlib.resources import files

import pytest

from tests.ui.conftest import PASSWORD, sign_in

#: the screens' format: local date, time and zone name (seconds where the audit needs them)
SCREEN_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)? CST")
#: an ISO 8601 time as it appears in text
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d[^\s<\"',]*")


def _with_offset(text: str) -> bool:
    return dt.datetime.fromisoformat(text).utcoffset() is not None


def _visible(html: str) -> str:
    """The page's text, without tags (and so without attributes such as datetime=...)."""
    return re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S))


@pytest.fixture
def meeting(loom_app, apply_metadata, make_entity, make_user, loom_client):
    apply_metadata(make_entity("meeting", [{"name": "title", "type": "string"},
                                           {"name": "starts_at", "type": "datetime"}], title_field="title"))
    created = loom_client.post("/api/v1/meeting", json={"title": "Kick-off", "starts_at": "2026-03-01T10:00:00+08:00"})
    assert created.status_code == 201, created.get_json()
    record = created.get_json()["data"]
    assert loom_client.patch(f"/api/v1/meeting/{record['id']}", json={"title": "Kick-off 2"}).status_code == 200
    make_user("auditor_ann", superuser=True, password=PASSWORD)
    loom_app.extensions["babel"].default_timezone = "Asia/Shanghai"
    return record


def test_the_screens_show_every_time_in_the_local_format(loom_app, meeting):
    ann = sign_in(loom_app, "auditor_ann")
    for url in (f"/r/meeting/{meeting['id']}", "/r/meeting", "/audit", "/audit/1"):
        text = _visible(ann.get(url).get_data(as_text=True))
        assert SCREEN_TIME.search(text), url
        assert not ISO_TIME.search(text), (url, ISO_TIME.search(text))
    assert "2026-03-01 10:00 CST" in _visible(ann.get(f"/r/meeting/{meeting['id']}").get_data(as_text=True))


def test_no_template_formats_a_time_itself():
    """Every template shows times through ``local_time`` (or ``display``), never its own format."""
    folder = files("loom.ui").joinpath("templates")
    for template in folder.iterdir():
        text = template.read_text(encoding="utf-8")
        assert "strftime" not in text and "isoformat" not in text, template.name


def test_the_api_and_the_exports_give_iso_times_with_an_offset(loom_app, meeting, loom_client):
    record = loom_client.get(f"/api/v1/meeting/{meeting['id']}").get_json()["data"]
    for name in ("created_at", "updated_at", "starts_at"):
        assert _with_offset(record[name]), (name, record[name])
    assert dt.datetime.fromisoformat(record["starts_at"]) == dt.datetime(2026, 3, 1, 2, tzinfo=dt.UTC)
    entries = loom_client.get("/api/v1/_audit?entity=meeting").get_json()["data"]
    assert entries and all(_with_offset(e["at"]) for e in entries)

    rows = list(csv.DictReader(io.StringIO(loom_client.get("/api/v1/meeting/_export?format=csv")
                                           .get_data(as_text=True).lstrip("\ufeff"))))
    assert all(_with_offset(r[name]) for r in rows for name in ("created_at", "updated_at", "starts_at"))
    lines = loom_client.get("/api/v1/meeting/_export?format=jsonl").get_data(as_text=True).splitlines()
    assert all(_with_offset(json.loads(line)["starts_at"]) for line in lines)
    audit = list(csv.DictReader(io.StringIO(loom_client.get("/api/v1/_audit/_export?format=csv")
                                            .get_data(as_text=True).lstrip("\ufeff"))))
    assert audit and all(_with_offset(r["at"]) for r in audit)

    ann = sign_in(loom_app, "auditor_ann")
    screen_csv = ann.get("/r/meeting/_export?format=csv").get_data(as_text=True).lstrip("\ufeff")
    times = ISO_TIME.findall(screen_csv)
    assert len(times) >= 3 and all(_with_offset(t) for t in times)
    assert not SCREEN_TIME.search(screen_csv)
