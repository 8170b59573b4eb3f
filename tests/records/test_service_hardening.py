"""Record service input and output at its edges: a version must be the whole number the
client read, and events leaving through the outbox never carry a secret value."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa


@pytest.fixture
def vault(apply_metadata, make_entity, loom_client):
    apply_metadata(
        make_entity("vault_line", [{"name": "note", "type": "string"},
                                   {"name": "pin", "type": "string", "secret": True}], child=True),
        make_entity("vault", [{"name": "title", "type": "string", "required": True},
                              {"name": "combination", "type": "string", "secret": True},
                              {"name": "lines", "type": "table", "target": "vault_line"}], title_field="title"),
    )
    return loom_client


@pytest.mark.parametrize("version", [1.5, 1.0, "1", True, -1, 2**63, [1], {"n": 1}])
def test_a_version_that_is_not_a_whole_number_is_refused(vault, loom_engine, version):
    record = vault.post("/api/v1/vault", json={"title": "a"}).get_json()["data"]
    url = f"/api/v1/vault/{record['id']}"
    response = vault.patch(url, json={"title": "b", "version": version})
    assert response.status_code == 422, response.get_json()
    assert [e["field"] for e in response.get_json()["errors"]] == ["version"]
    assert vault.get(url).get_json()["data"]["title"] == "a"


def test_whole_versions_still_guard_against_lost_updates(vault):
    record = vault.post("/api/v1/vault", json={"title": "a"}).get_json()["data"]
    url = f"/api/v1/vault/{record['id']}"
    assert vault.patch(url, json={"title": "b", "version": 1}).status_code == 200
    assert vault.patch(url, json={"title": "c", "version": 1}).status_code == 412
    assert vault.patch(url, json={"title": "c", "version": None}).status_code == 200


def outbox(engine, entity):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT topic, payload FROM loom_outbox WHERE entity = :e ORDER BY id"),
                            {"e": entity}).all()


def test_outbox_events_never_carry_secret_values(vault, loom_engine):
    made = vault.post("/api/v1/vault", json={"title": "Main", "combination": "COMBO-1111",
                                             "lines": [{"note": "door", "pin": "PIN-2222"}]})
    record_id = made.get_json()["data"]["id"]
    assert vault.post("/api/v1/vault/_bulk", json=[{"title": "Side", "combination": "COMBO-3333",
                                                    "lines": [{"pin": "PIN-4444"}]}]).status_code == 201
    url = f"/api/v1/vault/{record_id}"
    assert vault.patch(url, json={"combination": "COMBO-5555", "lines": [{"note": "door", "pin": "PIN-6666"}]}
                       ).status_code == 200
    assert vault.delete(url).status_code == 204

    events = outbox(loom_engine, "vault")
    assert [topic for topic, _ in events] == ["record.created", "record.created", "record.updated", "record.deleted"]
    dump = "\n".join(json.dumps(payload) if not isinstance(payload, str) else payload for _, payload in events)
    for secret in ("COMBO-1111", "COMBO-3333", "COMBO-5555", "PIN-2222", "PIN-4444", "PIN-6666"):
        assert secret not in dump
    payloads = [payload if not isinstance(payload, str) else json.loads(payload) for _, payload in events]
    created, _bulk, updated, deleted = payloads
    assert created["record"]["combination"] == "***" and created["record"]["lines"][0]["pin"] == "***"
    assert created["record"]["lines"][0]["note"] == "door" and created["record"]["title"] == "Main"
    assert updated["changes"]["combination"] == ["***", "***"]
    assert updated["changes"]["lines"][1][0]["pin"] == "***"
    assert deleted["record"]["combination"] == "***"


def signed_in(app, username, password):
    """A browser-like test client signed in through the sign-in form; returns it and its CSRF token."""
    client = app.test_client()
    token = re.compile(r'name="csrf_token" value="([^"]+)"')
    csrf = token.search(client.get("/sign-in").get_data(as_text=True)).group(1)
    response = client.post("/sign-in", data={"username": username, "password": password, "csrf_token": csrf})
    assert response.status_code == 303
    return client, token.search(client.get("/").get_data(as_text=True)).group(1)


@pytest.mark.parametrize("version", ["²", "1.5", "9" * 5000, "-1"])
def test_a_form_version_that_is_not_a_whole_number_is_refused(vault, loom_app, make_user, version):
    make_user("clerk", superuser=True, password="correct horse battery")
    client, csrf = signed_in(loom_app, "clerk", "correct horse battery")
    record_id = vault.post("/api/v1/vault", json={"title": "a"}).get_json()["data"]["id"]
    edited = client.post(f"/r/vault/{record_id}/edit", data={"version": version, "title": "b", "csrf_token": csrf},
                         headers={"X-CSRFToken": csrf})
    assert edited.status_code == 422
    deleted = client.post(f"/r/vault/{record_id}/delete", data={"version": version, "csrf_token": csrf},
                          headers={"X-CSRFToken": csrf})
    assert deleted.status_code == 422
    assert vault.get(f"/api/v1/vault/{record_id}").get_json()["data"]["title"] == "a"
