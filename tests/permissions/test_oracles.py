"""Conflicts say no more than the caller needs to fix the input: a delete refused because
records link to it counts and names only the links the caller may read, and a unique
value held by a record the caller cannot read is only "already in use"."""

from __future__ import annotations

import pytest

GENERIC_LINKED = "other records still link to this account; it cannot be deleted while they do"


@pytest.fixture
def world(apply_metadata, make_entity, make_user, client_for, loom_client):
    docs = [
        make_entity("account", [{"name": "name", "type": "string", "required": True},
                                {"name": "code", "type": "string", "unique": True}], title_field="name"),
        make_entity("contract_item", [{"name": "account", "type": "link", "target": "account"}], child=True),
        make_entity("contract", [{"name": "title", "type": "string", "required": True},
                                 {"name": "account", "type": "link", "target": "account"},
                                 {"name": "items", "type": "table", "target": "contract_item"}], title_field="title"),
        {"kind": "role", "name": "rep", "permissions": {
            "account": {"actions": ["read", "create", "update", "delete"], "scope": "own"},
            "contract": {"actions": ["read", "create"], "scope": "own"}}},
    ]
    apply_metadata(*docs)
    ids = {"wang": make_user("wang", roles=["rep"]), "sun": make_user("sun", roles=["rep"])}
    return {"ids": ids, "wang": client_for("wang"), "admin": loom_client}


def post(client, entity, body):
    response = client.post(f"/api/v1/{entity}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


def test_delete_refusal_counts_only_links_the_caller_can_read(world):
    wang, admin, ids = world["wang"], world["admin"], world["ids"]
    account = post(wang, "account", {"name": "Acme"})
    # two contracts and a contract line of someone else link to wang's account
    post(admin, "contract", {"title": "hidden 1", "account": account, "owner": ids["sun"]})
    post(admin, "contract", {"title": "hidden 2", "account": account, "owner": ids["sun"]})
    post(admin, "contract", {"title": "hidden 3", "owner": ids["sun"], "items": [{"account": account}]})

    refused = wang.delete(f"/api/v1/account/{account}")
    assert refused.status_code == 409
    assert refused.get_json()["detail"] == GENERIC_LINKED
    assert "contract" not in refused.get_data(as_text=True)

    post(wang, "contract", {"title": "mine", "account": account})
    refused = wang.delete(f"/api/v1/account/{account}")
    assert refused.status_code == 409
    assert refused.get_json()["detail"].startswith("1 contract record(s) still link to this account through 'account'")

    # whoever may read every link is told all of them
    detail = admin.delete(f"/api/v1/account/{account}").get_json()["detail"]
    assert detail.startswith(("3 contract record(s)", "1 contract lines record(s)")), detail


def test_unique_conflict_names_only_a_record_the_caller_can_read(world):
    wang, admin, ids = world["wang"], world["admin"], world["ids"]
    post(admin, "account", {"name": "Theirs", "code": "HIDDEN-1", "owner": ids["sun"]})
    mine = post(wang, "account", {"name": "Mine", "code": "MINE-1"})

    hidden = wang.post("/api/v1/account", json={"name": "Copy", "code": "HIDDEN-1"})
    assert hidden.status_code == 409
    problem = hidden.get_json()
    assert problem["detail"] == "this code is already in use; choose another"
    assert problem["errors"] == [{"field": "code", "code": "unique", "params": {},
                                  "message": "must be unique; this value is already in use"}]
    assert "Theirs" not in hidden.get_data(as_text=True)

    visible = wang.post("/api/v1/account", json={"name": "Copy", "code": "MINE-1"})
    assert visible.status_code == 409
    assert visible.get_json()["detail"] == f"account {mine} already has this code"

    other = post(wang, "account", {"name": "Other", "code": "MINE-2"})
    moved = wang.patch(f"/api/v1/account/{other}", json={"code": "HIDDEN-1"})
    assert moved.status_code == 409 and moved.get_json()["detail"] == "this code is already in use; choose another"
    moved = wang.patch(f"/api/v1/account/{other}", json={"code": "MINE-1"})
    assert moved.status_code == 409 and moved.get_json()["detail"] == f"account {mine} already has this code"
