"""A write cannot put a record outside its writer's row scope: creating a record for
someone else, giving one away, or moving it out of a condition scope is refused with a
422 naming the field, on every write path, and nothing is written."""

from __future__ import annotations

import pytest
import sqlalchemy as sa


def grant(scope, actions=("read", "create", "update")):
    return {"actions": list(actions), "scope": scope}


@pytest.fixture
def world(apply_metadata, make_entity, make_user, client_for, loom_client):
    """A deal entity, and users in two teams; ``world["role"](scope)`` publishes the
    ``seller`` role with that scope on deals."""
    deal = make_entity("deal", [
        {"name": "title", "type": "string", "required": True},
        {"name": "region", "type": "select", "options": [{"value": "east"}, {"value": "north"}]},
        {"name": "amount", "type": "integer"},
    ], title_field="title")

    def role(scope):
        apply_metadata(deal, {"kind": "role", "name": "seller", "permissions": {"deal": grant(scope)}})

    role("own")
    ids = {"wang": make_user("wang", roles=["seller"], team="east"),
           "zhao": make_user("zhao", team="east"),
           "sun": make_user("sun", team="north")}
    return {"role": role, "ids": ids, "client": client_for("wang"), "admin": loom_client}


def deals(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT title, owner, region FROM e_deal ORDER BY id")).all()


def denied(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT action, detail FROM loom_audit WHERE entity = 'deal' "
                                    "AND outcome = 'denied' ORDER BY seq")).all()


def assert_refused(response, field):
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert field in [e["field"] for e in problem["errors"]], problem
    assert "outside the records you may" in problem["detail"]


def test_own_scope_cannot_create_or_give_away_records_of_others(world, loom_engine):
    client, ids = world["client"], world["ids"]
    assert_refused(client.post("/api/v1/deal", json={"title": "gift", "owner": ids["zhao"]}), "owner")
    assert_refused(client.post("/api/v1/deal/_bulk", json=[{"title": "mine"},
                                                           {"title": "theirs", "owner": ids["sun"]}]), "[1].owner")
    assert deals(loom_engine) == []

    mine = client.post("/api/v1/deal", json={"title": "mine", "owner": ids["wang"]})
    assert mine.status_code == 201
    record_id = mine.get_json()["data"]["id"]
    assert_refused(client.patch(f"/api/v1/deal/{record_id}", json={"owner": ids["zhao"]}), "owner")
    assert deals(loom_engine) == [("mine", ids["wang"], None)]
    assert [action for action, _ in denied(loom_engine)] == ["record.create", "record.create", "record.update"]

    # an administrator (scope all) still moves records between owners
    admin = world["admin"]
    assert admin.patch(f"/api/v1/deal/{record_id}", json={"owner": ids["zhao"]}).status_code == 200


def test_team_scope_keeps_records_inside_the_team(world, loom_engine):
    world["role"]("team")
    client, ids = world["client"], world["ids"]
    assert client.post("/api/v1/deal", json={"title": "teammate's", "owner": ids["zhao"]}).status_code == 201
    assert_refused(client.post("/api/v1/deal", json={"title": "north", "owner": ids["sun"]}), "owner")
    assert [title for title, *_ in deals(loom_engine)] == ["teammate's"]


def test_condition_scope_names_the_field_that_leaves_it(world, loom_engine):
    world["role"]({"where": {"region": {"eq": "east"}}})
    client = world["client"]
    assert_refused(client.post("/api/v1/deal", json={"title": "far", "region": "north"}), "region")
    # a row with no region is outside "region = east" too (NULL is not east)
    assert_refused(client.post("/api/v1/deal", json={"title": "nowhere"}), "region")
    made = client.post("/api/v1/deal", json={"title": "near", "region": "east", "amount": 5})
    assert made.status_code == 201
    url = f"/api/v1/deal/{made.get_json()['data']['id']}"
    response = client.patch(url, json={"region": "north", "amount": 6})
    assert_refused(response, "region")
    assert [e["field"] for e in response.get_json()["errors"]] == ["region"]
    assert deals(loom_engine) == [("near", world["ids"]["wang"], "east")]
    assert client.patch(url, json={"amount": 7}).status_code == 200


def test_a_hook_cannot_move_a_record_out_of_scope_either(world, loom_app, loom_engine):
    import loom

    ids = world["ids"]

    class GiveAway:
        @loom.hookimpl
        def before_record_create(self, entity, values):
            if values.get("title") == "hand over":
                values["owner"] = ids["sun"]

    loom_app.extensions["loom"].plugins.register(GiveAway())
    assert_refused(world["client"].post("/api/v1/deal", json={"title": "hand over"}), "owner")
    assert deals(loom_engine) == []


def test_an_import_rejects_only_the_rows_that_leave_the_scope(world, loom_app, loom_engine):
    from flask import g

    from loom.records.door import record_context
    from loom.records.service import RecordService
    from loom.ui.importing import import_chunk

    ids = world["ids"]
    principal = loom_app.extensions["loom"].identity.principal_for("wang")
    with loom_app.test_request_context():
        g.principal = principal
        svc = RecordService(record_context(principal), "deal")
        imported, rejected = import_chunk(svc, [(2, ["kept"], {"title": "kept"}),
                                                (3, ["given"], {"title": "given", "owner": ids["sun"]})])
    assert imported == 1 and [row["line"] for row in rejected] == [3]
    assert "outside the records you may create" in rejected[0]["reason"]
    assert deals(loom_engine) == [("kept", ids["wang"], None)]
