"""The permission matrix: for every user x entity x action, what Loom does must equal what
the role documents declare.

The roles are the demo's, plus generated ones that use condition (``where``) scopes, a user
holding two roles at once, a manager over teams two levels deep and the ``import`` and
``approve`` actions, on the demo's entities and a generated one (``lead``). The declared
policy is evaluated independently of Loom's code (matrix_world), and each (user, entity, action) is
its own test case, so one failure hides no other.

Every record holds a unique marker in every field, and replies are searched for the markers
of fields the caller may not read. The cases share one world of records per database (a
fresh one per case would take minutes); each case computes what it expects from the records
as they are when it runs, so cases that write do not disturb the others.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from loom.cli import main

from .matrix_world import (
    ACTIONS,
    ENTITIES,
    MODEL,
    USERS,
    World,
    ancestry,
    grants,
    in_scope,
    readable,
    settable,
    value_of,
    writable,
)


@pytest.fixture(scope="module")
def world(module_app):
    return World(module_app)


# -- one case per (user, entity, action) -----------------------------------------------

def check_read(world, caller, entity, client):
    name = entity.name
    listed = client.get(f"/api/v1/{name}?limit=500")
    records = world.records(name)
    if not grants(caller.roles, name, "read"):
        assert listed.status_code == 403
        assert client.get(f"/api/v1/{name}/{records[0]['id']}").status_code == 403
        assert name not in {e["name"] for e in client.get("/api/v1/_meta/entities").get_json()["data"]}
        return
    seeable = readable(caller.roles, entity)
    assert listed.status_code == 200
    expected = {r["id"] for r in records if in_scope(caller, name, "read", r)}
    got = listed.get_json()["data"]
    assert {r["id"] for r in got} == expected
    for record in got:
        assert set(record) == seeable, set(record) ^ seeable
    world.assert_no_leak(listed.get_data(as_text=True), caller, name)
    for record in records:
        single = client.get(f"/api/v1/{name}/{record['id']}")
        assert single.status_code == (200 if record["id"] in expected else 404)
        world.assert_no_leak(single.get_data(as_text=True) + json.dumps(dict(single.headers)), caller, name)
    # a hidden field cannot be filtered, sorted or selected on: the same answer as a field that does not exist
    for field in sorted(set(entity.all_fields) - seeable):
        for query in (f"filter[{field}][isnull]=false", f"sort={field}", f"fields={field}"):
            hidden = client.get(f"/api/v1/{name}?{query}")
            ghost = client.get(f"/api/v1/{name}?{query.replace(field, 'zz_no_such_field')}")
            assert hidden.status_code == ghost.status_code == 400
            assert hidden.get_json()["detail"] == ghost.get_json()["detail"].replace("zz_no_such_field", field)
    spec = client.get("/api/openapi.json").get_json()
    assert set(spec["components"]["schemas"][name]["properties"]) == seeable
    meta = next(e for e in client.get("/api/v1/_meta/entities").get_json()["data"] if e["name"] == name)
    assert {f["name"] for f in meta["fields"]} == seeable
    assert meta["actions"] == [a for a in ("read", "create", "update", "delete", "export", "import")
                               if grants(caller.roles, name, a)]


def check_export(world, caller, entity, client):
    name = entity.name
    exported = client.get(f"/api/v1/{name}/_export?format=jsonl")
    if not grants(caller.roles, name, "export"):
        assert exported.status_code == 403
        return
    assert exported.status_code == 200
    lines = [json.loads(line) for line in exported.get_data(as_text=True).splitlines()]
    expected = {r["id"] for r in world.records(name) if in_scope(caller, name, "export", r)}
    assert {line["id"] for line in lines} == expected
    assert all(set(line) <= readable(caller.roles, entity) for line in lines)
    world.assert_no_leak(exported.get_data(as_text=True), caller, name)


def check_update(world, caller, entity, client):
    name = entity.name
    records = world.records(name)
    if not grants(caller.roles, name, "update"):
        assert client.patch(f"/api/v1/{name}/{records[0]['id']}", json={}).status_code == 403
        return
    seeable, allowed = readable(caller.roles, entity), writable(caller.roles, entity, "update")
    reachable = [r for r in records if in_scope(caller, name, "update", r)]
    outside = [r for r in records if not in_scope(caller, name, "update", r)]
    # the world gives every user with update at least one record to change
    assert reachable, "no record in the update scope: the world must hold one"
    target = reachable[0]
    # links are left out: linking is checked against the read scope of the target entity
    for f in (f for f in entity.stored_fields if f.type != "link"):
        value = world.markers.value(entity, f, world.links)
        response = client.patch(f"/api/v1/{name}/{target['id']}", json={f.name: value})
        if f.name in seeable and not settable(f):  # Loom works it out: nobody sets it
            assert response.status_code == 422, (f.name, response.get_json())
            assert response.get_json()["errors"][0]["code"] in ("computed", "read_only")
        elif f.name in allowed:
            changed = {**target, f.name: value}
            if f.name == entity.owner_field:  # whose record it is follows that field
                changed["owner"] = value
            still_in = in_scope(caller, name, "update", changed)
            if breaks_rule(entity, changed):
                assert response.status_code == 422, (f.name, response.get_json())
                assert {e["code"] for e in response.get_json()["errors"]} == {"rule_failed"}
            elif still_in:
                assert response.status_code == 200, (f.name, response.get_json())
                target = world.admin.get(f"/api/v1/{name}/{target['id']}").get_json()["data"]
            else:
                assert response.status_code == 422, (f.name, response.get_json())
                assert "outside the records you may" in response.get_json()["detail"]
        elif f.name in seeable:
            assert response.status_code == 403
            assert response.get_json()["errors"] == [{"field": f.name, "code": "forbidden_field", "params": {},
                                                      "message": "you may read this field but not change it"}]
        else:
            assert response.status_code == 422
            assert response.get_json()["errors"][0]["message"].startswith("unknown field")
    if not outside:
        # every record is reachable only when a grant of update covers every row
        assert any(g.scope == "all" for g in grants(caller.roles, name, "update"))
        return
    field = next(f for f in entity.stored_fields if f.type != "link" and settable(f))
    response = client.patch(f"/api/v1/{name}/{outside[0]['id']}",
                            json={field.name: world.markers.value(entity, field, world.links)})
    assert response.status_code == 404


def breaks_rule(entity, record) -> bool:
    """Whether ``record`` (as the API shows it) meets one of the entity's rules, which make
    a record invalid: Loom refuses such a write whoever makes it."""
    values = {}
    for f in entity.fields:
        value = value_of(record, f.name)
        if value is not None and f.type == "date":
            value = dt.date.fromisoformat(value)
        elif value is not None and f.type in ("decimal", "money", "percent"):
            value = Decimal(value)
        values[f.name] = value
    return any(rule.when_expr.evaluate(values) is True for rule in entity.rules)


def check_create(world, caller, entity, client):
    name = entity.name
    if not grants(caller.roles, name, "create"):
        assert client.post(f"/api/v1/{name}", json={}).status_code == 403
        return
    seeable, allowed = readable(caller.roles, entity), writable(caller.roles, entity, "create")
    reachable = world.reachable_links(caller)
    body = {f.name: world.markers.value(entity, f, reachable) for f in entity.fields
            if f.name in allowed and settable(f) and (f.type != "link" or f.target in reachable)}
    body = world.fitting(caller, entity, "create", body)
    missing = [f.name for f in entity.fields if f.required and f.name not in body]
    response = client.post(f"/api/v1/{name}", json=body)
    if missing:
        assert response.status_code == 422, response.get_json()
        assert set(missing) <= {e["field"] for e in response.get_json()["errors"]}
    elif not in_scope(caller, name, "create", {**body, "owner": caller.id}):
        assert response.status_code == 422, response.get_json()
        assert "outside the records you may create" in response.get_json()["detail"]
    else:
        assert response.status_code == 201, response.get_json()
        made = response.get_json()["data"]
        assert set(made) == seeable
        assert (made.get("owner") or {"id": caller.id})["id"] == caller.id
    for f in entity.fields:
        if f.name in seeable and f.name not in allowed and settable(f):
            value = world.markers.value(entity, f, world.links)
            refused = client.post(f"/api/v1/{name}", json={**body, f.name: value})
            assert refused.status_code == 403 and refused.get_json()["errors"][0]["field"] == f.name


def check_delete(world, caller, entity, client):
    name = entity.name
    records = world.records(name)
    if not grants(caller.roles, name, "delete"):
        assert client.delete(f"/api/v1/{name}/{records[0]['id']}").status_code == 403
        return
    body = {f.name: world.markers.value(entity, f, world.links) for f in entity.fields if settable(f)}
    body = world.fitting(caller, entity, "delete", {**body, "owner": caller.id, entity.owner_field: caller.id})
    made = world.admin.post(f"/api/v1/{name}", json=body)
    assert made.status_code == 201, made.get_json()
    mine = made.get_json()["data"]
    assert client.delete(f"/api/v1/{name}/{mine['id']}").status_code == (
        204 if in_scope(caller, name, "delete", mine) else 404)
    outside = [r for r in records if not in_scope(caller, name, "delete", r)]
    if not outside:
        assert any(g.scope == "all" for g in grants(caller.roles, name, "delete"))
        return
    assert client.delete(f"/api/v1/{name}/{outside[0]['id']}").status_code == 404
    assert world.admin.get(f"/api/v1/{name}/{outside[0]['id']}").status_code == 200


def check_transfer(world, caller, entity, client):
    """Giving records to another owner needs ``transfer``, and reaches only records the
    caller may update; the new owner may be anyone (sun, of another region here)."""
    name, to = entity.name, world.ids["sun"]
    records = world.records(name)
    if not grants(caller.roles, name, "transfer"):
        refused = client.post(f"/api/v1/{name}/_transfer", json={"ids": [records[0]["id"]], "to": to})
        assert refused.status_code == 403, refused.get_json()
        assert world.admin.get(f"/api/v1/{name}/{records[0]['id']}").get_json()["data"] == records[0]
        return
    body = {f.name: world.markers.value(entity, f, world.links) for f in entity.fields if settable(f)}
    body = world.fitting(caller, entity, "update", {**body, "owner": caller.id, entity.owner_field: caller.id})
    made = world.admin.post(f"/api/v1/{name}", json=body)
    assert made.status_code == 201, made.get_json()
    mine = made.get_json()["data"]
    moved = client.post(f"/api/v1/{name}/_transfer", json={"ids": [mine["id"]], "to": to})
    if not (grants(caller.roles, name, "update") and in_scope(caller, name, "update", mine)):
        assert moved.status_code in (403, 404), moved.get_json()
        return
    assert moved.status_code == 200, moved.get_json()
    now = world.admin.get(f"/api/v1/{name}/{mine['id']}").get_json()["data"]
    assert value_of(now, "owner") == value_of(now, entity.owner_field) == to
    outside = [r for r in records if not in_scope(caller, name, "update", r)]
    if outside:
        assert client.post(f"/api/v1/{name}/_transfer",
                           json={"ids": [outside[0]["id"]], "to": to}).status_code == 404
        assert world.admin.get(f"/api/v1/{name}/{outside[0]['id']}").get_json()["data"] == outside[0]


def _import_jobs(world):
    with world.app.extensions["loom"].engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM loom_import_jobs")).scalar()


def check_import(world, caller, entity, client):
    """Importing is a screen; it needs both import and create (each row is created)."""
    name = entity.name
    screens = world.screens(caller.name)
    may = bool(grants(caller.roles, name, "import")) and bool(grants(caller.roles, name, "create"))
    jobs = _import_jobs(world)
    start = screens.get(f"/r/{name}/_import")
    upload = screens.post(f"/r/{name}/_import", {"file": (io.BytesIO(b"name\nmk_imported\n"), "rows.csv")},
                          content_type="multipart/form-data")
    if not may:
        assert start.status_code == 403
        assert upload.status_code == 403
        assert _import_jobs(world) == jobs
        return
    assert start.status_code == 200
    assert upload.status_code == 303, upload.get_data(as_text=True)
    assert _import_jobs(world) == jobs + 1
    assert screens.get(upload.headers["Location"]).status_code == 200


def check_approve(world, caller, entity, client, monkeypatch):
    """No screen or route approves yet: ``approve`` is declared in roles and explained by
    ``loom perm explain``, which says who holds it through which role and scope."""
    url = str(world.app.extensions["loom"].engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("LOOM_DATABASE_URL", url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", world.app.instance_path)
    monkeypatch.setenv("LOOM_SECRET_KEY", "test-secret")
    result = CliRunner().invoke(main, ["perm", "explain", caller.name, entity.name, "approve"],
                                catch_exceptions=False)
    granted = grants(caller.roles, entity.name, "approve")
    if granted:
        assert result.exit_code == 0, result.output
        assert f"ALLOWED: approve on {entity.name}" in result.output
        for role in ancestry(caller.roles):
            grant = MODEL.roles[role].grants.get(entity.name) or MODEL.roles[role].grants.get("*")
            if grant is not None and "approve" in grant.actions:
                assert f"by role {role}: scope" in result.output
    else:
        assert result.exit_code == 1, result.output
        assert f"REFUSED: no role of {caller.name} grants approve on {entity.name}" in result.output


CHECKS = {"read": check_read, "export": check_export, "update": check_update, "create": check_create,
          "delete": check_delete, "import": check_import, "transfer": check_transfer}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("entity_name", ENTITIES)
@pytest.mark.parametrize("username", list(USERS))
def test_what_a_user_may_do_is_what_their_roles_declare(world, username, entity_name, action, monkeypatch):
    caller, entity = world.callers[username], MODEL.entity(entity_name)
    client = world.client(username)
    if action == "approve":
        check_approve(world, caller, entity, client, monkeypatch)
    else:
        CHECKS[action](world, caller, entity, client)


def test_the_matrix_covers_every_action_and_scope_kind():
    """The cases above are only as good as the roles they run: every action and every
    kind of scope must be granted to someone, and refused to someone, in the world."""
    held = {(a, g.scope) for roles, _ in USERS.values() for name in ancestry(roles)
            for g in MODEL.roles[name].grants.values() for a in g.actions}
    assert {a for a, _ in held} == set(ACTIONS)
    assert {s for _, s in held} == {"own", "team", "all", "where"}
    for action in ACTIONS:
        refused = [u for u, (roles, _) in USERS.items() if not any(grants(roles, e, action) for e in ENTITIES)]
        assert refused, action


# -- the scopes, stated by hand ---------------------------------------------------------

def owners_seen(world, username, entity):
    listed = world.client(username).get(f"/api/v1/{entity}?limit=500").get_json()["data"]
    names = {v: k for k, v in world.ids.items()}
    return {names.get(r["owner"]["id"]) if r["owner"] else None for r in listed}


def test_a_manager_sees_their_team_and_every_team_below_it(world):
    # li leads east: shanghai and hangzhou below it, pudong below shanghai; sun is in north
    assert owners_seen(world, "li", "customer") == {"wang", "zhao", "qian", "li", "he"}
    assert owners_seen(world, "qian", "customer") == {"qian"}
    sun_customer = next(r for r in world.records("customer") if r["owner"] and r["owner"]["id"] == world.ids["sun"])
    assert world.client("li").get(f"/api/v1/customer/{sun_customer['id']}").status_code == 404


def test_a_condition_scope_admits_exactly_the_rows_it_describes(world):
    ma = world.ids["ma"]
    expected = {r["id"] for r in world.records("lead")
                if r["region"] == "north" or (r["account_manager"] and r["account_manager"]["id"] == ma)}
    seen = {r["id"] for r in world.client("ma").get("/api/v1/lead?limit=500").get_json()["data"]}
    assert seen == expected
    assert 0 < len(seen) < len(world.records("lead"))


def test_two_roles_combine_by_union(world):
    """he is finance (every customer's name) and field_agent (the team's customers' names
    and regions): every customer, with the region readable through the one role that has it."""
    listed = world.client("he").get("/api/v1/customer?limit=500").get_json()["data"]
    assert {r["id"] for r in listed} == {r["id"] for r in world.records("customer")}
    assert all(set(r) == {"id", "version", "name", "region"} for r in listed)


def test_cross_user_attempts_on_every_record_endpoint_are_404(world):
    """Reading, changing or deleting another rep's record by id: as if it did not exist."""
    wang, rep = world.client("wang"), world.callers["wang"]
    checked = 0
    for name in ENTITIES:
        if not grants(rep.roles, name, "read"):
            continue
        theirs = [r for r in world.records(name) if not in_scope(rep, name, "read", r)]
        if not theirs:
            continue
        url = f"/api/v1/{name}/{theirs[0]['id']}"
        assert wang.get(url).status_code == 404
        for action, method in (("update", wang.patch), ("delete", wang.delete)):
            assert method(url, json={}).status_code == (404 if grants(rep.roles, name, action) else 403)
        assert wang.get(f"/api/v1/{name}?filter[id][eq]={theirs[0]['id']}").get_json()["data"] == []
        found = wang.get(f"/api/v1/{name}?search=mk&limit=500").get_json()["data"]
        assert theirs[0]["id"] not in {r["id"] for r in found}
        checked += 1
    assert checked >= 3


def test_a_link_to_an_unreadable_record_shows_its_id_only(world):
    zhang = world.client("zhang")  # finance: reads orders and customer names, nothing of products
    order = zhang.get("/api/v1/sales_order?limit=1").get_json()["data"][0]
    assert order["customer"]["title"] is not None
    assert set(order) == {"id", "version", "number", "customer", "total", "status"}
    # an order of wang's for a customer of sun's: wang sees which customer by id only
    customers = {value_of(r, "owner"): r for r in world.records("customer")}
    made = world.admin.post("/api/v1/sales_order", json={
        "customer": customers[world.ids["sun"]]["id"], "owner": world.ids["wang"]})
    assert made.status_code == 201, made.get_json()
    wang = world.client("wang")
    seen = wang.get(f"/api/v1/sales_order/{made.get_json()['data']['id']}").get_json()["data"]
    assert seen["customer"] == {"id": customers[world.ids["sun"]]["id"], "title": None}
    own = next(r for r in wang.get("/api/v1/sales_order?limit=500").get_json()["data"]
               if r["customer"]["id"] == customers[world.ids["wang"]]["id"])
    assert own["customer"]["title"] == customers[world.ids["wang"]]["name"]
