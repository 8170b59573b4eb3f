"""Errors as data: every refusal of the API, and every entry of its ``errors``, carries a
stable code and the params its message quotes, so that a client never has to read the
English to know what went wrong."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loom.errors import ERROR_CODES, Conflict, InvalidValue, error_entry
from loom.permissions import Forbidden
from loom.records.door import record_service

LOCKED = {"status": {"eq": "closed"}}


@pytest.fixture
def shop(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("supplier", [
            {"name": "name", "type": "string", "required": True, "max_length": 10, "unique": True},
            {"name": "mobile", "type": "phone", "validators": ["cn_mobile"]},
            {"name": "rating", "type": "integer", "min": 1, "max": 5},
            {"name": "discount", "type": "decimal", "precision": 5, "scale": 2, "min": 0},
            {"name": "tier", "type": "select", "options": [{"value": "gold"}, {"value": "silver"}]},
            {"name": "code", "type": "string", "read_only": True},
            {"name": "note", "type": "string", "read_only_when": LOCKED},
            {"name": "status", "type": "select", "options": [{"value": "open"}, {"value": "closed"}]},
        ], title_field="name"),
        make_entity("purchase", [
            {"name": "title", "type": "string"},
            {"name": "supplier", "type": "link", "target": "supplier"},
        ], title_field="title"),
        {"kind": "role", "name": "buyer", "permissions": {
            "supplier": {"actions": ["read", "create", "update"], "fields": {"rating": "read"}},
            "purchase": {"actions": ["read", "create"]}}},
    )
    make_user("bea", roles=["buyer"])


def _entries(reply) -> dict[str, dict]:
    """The reply's entries by field, each as {code, params} (every entry has both)."""
    errors = reply.get_json()["errors"]
    for entry in errors:
        assert set(entry) == {"field", "code", "params", "message"}, entry
        assert entry["code"] in ERROR_CODES, entry
    return {e["field"]: {"code": e["code"], "params": e["params"]} for e in errors}


def test_every_invalid_value_is_named_with_its_code_and_params(shop, client_for):
    bea = client_for("bea")
    reply = bea.post("/api/v1/supplier", json={
        "mobile": "12345", "discount": "abc", "tier": "bronze", "code": "S-1", "nickname": "x"})
    assert reply.status_code == 422
    body = reply.get_json()
    assert (body["code"], body["params"]) == ("invalid_values", {})
    assert _entries(reply) == {
        "name": {"code": "required", "params": {}},
        "mobile": {"code": "not_a_mobile", "params": {}},
        "discount": {"code": "not_a_number", "params": {}},
        "tier": {"code": "not_an_option", "params": {"options": ["gold", "silver"]}},
        "code": {"code": "read_only", "params": {}},
        "nickname": {"code": "unknown_field", "params": {"name": "nickname"}},
    }


def test_limits_say_the_limit_they_hold(shop, client_for, loom_client):
    reply = loom_client.post("/api/v1/supplier", json={"name": "A name far too long", "rating": 9,
                                                      "discount": "-1", "tier": ["gold"]})
    assert reply.status_code == 422
    assert _entries(reply) == {
        "name": {"code": "too_long", "params": {"max": 10}},
        "rating": {"code": "not_between", "params": {"min": 1, "max": 5}},
        "discount": {"code": "below_min", "params": {"min": "0.00"}},
        "tier": {"code": "not_text", "params": {}},
    }
    places = loom_client.post("/api/v1/supplier", json={"name": "Acme", "discount": "1.234"})
    assert _entries(places) == {"discount": {"code": "too_many_decimals", "params": {"places": 2}}}


def test_a_field_read_but_not_written_is_refused_by_code(shop, client_for):
    reply = client_for("bea").post("/api/v1/supplier", json={"name": "Acme", "rating": 3})
    assert reply.status_code == 403
    body = reply.get_json()
    assert (body["code"], body["params"]) == ("forbidden_fields", {"fields": ["rating"]})
    assert _entries(reply) == {"rating": {"code": "forbidden_field", "params": {}}}


def test_a_link_to_no_record_names_the_entity_and_id(shop, client_for):
    reply = client_for("bea").post("/api/v1/purchase", json={"title": "Pens", "supplier": 4242})
    assert reply.status_code == 422
    assert _entries(reply) == {"supplier": {"code": "no_such_record",
                                            "params": {"entity": "supplier", "id": 4242}}}
    picked = client_for("bea").post("/api/v1/purchase", json={"title": "Pens", "supplier": "Acme"})
    assert _entries(picked) == {"supplier": {"code": "not_a_link", "params": {"entity": "supplier"}}}


def test_a_taken_unique_value_names_the_holder_the_caller_may_read(shop, client_for):
    bea = client_for("bea")
    first = bea.post("/api/v1/supplier", json={"name": "Acme"}).get_json()["data"]["id"]
    reply = bea.post("/api/v1/supplier", json={"name": "Acme"})
    assert reply.status_code == 409
    body = reply.get_json()
    assert (body["code"], body["params"]) == ("unique", {"entity": "supplier", "holder": first})
    assert _entries(reply) == {"name": {"code": "unique", "params": {"entity": "supplier", "holder": first}}}


def test_a_field_locked_by_the_records_state_is_refused_by_code(shop, loom_client):
    created = loom_client.post("/api/v1/supplier", json={"name": "Acme", "status": "closed"}).get_json()["data"]
    reply = loom_client.patch(f"/api/v1/supplier/{created['id']}", json={"note": "late"})
    assert reply.status_code == 422
    assert _entries(reply) == {"note": {"code": "state_locked", "params": {}}}


@pytest.mark.parametrize(("method", "url", "status", "code", "params"), [
    ("get", "/api/v1/nosuch", 404, "no_such_entity", {"entity": "nosuch"}),
    ("get", "/api/v1/supplier/999", 404, "no_such_record", {"entity": "supplier", "id": 999}),
    ("delete", "/api/v1/supplier/1", 403, "forbidden_action", {"action": "delete", "entity": "supplier"}),
    ("get", "/api/v1/supplier?sort=nickname", 400, "unknown_field", {"name": "nickname"}),
    ("get", "/api/v1/supplier?filter[rating][gt]=many", 400, "not_whole", {}),
])
def test_a_refusal_as_a_whole_has_a_code_and_params(shop, client_for, method, url, status, code, params):
    reply = getattr(client_for("bea"), method)(url)
    assert reply.status_code == status
    assert (reply.get_json()["code"], reply.get_json()["params"]) == (code, params)


def test_a_read_only_token_and_a_stale_version_are_told_apart_by_code(shop, loom_app, loom_client):
    created = loom_client.post("/api/v1/supplier", json={"name": "Acme"}).get_json()["data"]
    bea = loom_app.extensions["loom"].identity.principal_for("bea")
    with loom_app.app_context():
        with pytest.raises(Forbidden) as refused:
            record_service("supplier", replace(bea, read_only=True)).create({"name": "Beta"})
    assert (refused.value.code, refused.value.params) == ("read_only_token", {"action": "create", "entity": "supplier"})
    stale = loom_client.patch(f"/api/v1/supplier/{created['id']}", json={"name": "Acme 2", "version": 7})
    assert stale.status_code == 412 and stale.get_json()["code"] == "stale_version"


def test_an_unrouted_address_gets_the_code_of_its_status(shop, client_for):
    reply = client_for("bea").get("/api/v1/supplier/1/nothing/here")
    assert reply.status_code == 404 and reply.get_json()["code"] == "not_found"


def test_params_may_share_a_name_with_the_entrys_own_keys():
    refusal = Conflict("1 order record(s) still link to this customer through 'customer'", code="still_linked",
                       params={"count": 1, "entity": "order", "field": "customer"})
    assert refusal.as_entry() == {"field": "", "code": "still_linked", "message": refusal.detail,
                                  "params": {"count": 1, "entity": "order", "field": "customer"}}
    assert error_entry("x", "invalid", "no", field="y", code="z", message="m")["params"] == \
        {"field": "y", "code": "z", "message": "m"}
    assert InvalidValue("invalid", "no", message="m").entry("x")["message"] == "no"
