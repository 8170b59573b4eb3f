"""Comments on records: whoever may read a record reads and adds its comments, nobody
else learns it exists; every comment is logged and announced in the same transaction."""

from __future__ import annotations

import pytest
import sqlalchemy as sa


@pytest.fixture
def notes_app(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("lead", [{"name": "company", "type": "string", "required": True},
                             {"name": "score", "type": "integer"}], title_field="company"),
        {"kind": "role", "name": "caller", "permissions": {"lead": {"actions": ["read", "create"], "scope": "own"}}},
    )
    make_user("ann", roles=["caller"])
    make_user("bob", roles=["caller"])


def test_a_reader_comments_and_reads_the_thread_in_order(notes_app, client_for, loom_engine):
    ann = client_for("ann")
    lead = ann.post("/api/v1/lead", json={"company": "Acme"}).get_json()["data"]["id"]
    first = ann.post(f"/api/v1/lead/{lead}/_comments", json={"body": "  Called, no answer.  "})
    assert first.status_code == 201
    assert first.get_json()["data"]["body"] == "Called, no answer."
    assert first.get_json()["data"]["author"] == "ann"
    ann.post(f"/api/v1/lead/{lead}/_comments", json={"body": "<script>alert(1)</script> call back 周一"})
    thread = ann.get(f"/api/v1/lead/{lead}/_comments").get_json()["data"]
    assert [c["body"] for c in thread] == ["Called, no answer.", "<script>alert(1)</script> call back 周一"]
    assert thread[0]["created_at"].endswith("Z")
    with loom_engine.connect() as conn:
        entries = conn.execute(sa.text("SELECT action, actor, entity, record_id, detail FROM loom_audit "
                                       "WHERE action = 'comment.create' ORDER BY seq")).all()
        events = conn.execute(sa.text("SELECT topic, record_id FROM loom_outbox WHERE topic = 'record.commented'")).all()
    assert [(e.actor, e.entity, e.record_id) for e in entries] == [("ann", "lead", lead)] * 2
    assert "Called, no answer." in entries[0].detail
    assert [tuple(e) for e in events] == [("record.commented", lead)] * 2


def test_someone_who_may_not_read_the_record_gets_404_both_ways(notes_app, client_for, loom_engine):
    lead = client_for("ann").post("/api/v1/lead", json={"company": "Acme"}).get_json()["data"]["id"]
    bob = client_for("bob")  # same role, but his scope is his own leads
    assert bob.get(f"/api/v1/lead/{lead}/_comments").status_code == 404
    assert bob.post(f"/api/v1/lead/{lead}/_comments", json={"body": "sneaky"}).status_code == 404
    assert client_for("ann").get("/api/v1/lead/999999/_comments").status_code == 404
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loom_comments")).scalar() == 0


@pytest.mark.parametrize(("body", "message"), [({"body": "   "}, "write a comment"),
                                               ({}, "write a comment"),
                                               ({"body": 42}, "write a comment"),
                                               ({"body": "x" * 10_001}, "at most 10000 characters")])
def test_an_empty_or_oversized_comment_is_refused_with_the_reason(notes_app, client_for, body, message, loom_engine):
    ann = client_for("ann")
    lead = ann.post("/api/v1/lead", json={"company": "Acme"}).get_json()["data"]["id"]
    reply = ann.post(f"/api/v1/lead/{lead}/_comments", json=body)
    assert reply.status_code == 422
    assert reply.get_json()["errors"][0]["field"] == "body"
    assert message in reply.get_json()["errors"][0]["message"]
    assert ann.get(f"/api/v1/lead/{lead}/_comments").get_json()["data"] == []


def test_a_comment_body_must_be_a_json_object(notes_app, client_for):
    ann = client_for("ann")
    lead = ann.post("/api/v1/lead", json={"company": "Acme"}).get_json()["data"]["id"]
    reply = ann.post(f"/api/v1/lead/{lead}/_comments", json=["hello"])
    assert reply.status_code == 400
    assert "JSON object" in reply.get_json()["detail"]


def test_the_api_description_lists_the_comment_endpoints(notes_app, client_for):
    from openapi_spec_validator import validate

    spec = client_for("ann").get("/api/openapi.json").get_json()
    validate(spec)
    assert set(spec["paths"]["/api/v1/lead/{id}/_comments"]) == {"parameters", "get", "post"}


def test_a_read_only_token_reads_comments_but_cannot_add_one(notes_app, client_for, loom_engine):
    ann = client_for("ann")
    lead = ann.post("/api/v1/lead", json={"company": "Acme"}).get_json()["data"]["id"]
    ann.post(f"/api/v1/lead/{lead}/_comments", json={"body": "first"})
    reader = client_for("ann", read_only=True)
    assert [c["body"] for c in reader.get(f"/api/v1/lead/{lead}/_comments").get_json()["data"]] == ["first"]
    refused = reader.post(f"/api/v1/lead/{lead}/_comments", json={"body": "second"})
    assert refused.status_code == 403 and "read-only token" in refused.get_json()["detail"]
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loom_comments")).scalar() == 1
        # refused, and logged, before the route runs: read-only tokens are checked once for every route
        denied = conn.execute(sa.text("SELECT action, detail FROM loom_audit WHERE outcome = 'denied'")).all()
    assert len(denied) == 1 and denied[0].action == "access" and f"/api/v1/lead/{lead}/_comments" in denied[0].detail
