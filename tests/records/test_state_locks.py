"""Fields read-only in some states of a record (``read_only_when``): refused through
every door while the stored record meets the condition, free again once it does not."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loom.errors import MetadataError

LOCKED = {"status": {"in": ["sent", "paid"]}}


@pytest.fixture
def invoices(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("bill_line", [{"name": "item", "type": "string"}, {"name": "qty", "type": "integer"}], child=True),
        make_entity("bill", [
            {"name": "title", "type": "string", "read_only_when": LOCKED},
            {"name": "amount", "type": "decimal", "precision": 12, "scale": 2, "read_only_when": LOCKED},
            {"name": "status", "type": "select", "options": [{"value": v} for v in ("draft", "sent", "paid")],
             "default": "draft"},
            {"name": "memo", "type": "text"},
            {"name": "lines", "type": "table", "target": "bill_line", "read_only_when": LOCKED},
            {"name": "reviewer_note", "type": "string", "read_only_when": {"owner": {"ne": "$user.id"}}},
        ], title_field="title"),
        {"kind": "role", "name": "clerk", "permissions": {"bill": {"actions": ["read", "create", "update"]}}},
    )
    make_user("amy", roles=["clerk"])
    make_user("ben", roles=["clerk"])


def _create(client, **values):
    reply = client.post("/api/v1/bill", json={"title": "Rent", "amount": "100.00",
                                              "lines": [{"item": "desk", "qty": 1}], **values})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]


def test_a_locked_field_is_refused_and_nothing_changes(invoices, client_for, loom_engine):
    amy = client_for("amy")
    bill = _create(amy, status="sent")
    reply = amy.patch(f"/api/v1/bill/{bill['id']}", json={"amount": "90.00", "memo": "discount"})
    assert reply.status_code == 422
    assert reply.get_json()["errors"] == [{"field": "amount", "code": "state_locked", "params": {},
                                           "message": "is read-only in the record's current state"}]
    stored = amy.get(f"/api/v1/bill/{bill['id']}").get_json()["data"]
    assert (stored["amount"], stored["memo"], stored["version"]) == ("100.00", None, bill["version"])
    # sending the value it already has is no change, and other fields stay free
    assert amy.patch(f"/api/v1/bill/{bill['id']}", json={"amount": "100.00", "memo": "ok"}).status_code == 200
    # the child rows of a locked table field are locked with it
    lines = amy.patch(f"/api/v1/bill/{bill['id']}", json={"lines": [{"item": "chair", "qty": 2}]})
    assert lines.status_code == 422 and lines.get_json()["errors"][0]["field"] == "lines"
    assert [r["item"] for r in amy.get(f"/api/v1/bill/{bill['id']}").get_json()["data"]["lines"]] == ["desk"]
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loom_audit WHERE action = 'record.update' "
                                    "AND changes LIKE '%chair%'")).scalar() == 0


def test_the_lock_follows_the_stored_state(invoices, client_for):
    amy = client_for("amy")
    bill = _create(amy)
    # a draft: the state and the locked fields may change together; the lock applies from then on
    moved = amy.patch(f"/api/v1/bill/{bill['id']}", json={"status": "sent", "title": "Rent (Nov)"})
    assert moved.status_code == 200 and moved.get_json()["data"]["title"] == "Rent (Nov)"
    assert amy.patch(f"/api/v1/bill/{bill['id']}", json={"title": "Rent (Dec)"}).status_code == 422
    # back to draft, free again
    assert amy.patch(f"/api/v1/bill/{bill['id']}", json={"status": "draft"}).status_code == 200
    assert amy.patch(f"/api/v1/bill/{bill['id']}", json={"title": "Rent (Dec)"}).status_code == 200


def test_a_condition_on_the_user_locks_for_everyone_else(invoices, client_for):
    bill = _create(client_for("amy"))
    assert client_for("ben").patch(f"/api/v1/bill/{bill['id']}", json={"reviewer_note": "mine?"}).status_code == 422
    assert client_for("amy").patch(f"/api/v1/bill/{bill['id']}", json={"reviewer_note": "mine"}).status_code == 200


def test_the_service_tells_which_fields_are_locked_and_system_work_is_not_held(invoices, loom_app):
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    with loom_app.app_context():
        amy = RecordService(record_context(loom_app.extensions["loom"].identity.principal_for("amy")), "bill")
        bill = amy.create({"title": "Rent", "amount": "5.00", "status": "paid"})
        assert amy.locked_fields(bill["id"]) == {"title", "amount", "lines"}
        system = RecordService(record_context(Principal.system("erp-sync")), "bill")
        assert system.locked_fields(bill["id"]) == set()
        assert system.update(bill["id"], {"amount": "6.00"})["amount"] == "6.00"


@pytest.mark.parametrize(("field", "message"), [
    ({"name": "a", "type": "string", "read_only_when": {"nope": {"eq": 1}}}, "no field named 'nope'"),
    ({"name": "a", "type": "string", "read_only_when": {"n": {"contains": "x"}}}, "operator 'contains' does not apply"),
    ({"name": "a", "type": "string", "read_only": True, "read_only_when": {"n": {"eq": 1}}}, "read_only already"),
    ({"name": "a", "type": "string", "read_only_when": {"n": {"eq": "$user.nobody"}}}, "unknown reference"),
])
def test_a_wrong_condition_is_refused_when_published(apply_metadata, make_entity, field, message):
    with pytest.raises(MetadataError) as caught:
        apply_metadata(make_entity("thing", [{"name": "n", "type": "integer"}, field]))
    assert any(message in p.message and "read_only_when" in str(p.path) for p in caught.value.problems), \
        caught.value.problems


def test_a_child_entity_field_cannot_carry_the_lock(apply_metadata, make_entity):
    with pytest.raises(MetadataError) as caught:
        apply_metadata(make_entity("row", [{"name": "n", "type": "integer", "read_only_when": {"n": {"gt": 1}}}],
                                   child=True))
    assert "put read_only_when on the parent's table field" in caught.value.problems[0].message
