"""The auditor's API (filters, cursor, export, chain check), a record's history as its
readers see it, and alert rules declared in metadata."""

from __future__ import annotations

import csv
import io
import json

import pytest
import sqlalchemy as sa

from loom.metadata.loader import load_text


@pytest.fixture
def app_with_roles(apply_metadata, make_entity, make_user):
    """A deal entity with a margin field reps may not read, an auditor, and an alert rule."""
    documents = [
        make_entity("deal", [{"name": "title", "type": "string"}, {"name": "amount", "type": "money"},
                             {"name": "margin", "type": "percent"}], title_field="title"),
        {"kind": "role", "name": "rep", "permissions": {
            "deal": {"actions": ["read", "create", "update", "export"], "scope": "own",
                     "fields": {"margin": "none"}}}},
        {"kind": "role", "name": "auditor", "admin": ["audit"]},
        {"kind": "alert", "name": "bulk_deal_export", "match": {"action": "record.export", "entity": "deal"},
         "measure": "rows", "threshold": 5, "window": "10m", "severity": "high",
         "label": {"en": "Bulk export of deals", "zh": "批量导出商机"}},
        {"kind": "alert", "name": "password_guessing", "match": {"action": "auth.sign_in_failed"},
         "threshold": 3, "window": "5m"},
    ]
    apply_metadata(*documents)
    make_user("rep1", roles=["rep"])
    make_user("rep2", roles=["rep"])
    make_user("audrey", roles=["auditor"])


def test_the_auditor_reads_filters_and_pages_the_whole_log(app_with_roles, client_for):
    rep = client_for("rep1")
    ids = [rep.post("/api/v1/deal", json={"title": f"d{i}"}).get_json()["data"]["id"]
           for i in range(5)]
    rep.patch(f"/api/v1/deal/{ids[0]}", json={"title": "renamed"})
    auditor = client_for("audrey")
    page = auditor.get("/api/v1/_audit?entity=deal&limit=4").get_json()
    assert [e["action"] for e in page["data"]] == ["record.update"] + ["record.create"] * 3
    assert page["data"][0]["changes"] == {"title": ["d0", "renamed"]}
    assert set(page["data"][0]) >= {"id", "at", "actor", "ip", "user_agent", "request_id", "action", "entity",
                                    "record_id", "changes", "outcome", "hash", "prev_hash"}
    assert page["data"][0]["at"].endswith("Z") and len(page["data"][0]["at"]) == 24
    rest = auditor.get(f"/api/v1/_audit?entity=deal&limit=4&cursor={page['next_cursor']}").get_json()
    assert len(rest["data"]) == 2 and rest["next_cursor"] is None
    assert [e["id"] for e in page["data"] + rest["data"]] == sorted((e["id"] for e in page["data"] + rest["data"]),
                                                                    reverse=True)
    assert len(auditor.get(f"/api/v1/_audit?record_id={ids[0]}&entity=deal").get_json()["data"]) == 2
    assert auditor.get("/api/v1/_audit?actor=rep1&action=record.*").get_json()["data"]
    assert auditor.get("/api/v1/_audit?actor=nobody").get_json()["data"] == []
    assert auditor.get("/api/v1/_audit?since=2000-01-01&until=2000-02-01").get_json()["data"] == []
    entry = auditor.get(f"/api/v1/_audit/{page['data'][0]['id']}").get_json()
    assert entry == page["data"][0]
    # the auditor reads the log, not the records
    assert auditor.get("/api/v1/deal").status_code == 403


@pytest.mark.parametrize(("query", "field"), [("since=yesterday", "since"), ("limit=0", "limit"),
                                               ("outcome=maybe", "outcome"), ("record_id=x", "record_id"),
                                               ("cursor=abc", "cursor"), ("colour=red", "colour")])
def test_bad_filters_get_a_400_naming_them(app_with_roles, client_for, query, field):
    reply = client_for("audrey").get(f"/api/v1/_audit?{query}")
    assert reply.status_code == 400
    assert reply.get_json()["errors"][0]["field"] == field


def test_export_streams_csv_and_json_lines_and_is_itself_logged(app_with_roles, client_for, loom_engine):
    rep = client_for("rep1")
    for i in range(3):
        rep.post("/api/v1/deal", json={"title": f"=cmd|{i}"})
    auditor = client_for("audrey")
    lines = auditor.get("/api/v1/_audit/_export?format=jsonl&entity=deal").get_data(as_text=True).splitlines()
    assert [json.loads(line)["changes"]["title"][1] for line in lines] == ["=cmd|0", "=cmd|1", "=cmd|2"]
    table = list(csv.reader(io.StringIO(auditor.get("/api/v1/_audit/_export?entity=deal").get_data(as_text=True))))
    assert table[0][:3] == ["id", "at", "actor"] and len(table) == 4
    with loom_engine.connect() as conn:
        exports = conn.execute(sa.text("SELECT rows, actor FROM loom_audit WHERE action = 'audit.export'")).all()
    assert [tuple(r) for r in exports] == [(3, "audrey"), (3, "audrey")]


def test_a_records_history_shows_only_what_its_reader_may_read(app_with_roles, client_for, loom_client):
    rep = client_for("rep1")
    deal = rep.post("/api/v1/deal", json={"title": "Big one", "amount": "100.00"}).get_json()["data"]
    loom_client.patch(f"/api/v1/deal/{deal['id']}", json={"margin": 0.25})
    rep.patch(f"/api/v1/deal/{deal['id']}", json={"amount": "120.00"})
    history = rep.get(f"/api/v1/deal/{deal['id']}/_history").get_json()["data"]
    assert [h["action"] for h in history] == ["record.create", "record.update"]
    assert history[1]["changes"] == {"amount": ["100.00", "120.00"]}
    assert all("margin" not in h["changes"] for h in history)
    full = loom_client.get(f"/api/v1/deal/{deal['id']}/_history").get_json()["data"]
    assert [h["changes"].get("margin") for h in full] == [None, [None, "0.2500"], None]
    # another rep cannot read the deal, so its history does not exist for them
    assert client_for("rep2").get(f"/api/v1/deal/{deal['id']}/_history").status_code == 404


def test_alerts_fire_once_when_the_threshold_is_crossed(app_with_roles, client_for, anonymous_client, loom_engine):
    rep = client_for("rep1")
    for i in range(4):
        rep.post("/api/v1/deal", json={"title": f"d{i}"})
    rep.get("/api/v1/deal/_export").get_data()          # 4 rows: under the threshold
    rep.get("/api/v1/deal/_export").get_data()          # 8 rows within 10 minutes: alert
    rep.get("/api/v1/deal/_export").get_data()          # still over: no second alert
    for _ in range(4):
        anonymous_client.post("/api/v1/_auth/login", json={"username": "rep2", "password": "guess"})
    auditor = client_for("audrey")
    alerts = auditor.get("/api/v1/_audit?action=alert").get_json()["data"]
    assert [a["detail"]["alert"] for a in alerts] == ["password_guessing", "bulk_deal_export"]
    bulk = alerts[1]["detail"]
    assert (bulk["total"], bulk["threshold"], bulk["severity"], bulk["who"]) == (8, 5, "high", "rep1")
    with loom_engine.connect() as conn:
        events = conn.execute(sa.text("SELECT payload FROM loom_outbox WHERE topic = 'audit.alert'")).scalars().all()
    assert len(events) == 2


def test_alert_documents_are_checked(tmp_path):
    _documents, problems = load_text("kind: alert\nname: a\nmatch: {action: record.export, entity: nope}\n"
                         "threshold: 5\nwindow: 10 minutes\n", "alerts.yaml")
    assert any("window" in str(p) for p in problems)


def test_verify_from_the_api_is_for_auditors_only(app_with_roles, client_for):
    assert client_for("rep1").post("/api/v1/_audit/_verify").status_code == 403
    reply = client_for("audrey").post("/api/v1/_audit/_verify")
    assert reply.status_code == 200 and reply.get_json()["ok"] is True
