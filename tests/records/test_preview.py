"""Conditional fields (``visible_when``, ``clear_when_hidden``, ``read_only_when`` as an
expression) at every write, and ``RecordService.preview``: what a write would store and
how each field stands, worked out by the write's own logic, without writing anything and
without showing a field the caller may not read."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loom.errors import NotFound
from loom.permissions import Forbidden
from loom.records.door import record_context
from loom.records.service import RecordService


@pytest.fixture
def deals(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("item", [
            {"name": "name", "type": "string", "required": True},
            {"name": "list_price", "type": "money"},
        ], title_field="name"),
        make_entity("deal", [
            {"name": "title", "type": "string", "required": True},
            {"name": "kind", "type": "select", "options": [{"value": "person"}, {"value": "company"}],
             "default": "person"},
            {"name": "company_name", "type": "string", "required": True, "visible_when": "kind = 'company'"},
            {"name": "vat_number", "type": "string", "visible_when": "kind = 'company'", "clear_when_hidden": True},
            {"name": "status", "type": "select", "options": [{"value": "draft"}, {"value": "sent"}],
             "default": "draft"},
            {"name": "note", "type": "string", "read_only_when": "status = 'sent' and not is_empty(note)"},
            {"name": "memo", "type": "string", "read_only_when": "item.list_price > 50 or owner != $user.id"},
            {"name": "tracking", "type": "string", "required_when": "status = 'sent'",
             "visible_when": "kind = 'company'"},
            {"name": "price", "type": "money"},
            {"name": "cost", "type": "money"},
            {"name": "margin", "type": "money", "compute": "price - cost"},
            {"name": "item", "type": "link", "target": "item"},
            {"name": "unit_price", "type": "money", "default": {"from": "item.list_price"}},
            {"name": "lines", "type": "table", "target": "deal_line"},
        ], title_field="title", rules=[
            {"when": "price < cost", "message": {"en": "Priced below cost", "zh": "低于成本"}, "fields": ["cost"]},
        ]),
        make_entity("deal_line", [
            {"name": "item", "type": "link", "target": "item"},
            {"name": "quantity", "type": "integer"},
            {"name": "unit_price", "type": "money", "default": {"from": "item.list_price"}},
            {"name": "amount", "type": "money", "compute": "quantity * unit_price"},
        ], child=True),
        {"kind": "role", "name": "rep", "permissions": {
            "deal": {"actions": ["read", "create", "update"], "fields": {"cost": "none"}},
            "item": {"actions": ["read"]}}},
        {"kind": "role", "name": "viewer", "permissions": {"deal": {"actions": ["read"]}, "item": {"actions": ["read"]}}},
    )
    make_user("boss", superuser=True)
    make_user("rep", roles=["rep"])
    make_user("viewer", roles=["viewer"])


def _service(app, username: str, entity: str = "deal") -> RecordService:
    principal = app.extensions["loom"].identity.principal_for(username)
    return RecordService(record_context(principal), entity)


def _errors(reply) -> dict[str, str]:
    assert reply.status_code == 422, reply.get_json()
    return {e["field"]: e["code"] for e in reply.get_json()["errors"]}


def _item(client, price: str) -> int:
    reply = client.post("/api/v1/item", json={"name": f"Item {price}", "list_price": price})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]["id"]


# -- writes ------------------------------------------------------------------------------

def test_a_hidden_field_is_not_required_and_a_shown_one_is(deals, client_for):
    boss = client_for("boss")
    person = boss.post("/api/v1/deal", json={"title": "Ann", "status": "sent"})
    # company_name (required) and tracking (required_when) are hidden for a person
    assert person.status_code == 201, person.get_json()
    company = boss.post("/api/v1/deal", json={"title": "Acme", "kind": "company", "status": "sent"})
    assert _errors(company) == {"company_name": "required", "tracking": "required"}
    # a PATCH that shows a required field needs it filled
    patch = boss.patch(f"/api/v1/deal/{person.get_json()['data']['id']}", json={"kind": "company"})
    assert _errors(patch) == {"company_name": "required", "tracking": "required"}
    ok = boss.patch(f"/api/v1/deal/{person.get_json()['data']['id']}",
                    json={"kind": "company", "company_name": "Ann Ltd", "tracking": "T1"})
    assert ok.status_code == 200, ok.get_json()


def test_a_hidden_value_is_kept_unless_cleared_when_hidden(deals, client_for, loom_engine):
    boss = client_for("boss")
    created = boss.post("/api/v1/deal", json={"title": "Acme", "kind": "company", "company_name": "Acme Ltd",
                                              "vat_number": "CN-1"}).get_json()["data"]
    hidden = boss.patch(f"/api/v1/deal/{created['id']}", json={"kind": "person"})
    assert hidden.status_code == 200, hidden.get_json()
    data = hidden.get_json()["data"]
    assert data["company_name"] == "Acme Ltd"        # kept
    assert data["vat_number"] is None                # clear_when_hidden
    with loom_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT company_name, vat_number FROM e_deal")).one()
    assert tuple(row) == ("Acme Ltd", None)
    # a value sent for a field that stays hidden is cleared too
    again = boss.patch(f"/api/v1/deal/{created['id']}", json={"vat_number": "CN-2"})
    assert again.get_json()["data"]["vat_number"] is None


def test_read_only_when_as_an_expression_refuses_a_change(deals, client_for):
    boss = client_for("rep")
    created = boss.post("/api/v1/deal", json={"title": "Acme", "note": "first"}).get_json()["data"]
    assert boss.patch(f"/api/v1/deal/{created['id']}", json={"status": "sent", "note": "second"}).status_code == 200
    refused = boss.patch(f"/api/v1/deal/{created['id']}", json={"note": "third"})
    assert refused.status_code == 422
    assert refused.get_json()["errors"] == [{"field": "note", "code": "state_locked", "params": {},
                                             "message": "is read-only in the record's current state"}]
    assert boss.get(f"/api/v1/deal/{created['id']}").get_json()["data"]["note"] == "second"
    # the same SQL check tells the screens which fields are locked
    assert boss.patch(f"/api/v1/deal/{created['id']}", json={"title": "Acme 2"}).status_code == 200


def test_read_only_when_reads_through_links_and_the_user_in_sql_as_in_python(deals, loom_app, client_for):
    boss, rep = client_for("boss"), client_for("rep")
    cheap, dear = _item(boss, "10.00"), _item(boss, "99.00")
    mine = rep.post("/api/v1/deal", json={"title": "Mine", "item": cheap}).get_json()["data"]
    dear_one = rep.post("/api/v1/deal", json={"title": "Dear", "item": dear}).get_json()["data"]
    theirs = boss.post("/api/v1/deal", json={"title": "Theirs", "item": cheap}).get_json()["data"]
    assert rep.patch(f"/api/v1/deal/{mine['id']}", json={"memo": "ok"}).status_code == 200
    assert _errors(rep.patch(f"/api/v1/deal/{dear_one['id']}", json={"memo": "no"})) == {"memo": "state_locked"}
    assert _errors(rep.patch(f"/api/v1/deal/{theirs['id']}", json={"memo": "no"})) == {"memo": "state_locked"}
    with loom_app.app_context():
        service = _service(loom_app, "rep")
        model = loom_app.extensions["loom"].metadata.live().model
        condition = model.entity("deal").field("memo").read_only_when_expr
        principal = loom_app.extensions["loom"].identity.principal_for("rep")
        for record in (mine, dear_one, theirs):
            with loom_app.extensions["loom"].engine.connect() as conn:
                row = dict(conn.execute(sa.text("SELECT * FROM e_deal WHERE id = :id"), {"id": record["id"]})
                           .mappings().one())

                def lookup(entity, record_id, conn=conn):
                    found = conn.execute(sa.text(f"SELECT * FROM e_{entity} WHERE id = :id"), {"id": record_id})
                    return found.mappings().first()
                in_python = condition.evaluate(row, user=principal, lookup=lookup) is True
            assert ("memo" in service.locked_fields(record["id"])) == in_python


def test_the_api_description_does_not_require_a_field_shown_only_under_a_condition(deals, client_for):
    spec = client_for("boss").get("/api/openapi.json").get_json()
    schema = spec["components"]["schemas"]["dealInput"]
    assert "title" in schema["required"] and "company_name" not in schema["required"]
    assert {"type": "null"} in schema["properties"]["company_name"]["anyOf"]


def test_a_changed_link_brings_its_default_on_update_unless_a_value_is_sent(deals, client_for):
    boss = client_for("boss")
    cheap, dear = _item(boss, "10.00"), _item(boss, "99.00")
    created = boss.post("/api/v1/deal", json={"title": "A", "item": cheap}).get_json()["data"]
    assert created["unit_price"] == "10.00"
    moved = boss.patch(f"/api/v1/deal/{created['id']}", json={"item": dear}).get_json()["data"]
    assert moved["unit_price"] == "99.00"
    mine = boss.patch(f"/api/v1/deal/{created['id']}", json={"item": cheap, "unit_price": "50.00"}).get_json()["data"]
    assert mine["unit_price"] == "50.00"
    # a write that does not change the link leaves the price alone
    same = boss.patch(f"/api/v1/deal/{created['id']}", json={"item": cheap, "title": "B"}).get_json()["data"]
    assert same["unit_price"] == "50.00"


# -- preview -----------------------------------------------------------------------------

def _counts(engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM e_deal")).scalar(),
                conn.execute(sa.text("SELECT count(*) FROM loom_audit")).scalar(),
                conn.execute(sa.text("SELECT coalesce(sum(version), 0) FROM e_deal")).scalar())


def test_a_preview_computes_what_a_create_would_store(deals, loom_app, client_for, loom_engine):
    boss = client_for("boss")
    lamp = _item(boss, "12.50")
    before = _counts(loom_engine)
    with loom_app.app_context():
        preview = _service(loom_app, "boss").preview({
            "title": "Acme", "kind": "company", "price": "100", "cost": "120", "item": lamp,
            "lines": [{"item": lamp, "quantity": 3}, {"quantity": 2, "unit_price": "1.25"}]})
    values, fields = preview["values"], preview["fields"]
    assert values["margin"] == "-20.00" and values["unit_price"] == "12.50"
    assert values["item"] == {"id": lamp, "title": "Item 12.50"}
    assert [(r["unit_price"], r["amount"]) for r in values["lines"]] == [("12.50", "37.50"), ("1.25", "2.50")]
    assert fields["company_name"] == {"visible": True, "required": True, "read_only": False}
    assert fields["margin"]["read_only"] and fields["lines[0].amount"]["read_only"]
    assert {(e["field"], e["code"]) for e in preview["errors"]} == {("company_name", "required"),
                                                                   ("cost", "rule_failed")}
    with loom_app.app_context():
        person = _service(loom_app, "boss").preview({"title": "Ann", "kind": "person"})
    assert person["fields"]["company_name"] == {"visible": False, "required": False, "read_only": False}
    assert person["errors"] == []
    assert _counts(loom_engine) == before    # nothing stored, audited or counted


def test_a_preview_of_an_update_shows_locks_and_writes_nothing(deals, loom_app, client_for, loom_engine):
    rep = client_for("rep")
    created = rep.post("/api/v1/deal", json={"title": "Acme", "note": "n", "status": "sent"}).get_json()["data"]
    before = _counts(loom_engine)
    with loom_app.app_context():
        preview = _service(loom_app, "rep").preview({"note": "changed", "price": "5"}, record_id=created["id"])
    assert preview["fields"]["note"]["read_only"] is True
    assert preview["values"]["note"] == "changed" and preview["values"]["title"] == "Acme"
    assert [(e["field"], e["code"]) for e in preview["errors"]] == [("note", "state_locked")]
    assert _counts(loom_engine) == before
    assert rep.get(f"/api/v1/deal/{created['id']}").get_json()["data"]["version"] == created["version"]


def test_a_preview_never_shows_a_field_the_caller_cannot_read(deals, loom_app, client_for):
    boss = client_for("boss")
    created = boss.post("/api/v1/deal", json={"title": "Secret", "price": "100", "cost": "70"}).get_json()["data"]
    with loom_app.app_context():
        rep = _service(loom_app, "rep")
        # asked for the hidden field: refused as a field that does not exist, nothing shown
        asked = rep.preview({"cost": "1"}, record_id=created["id"])
        unknown = rep.preview({"no_such_field": "1"}, record_id=created["id"])
        # a computed field that reads the hidden one shows what the record would store,
        # never the hidden value; a rule on the hidden field speaks about the record
        below = rep.preview({"price": "60"}, record_id=created["id"])
    for preview in (asked, below):
        assert "cost" not in preview["values"] and "cost" not in preview["fields"]
        assert "70" not in repr(preview)
    assert [(e["field"], e["code"]) for e in asked["errors"]] == [("cost", "unknown_field")]
    assert asked["errors"][0]["message"] == unknown["errors"][0]["message"]  # the same words as for no field
    assert below["values"]["margin"] == "-10.00"
    assert [(e["field"], e["code"], e["message"]) for e in below["errors"]] == [("", "rule_failed", "Priced below cost")]


def test_a_preview_is_refused_where_the_write_is(deals, loom_app, client_for):
    boss = client_for("boss")
    created = boss.post("/api/v1/deal", json={"title": "A"}).get_json()["data"]
    with loom_app.app_context():
        with pytest.raises(Forbidden):
            _service(loom_app, "viewer").preview({"title": "B"})
        with pytest.raises(Forbidden):
            _service(loom_app, "viewer").preview({"title": "B"}, record_id=created["id"])
        with pytest.raises(NotFound):
            _service(loom_app, "rep").preview({"title": "B"}, record_id=created["id"] + 1000)


def test_a_preview_reads_nothing_through_a_link_the_caller_cannot_follow(deals, loom_app, apply_metadata,
                                                                        make_entity, client_for):
    boss = client_for("boss")
    lamp = _item(boss, "77.00")
    with loom_app.app_context():
        loom = loom_app.extensions["loom"]
        documents = [d for d in loom.metadata.live().model.documents if d.get("name") != "rep"]
        documents.append({"kind": "role", "name": "rep", "permissions": {
            "deal": {"actions": ["read", "create", "update"]}}})
    apply_metadata(*documents)
    with loom_app.app_context():
        preview = _service(loom_app, "rep").preview({"title": "A", "item": lamp})
    assert preview["values"]["unit_price"] is None and preview["values"]["item"] is None
    assert [(e["field"], e["code"]) for e in preview["errors"]] == [("item", "no_such_record")]
