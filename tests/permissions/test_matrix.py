"""The permission matrix of the demo roles, generated from the metadata.

For every seed role x entity x action x field, what the API does must equal what the
role documents declare: allowed actions work, denied ones fail the declared way, rows
outside the scope do not exist, and no unreadable field shows up in any reply, by name
or by value (every record holds a unique marker in every field, and replies are
searched for the markers of fields the caller may not read)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from importlib.resources import as_file, files

import pytest

from loom.metadata.model import ACCESS_LEVELS
from loom.metadata.validators import uscc_check_character
from loom.schema.service import model_from_documents

USERS = {  # username: (role, team)
    "boss": ("admin", None),
    "wang": ("sales_rep", "shanghai"),
    "zhao": ("sales_rep", "hangzhou"),
    "sun": ("sales_rep", "beijing"),
    "li": ("sales_manager", "east"),
    "zhang": ("finance", None),
    "liu": ("service_agent", None),
    "chen": ("auditor", None),
    "nobody": (None, None),
}
TEAMS = {"east": None, "shanghai": "east", "hangzhou": "east", "north": None, "beijing": "north"}
ACTIONS = ("read", "create", "update", "delete", "export")


# -- the declared policy, evaluated independently of Loom's implementation -------------

def ancestry(model, role):
    seen, pending = [], [role] if role else []
    while pending:
        current = pending.pop(0)
        if current not in seen and current in model.roles:
            seen.append(current)
            pending.extend(model.roles[current].inherits)
    return seen


def grants(model, role, entity, action):
    found = []
    for name in ancestry(model, role):
        role_grants = model.roles[name].grants
        grant = role_grants.get(entity) or role_grants.get("*")
        if grant is not None and action in grant.actions:
            found.append(grant)
    return found


def field_level(model, role, entity, field, action):
    levels = [ACCESS_LEVELS[g.access(field)] for g in grants(model, role, entity.name, action)]
    return max(levels, default=0)


def readable(model, role, entity):
    names = {f for f in entity.all_fields if field_level(model, role, entity, f, "read") >= 1}
    if grants(model, role, entity.name, "read"):
        names |= {"id", "version"} & set(entity.all_fields)
    return names


def writable(model, role, entity, action):
    return {f for f in readable(model, role, entity) if field_level(model, role, entity, f, action) == 2}


def in_scope(model, role, entity, action, owner, user_id, team_members):
    for grant in grants(model, role, entity, action):
        if grant.scope == "all":
            return True
        if grant.scope == "own" and owner == user_id:
            return True
        if grant.scope == "team" and owner in team_members:
            return True
    return False


# -- data with a unique marker in every field ------------------------------------------

class Markers:
    def __init__(self):
        self.counter = itertools.count(1)
        self.by_field: dict[tuple[str, str], set[str]] = {}

    def new(self, entity, field, value):
        self.by_field.setdefault((entity, field), set()).add(str(value))
        return value

    def value(self, model, entity, field, links):
        n = next(self.counter)
        kind = field.type
        if kind in ("string", "text"):
            if "uscc" in field.validators:
                first17 = f"91310000{n:09d}"
                return self.new(entity.name, field.name, first17 + uscc_check_character(first17))
            return self.new(entity.name, field.name, f"mk{n:05d}q")
        if kind == "phone":
            return self.new(entity.name, field.name, f"139{n:08d}")
        if kind == "email":
            return self.new(entity.name, field.name, f"mk{n:05d}q@example.com")
        if kind == "url":
            return self.new(entity.name, field.name, f"https://mk{n:05d}q.example.com")
        if kind == "integer":
            return self.new(entity.name, field.name, 7100000 + n)
        if kind in ("decimal", "money", "percent"):
            return self.new(entity.name, field.name, f"8{n:06d}.37")
        if kind == "select":
            return field.options[-1].value
        if kind == "multiselect":
            return [field.options[0].value]
        if kind == "boolean":
            return True
        if kind == "date":
            return (dt.date(2020, 1, 1) + dt.timedelta(days=n)).isoformat()
        if kind == "datetime":
            return (dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n)).isoformat()
        if kind == "link":
            return links[field.target]
        if kind == "table":
            child = model.entity(field.target)
            return [{f.name: self.value(model, child, f, links) for f in child.stored_fields}]
        if kind == "json":
            return {"m": self.new(entity.name, field.name, f"mk{n:05d}q")}
        return None


def link_order(model):
    """Entities in an order where link targets come first."""
    order, pending = [], [e for e in model.entities.values() if not e.child]
    while pending:
        for entity in list(pending):
            targets = {f.target for f in entity.fields if f.type == "link" and f.target != "user"}
            targets |= {f.target for child in (model.entity(t.target) for t in entity.table_fields)
                        for f in child.fields if f.type == "link"}
            if targets <= {e.name for e in order} | {entity.name}:
                order.append(entity)
                pending.remove(entity)
    return order


@pytest.fixture
def crm(loom_app, make_user, client_for, apply_metadata, loom_client):
    with as_file(files("loom.seed").joinpath("crm")) as folder:
        model = loom_app.extensions["loom"].metadata.load_directory(folder)
    apply_metadata(*[dict(d) for d in model.documents])
    identity = loom_app.extensions["loom"].identity
    for team, parent in TEAMS.items():
        identity.create_team(team, parent=parent)
    ids = {name: make_user(name, roles=[role] if role else [], team=team) for name, (role, team) in USERS.items()}
    markers = Markers()
    records: dict[str, list[dict]] = {}
    links: dict[str, int] = {"user": ids["wang"]}
    owners = [ids["wang"], ids["zhao"], ids["sun"], ids["li"], None]
    for entity in link_order(model):
        records[entity.name] = []
        for owner in owners:
            body = {f.name: markers.value(model, entity, f, links) for f in entity.fields}
            body["owner"] = owner
            response = loom_client.post(f"/api/v1/{entity.name}", json=body)
            assert response.status_code == 201, response.get_json()
            records[entity.name].append(response.get_json()["data"])
        links[entity.name] = records[entity.name][0]["id"]
    team_members = {
        name: {ids[u] for u, (_, team) in USERS.items() if team in _subteams(USERS[name][1])}
        for name in USERS
    }
    return {"model": model_from_documents(model.documents), "ids": ids, "records": records, "markers": markers,
            "links": links, "team_members": team_members, "client_for": client_for, "admin": loom_client}


def _subteams(team):
    if team is None:
        return set()
    found = {team}
    for name, parent in TEAMS.items():
        if parent == team:
            found |= _subteams(name)
    return found


def visible_fields(model, role, entity_name, reply_entity):
    """The fields of ``entity_name`` whose values may appear in a reply about ``reply_entity``."""
    entity = model.entity(entity_name)
    if entity.child:
        parent, table_field = model.parents[entity_name]
        if grants(model, role, entity_name, "read"):
            return readable(model, role, entity)
        return set(entity.all_fields) if field_level(model, role, parent, table_field.name, "read") >= 1 else set()
    if entity_name == reply_entity:
        return readable(model, role, entity)
    # a linked record shows its title only, and only to a caller who may read that
    return {entity.title_field} & readable(model, role, entity)


def assert_no_leak(text, crm, role, reply_entity):
    """No marker of a field the caller may not read appears anywhere in ``text``."""
    model = crm["model"]
    for (entity_name, field_name), values in crm["markers"].by_field.items():
        if field_name in visible_fields(model, role, entity_name, reply_entity):
            continue
        for value in values:
            assert value not in text, f"{entity_name}.{field_name} leaked to {role} in a {reply_entity} reply"


@pytest.mark.parametrize("username", list(USERS))
def test_the_api_obeys_the_declared_policy(crm, username):
    model, ids = crm["model"], crm["ids"]
    role = USERS[username][0]
    user_id = ids[username]
    client = crm["client_for"](username)
    members = crm["team_members"][username]
    for entity in (e for e in model.entities.values() if not e.child):
        name = entity.name
        can = {a: bool(grants(model, role, name, a)) for a in ACTIONS}
        seeable = readable(model, role, entity)
        records = crm["records"][name]

        # read: exactly the rows in scope, exactly the readable fields
        listed = client.get(f"/api/v1/{name}?limit=500")
        if not can["read"]:
            assert listed.status_code == 403, (username, name)
        else:
            assert listed.status_code == 200
            expected = {r["id"] for r in records if in_scope(model, role, name, "read",
                                                             r["owner"] and r["owner"]["id"], user_id, members)}
            got = listed.get_json()["data"]
            assert {r["id"] for r in got} == expected, (username, name)
            for record in got:
                assert set(record) == seeable, (username, name, set(record) ^ seeable)
            assert_no_leak(listed.get_data(as_text=True), crm, role, name)
            for record in records:
                single = client.get(f"/api/v1/{name}/{record['id']}")
                assert single.status_code == (200 if record["id"] in expected else 404)
                assert_no_leak(single.get_data(as_text=True) + json.dumps(dict(single.headers)), crm, role, name)
            for field in set(entity.all_fields) - seeable:
                for query in (f"filter[{field}][isnull]=false", f"sort={field}", f"fields={field}"):
                    hidden = client.get(f"/api/v1/{name}?{query}")
                    ghost = client.get(f"/api/v1/{name}?{query.replace(field, 'zz_no_such_field')}")
                    assert hidden.status_code == ghost.status_code == 400
                    assert hidden.get_json()["detail"] == ghost.get_json()["detail"].replace("zz_no_such_field", field)
            spec = client.get("/api/openapi.json").get_json()
            assert set(spec["components"]["schemas"][name]["properties"]) == seeable

        # export: the rows in the export scope, readable fields only
        exported = client.get(f"/api/v1/{name}/_export?format=jsonl")
        if not can["export"]:
            assert exported.status_code == 403
        else:
            lines = [json.loads(line) for line in exported.get_data(as_text=True).splitlines()]
            expected = {r["id"] for r in records if in_scope(model, role, name, "export",
                                                             r["owner"] and r["owner"]["id"], user_id, members)}
            assert {line["id"] for line in lines} == expected
            assert all(set(line) <= seeable for line in lines)
            assert_no_leak(exported.get_data(as_text=True), crm, role, name)

        # update: writable fields change, read-only ones get 403 naming them, unreadable are unknown
        target = next((r for r in records if in_scope(model, role, name, "update",
                                                      r["owner"] and r["owner"]["id"], user_id, members)), None)
        outside = next((r for r in records if not in_scope(model, role, name, "update",
                                                           r["owner"] and r["owner"]["id"], user_id, members)), None)
        text_fields = [f for f in entity.stored_fields if f.type != "link"]
        if not can["update"]:
            assert client.patch(f"/api/v1/{name}/{records[0]['id']}", json={}).status_code == 403
        else:
            for f in text_fields:
                if target is None:
                    break
                value = crm["markers"].value(model, entity, f, crm["links"])
                response = client.patch(f"/api/v1/{name}/{target['id']}", json={f.name: value})
                if f.name in writable(model, role, entity, "update"):
                    assert response.status_code == 200, (username, name, f.name, response.get_json())
                elif f.name in seeable:
                    assert response.status_code == 403
                    assert response.get_json()["errors"] == [
                        {"field": f.name, "message": "you may read this field but not change it"}]
                else:
                    assert response.status_code == 422
                    assert response.get_json()["errors"][0]["message"].startswith("unknown field")
            if outside is not None and text_fields:
                field = text_fields[0]
                value = crm["markers"].value(model, entity, field, crm["links"])
                response = client.patch(f"/api/v1/{name}/{outside['id']}", json={field.name: value})
                assert response.status_code == 404

        # create and delete: a fresh record, owned by the caller
        if not can["create"]:
            assert client.post(f"/api/v1/{name}", json={}).status_code == 403
        else:
            allowed = writable(model, role, entity, "create")
            # links may only point at records the caller can read
            reachable = {"user": user_id}
            for target, target_records in crm["records"].items():
                found = [r["id"] for r in target_records if in_scope(model, role, target, "read",
                                                                     r["owner"] and r["owner"]["id"], user_id, members)]
                if found:
                    reachable[target] = found[0]
            body = {f.name: crm["markers"].value(model, entity, f, reachable) for f in entity.fields
                    if f.name in allowed and (f.type != "link" or f.target in reachable)}
            response = client.post(f"/api/v1/{name}", json=body)
            complete = all(f.name in body for f in entity.fields if f.required)
            assert response.status_code == (201 if complete else 422), (username, name, response.get_json())
            if complete:
                assert set(response.get_json()["data"]) == seeable
            for f in entity.fields:
                if f.name in seeable and f.name not in allowed:
                    value = crm["markers"].value(model, entity, f, crm["links"])
                    refused = client.post(f"/api/v1/{name}", json={**body, f.name: value})
                    assert refused.status_code == 403 and refused.get_json()["errors"][0]["field"] == f.name
        if not can["delete"]:
            assert client.delete(f"/api/v1/{name}/{records[0]['id']}").status_code == 403
        else:
            mine = crm["admin"].post(f"/api/v1/{name}", json={
                **{f.name: crm["markers"].value(model, entity, f, crm["links"]) for f in entity.fields},
                "owner": user_id}).get_json()["data"]
            expected_status = 204 if in_scope(model, role, name, "delete", user_id, user_id, members) else 404
            assert client.delete(f"/api/v1/{name}/{mine['id']}").status_code == expected_status


def test_cross_user_attempts_on_every_record_endpoint_are_404(crm):
    """Reading, changing or deleting another rep's record by id: as if it did not exist."""
    model, ids = crm["model"], crm["ids"]
    wang = crm["client_for"]("wang")
    checked = 0
    for name, records in crm["records"].items():
        theirs = next(r for r in records if r["owner"] and r["owner"]["id"] == ids["zhao"])
        if not grants(model, "sales_rep", name, "read") or in_scope(model, "sales_rep", name, "read", ids["zhao"],
                                                                     ids["wang"], set()):
            continue
        url = f"/api/v1/{name}/{theirs['id']}"
        assert wang.get(url).status_code == 404
        for action, method in (("update", wang.patch), ("delete", wang.delete)):
            denied = 404 if grants(model, "sales_rep", name, action) else 403
            assert method(url, json={}).status_code == denied
        assert wang.get(f"/api/v1/{name}?filter[id][eq]={theirs['id']}").get_json()["data"] == []
        found = wang.get(f"/api/v1/{name}?search=mk&limit=500").get_json()["data"]
        assert theirs["id"] not in {r["id"] for r in found}
        checked += 1
    assert checked >= 3


def test_a_link_to_an_unreadable_record_shows_its_id_only(crm):
    zhang = crm["client_for"]("zhang")  # finance: reads orders and customer names, nothing of products
    order = zhang.get("/api/v1/sales_order?limit=1").get_json()["data"][0]
    assert order["customer"]["title"] is not None
    assert set(order) == {"id", "version", "number", "customer", "total", "status"}
    wang = crm["client_for"]("wang")
    mine = wang.get("/api/v1/sales_order?limit=1").get_json()["data"][0]
    customer = crm["admin"].get(f"/api/v1/customer/{mine['customer']['id']}").get_json()["data"]
    visible = wang.get(f"/api/v1/customer/{customer['id']}").status_code == 200
    assert (mine["customer"]["title"] is not None) == visible
