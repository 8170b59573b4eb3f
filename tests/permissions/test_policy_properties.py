"""Property test: random role documents and random requests never expose a field or a
row the declared policy forbids."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = ["a", "b", "c", "secret"]
CHOICES = ["kqx", "kqy", "kqz"]
ITEM = {"kind": "entity", "name": "item", "fields": [
    {"name": "a", "type": "string"}, {"name": "b", "type": "integer"},
    {"name": "c", "type": "select", "options": [{"value": v} for v in CHOICES]},
    {"name": "secret", "type": "string"}]}


@pytest.fixture
def world(apply_metadata, make_user, client_for, loom_client, loom_app):
    apply_metadata(ITEM, {"kind": "role", "name": "r"})
    identity = loom_app.extensions["loom"].identity
    identity.create_team("t1")
    identity.create_team("t2")
    ids = {"u1": make_user("u1", roles=["r"], team="t1"), "u2": make_user("u2", team="t1"),
           "u3": make_user("u3", team="t2")}
    records = []
    for i in range(12):
        owner = [ids["u1"], ids["u2"], ids["u3"], None][i % 4]
        body = {"a": f"va{i:03d}", "b": i, "c": CHOICES[i % 3], "secret": f"vs{i:03d}", "owner": owner}
        records.append(loom_client.post("/api/v1/item", json=body).get_json()["data"])
    return {"ids": ids, "records": records, "client": client_for("u1"), "apply": apply_metadata}


conditions = st.one_of(
    st.builds(lambda v: {"c": {"in": v}}, st.lists(st.sampled_from(CHOICES), min_size=1, max_size=3, unique=True)),
    st.builds(lambda n: {"b": {"gt": n}}, st.integers(-1, 12)),
    st.builds(lambda v: {"any": [{"c": {"eq": v}}, {"owner": {"eq": "$user.id"}}]}, st.sampled_from(CHOICES)),
)
scopes = st.one_of(st.sampled_from(["own", "team", "all"]), st.builds(lambda c: {"where": c}, conditions))
roles = st.fixed_dictionaries({
    "actions": st.lists(st.sampled_from(["read", "export", "update"]), unique=True),
    "scope": scopes,
    "fields": st.dictionaries(st.sampled_from(FIELDS + ["*"]), st.sampled_from(["write", "read", "none"])),
})
requests = st.lists(st.one_of(
    st.builds(lambda f, v: f"filter[{f}][eq]={v}", st.sampled_from(FIELDS + ["owner"]), st.sampled_from(["1", "kqx", "va001"])),
    st.builds(lambda f: f"sort=-{f}", st.sampled_from(FIELDS)),
    st.builds(lambda f: f"fields={f}", st.sampled_from(FIELDS)),
    st.builds(lambda t: f"search={t}", st.sampled_from(["va", "vs", "0"])),
), max_size=3)


def allowed_row(record, grant, me, team):
    owner = record["owner"] and record["owner"]["id"]
    scope = grant.get("scope", "all")
    if scope == "all":
        return True
    if scope == "own":
        return owner == me
    if scope == "team":
        return owner in team
    return matches(record, scope["where"], me)


def matches(record, condition, me):
    results = []
    for key, value in condition.items():
        if key == "any":
            results.append(any(matches(record, c, me) for c in value))
            continue
        actual = record[key]["id"] if key == "owner" and record[key] else record[key]
        for op, operand in value.items():
            operand = me if operand == "$user.id" else operand
            if op == "in":
                results.append(actual in operand)
            elif op == "eq":
                results.append(actual == operand)
            elif op == "gt":
                results.append(actual is not None and actual > operand)
    return all(results)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grant=roles, queries=requests)
def test_no_request_sees_more_than_the_role_allows(world, grant, queries):
    world["apply"](ITEM, {"kind": "role", "name": "r", "permissions": {"item": grant}})
    client, ids = world["client"], world["ids"]
    me, team = ids["u1"], {ids["u1"], ids["u2"]}
    levels = {f: grant["fields"].get(f, grant["fields"].get("*", "write")) for f in FIELDS}
    readable_fields = {f for f, level in levels.items() if level != "none"}
    can_read = "read" in grant["actions"]
    visible_rows = {r["id"] for r in world["records"] if allowed_row(r, grant, me, team)}
    hidden_values = {r[f] for r in world["records"] for f in FIELDS if f not in readable_fields and f != "b"}

    response = client.get("/api/v1/item?" + "&".join([*queries, "limit=500"]))
    text = response.get_data(as_text=True)
    if not can_read:
        assert response.status_code == 403
        return
    assert response.status_code in (200, 400)
    assert not any(value in text for value in hidden_values)
    if response.status_code == 200:
        for record in response.get_json()["data"]:
            assert record["id"] in visible_rows
            assert set(record) - {"id", "version", "owner", "created_at", "created_by", "updated_at",
                                  "updated_by"} <= readable_fields
    for record in world["records"]:
        single = client.get(f"/api/v1/item/{record['id']}")
        assert single.status_code == (200 if record["id"] in visible_rows else 404)
        assert not any(value in single.get_data(as_text=True) for value in hidden_values)
    exported = client.get("/api/v1/item/_export?format=jsonl")
    if "export" in grant["actions"]:
        rows = [json.loads(line) for line in exported.get_data(as_text=True).splitlines()]
        assert {row["id"] for row in rows} <= visible_rows
        assert not any(value in exported.get_data(as_text=True) for value in hidden_values)
    else:
        assert exported.status_code == 403
