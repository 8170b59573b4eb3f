"""Whose record it is and giving records away: an entity's ``owner_field`` decides the
own and team scopes and stays equal to ``owner``; changing the owner out of one's scope
takes the ``transfer`` action, on every path (a plain update, the transfer API, a
read-only token), the new owner must be an active user, and every transfer is logged."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from loom.errors import MetadataError
from loom.metadata import compile_documents, load_text
from loom.principal import Principal
from loom.records.door import record_service

ACCOUNT = [
    {"name": "name", "type": "string", "required": True},
    {"name": "region", "type": "select", "options": [{"value": "east"}, {"value": "north"}]},
    {"name": "account_manager", "type": "link", "target": "user"},
]


def role(name, actions, scope="own", entity="account"):
    return {"kind": "role", "name": name, "permissions": {entity: {"actions": list(actions), "scope": scope}}}


@pytest.fixture
def world(apply_metadata, make_entity, make_user, client_for, loom_client, loom_app):
    """Accounts owned by their account manager; ``rep`` may not transfer, ``lead`` may
    (both within their own records), ``boss`` sees the whole team."""
    account = make_entity("account", ACCOUNT, title_field="name", owner_field="account_manager")
    memo = make_entity("memo", [{"name": "title", "type": "string"}], title_field="title")
    every = ("read", "create", "update")
    apply_metadata(account, memo, role("rep", every),
                   role("lead", (*every, "transfer")),
                   {"kind": "role", "name": "boss", "permissions": {
                       "account": {"actions": [*every, "transfer"], "scope": "team"},
                       "memo": {"actions": [*every, "transfer"], "scope": "team"}}})
    ids = {"wang": make_user("wang", roles=["rep"], team="east"),
           "li": make_user("li", roles=["lead"], team="east"),
           "zhao": make_user("zhao", team="east"),
           "sun": make_user("sun", team="north"),
           "boss": make_user("boss", roles=["boss"], team="east"),
           "gone": make_user("gone", team="east")}
    identity = loom_app.extensions["loom"].identity
    identity.update_user(ids["gone"], {"is_active": False}, actor="test")
    return {"ids": ids, "admin": loom_client, "client": client_for, "app": loom_app}


def accounts(engine):
    with engine.connect() as conn:
        return {row.name: (row.account_manager, row.owner) for row in
                conn.execute(sa.text("SELECT name, account_manager, owner FROM e_account"))}


def audit(engine, action):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT record_id, actor, outcome, detail FROM loom_audit "
                                    "WHERE action = :a ORDER BY seq"), {"a": action}).all()


def create(client, **values):
    response = client.post("/api/v1/account", json=values)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


def codes(response):
    return [e["code"] for e in response.get_json().get("errors", [])]


# -- metadata ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("owner_field", "extra", "message"), [
    ("manager", "", "no field named 'manager'"),
    ("name", "", "the owner field must be a link to user"),
    ("customer", "  - {name: customer, type: link, target: other}\n", "the owner field must be a link to user"),
    ("created_by", "", "standard field Loom maintains"),
])
def test_owner_field_must_be_a_link_to_user_of_the_entity(owner_field, extra, message):
    text = ("kind: entity\nname: deal\ntitle_field: name\nowner_field: " + owner_field + "\nfields:\n"
            "  - {name: name, type: string}\n" + extra +
            "---\nkind: entity\nname: other\nfields:\n  - {name: title, type: string}\n")
    documents, problems = load_text(text, "crm/deal.yaml")
    assert problems == []
    with pytest.raises(MetadataError) as caught:
        compile_documents(documents)
    found = [p for p in caught.value.problems if p.path == "owner_field"]
    assert found and message in found[0].message, caught.value.problems
    assert str(found[0]).startswith("crm/deal.yaml:4: owner_field:")


def test_a_child_entity_has_no_owner_field_and_the_schema_knows_the_key():
    text = ("kind: entity\nname: order\nfields:\n  - {name: lines, type: table, target: line}\n---\n"
            "kind: entity\nname: line\nchild: true\nowner_field: person\nfields:\n"
            "  - {name: person, type: link, target: user}\n")
    documents, problems = load_text(text, "order.yaml")
    assert problems == []
    with pytest.raises(MetadataError) as caught:
        compile_documents(documents)
    assert any("child entity" in p.message and p.path == "owner_field" for p in caught.value.problems)
    _, problems = load_text("kind: entity\nname: x\nowner_field: 3\nfields:\n  - {name: a, type: string}\n", "x.yaml")
    assert problems and problems[0].line == 3
    _, problems = load_text("kind: role\nname: r\npermissions: {x: {actions: [transfer, give]}}\n", "r.yaml")
    assert len(problems) == 1 and "'give' is not one of" in problems[0].message


# -- the owner field and owner stay one --------------------------------------------------------

def test_owner_follows_the_owner_field_and_the_field_follows_owner(world, loom_engine):
    admin, ids = world["admin"], world["ids"]
    with loom_engine.connect() as conn:
        admin_id = conn.execute(sa.text("SELECT id FROM loom_users WHERE username = 'admin'")).scalar()
    wang = world["client"]("wang")
    create(wang, name="mine")
    create(admin, name="given", account_manager=ids["zhao"])
    moved = create(admin, name="moved")
    assert accounts(loom_engine) == {"mine": (ids["wang"], ids["wang"]), "given": (ids["zhao"], ids["zhao"]),
                                     "moved": (admin_id, admin_id)}
    assert admin.patch(f"/api/v1/account/{moved}", json={"owner": ids["sun"]}).status_code == 200
    assert accounts(loom_engine)["moved"] == (ids["sun"], ids["sun"])
    assert admin.patch(f"/api/v1/account/{moved}", json={"account_manager": ids["zhao"]}).status_code == 200
    assert accounts(loom_engine)["moved"] == (ids["zhao"], ids["zhao"])
    # emptied, the owner field falls back to the creator
    assert admin.patch(f"/api/v1/account/{moved}", json={"account_manager": None}).status_code == 200
    assert accounts(loom_engine)["moved"] == (admin_id, admin_id)
    record = admin.get(f"/api/v1/account/{moved}").get_json()["data"]
    assert record["account_manager"] == record["owner"] == {"id": admin_id, "title": "admin"}


def test_the_own_scope_follows_the_owner_field(world, loom_engine):
    ids = world["ids"]
    wang = world["client"]("wang")
    mine = create(wang, name="mine")
    # rows written before account_manager became the owner field: an empty field leaves
    # them to owner; a filled one decides, whatever owner says
    with loom_engine.begin() as conn:
        for name, manager, owner in (("legacy", None, ids["wang"]), ("managed elsewhere", ids["zhao"], ids["wang"]),
                                     ("managed by wang", ids["wang"], ids["zhao"])):
            conn.execute(sa.text("INSERT INTO e_account (name, account_manager, owner, version, created_at, "
                                 "updated_at) VALUES (:n, :m, :o, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                         {"n": name, "m": manager, "o": owner})
    seen = {r["name"] for r in wang.get("/api/v1/account").get_json()["data"]}
    assert seen == {"mine", "legacy", "managed by wang"}
    assert wang.get(f"/api/v1/account/{mine}").status_code == 200


# -- without transfer --------------------------------------------------------------------------

def test_without_transfer_no_path_gives_a_record_away(world, loom_engine):
    ids = world["ids"]
    wang = world["client"]("wang")
    record_id = create(wang, name="mine")

    plain = wang.patch(f"/api/v1/account/{record_id}", json={"account_manager": ids["zhao"]})
    assert plain.status_code == 422 and "outside_scope" in codes(plain)
    through_owner = wang.patch(f"/api/v1/account/{record_id}", json={"owner": ids["zhao"]})
    assert through_owner.status_code == 422
    refused = wang.post("/api/v1/account/_transfer", json={"ids": [record_id], "to": "zhao"})
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden_action"
    everything = wang.post("/api/v1/account/_transfer", json={"from": "wang", "to": "zhao"})
    assert everything.status_code == 403
    gift = wang.post("/api/v1/account", json={"name": "gift", "account_manager": ids["zhao"]})
    assert gift.status_code == 422 and "outside_scope" in codes(gift)

    assert accounts(loom_engine) == {"mine": (ids["wang"], ids["wang"])}
    assert {outcome for _r, _a, outcome, _d in audit(loom_engine, "record.transfer")} == {"denied"}
    assert [outcome for _r, _a, outcome, _d in audit(loom_engine, "record.update")] == ["denied", "denied"]


def test_a_read_only_token_cannot_transfer(world, loom_engine):
    ids = world["ids"]
    lead = world["client"]("li")
    record_id = create(lead, name="li's")
    token = world["client"]("li", read_only=True)
    refused = token.post("/api/v1/account/_transfer", json={"ids": [record_id], "to": "zhao"})
    assert refused.status_code == 403 and "read_only" in refused.get_json()["detail"]
    assert token.post("/api/v1/_transfer", json={"from": "li", "to": "zhao"}).status_code == 403
    assert accounts(loom_engine) == {"li's": (ids["li"], ids["li"])}


# -- with transfer -----------------------------------------------------------------------------

def test_transfer_gives_records_out_of_scope_and_logs_each(world, loom_engine):
    ids = world["ids"]
    lead = world["client"]("li")
    first, second = create(lead, name="one"), create(lead, name="two")
    reply = lead.post("/api/v1/account/_transfer", json={"ids": [first, second], "to": "sun"})
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["transferred"] == 2
    assert accounts(loom_engine) == {"one": (ids["sun"], ids["sun"]), "two": (ids["sun"], ids["sun"])}
    # gone from the lead's reach, as records of someone else are
    assert lead.get(f"/api/v1/account/{first}").status_code == 404
    entries = audit(loom_engine, "record.transfer")
    assert [(r, a, o) for r, a, o, _d in entries] == [(first, "li", "ok"), (second, "li", "ok")]
    detail = entries[0][3]
    detail = detail if isinstance(detail, dict) else __import__("json").loads(detail)
    assert detail == {"field": "account_manager", "from": ids["li"], "to": ids["sun"]}
    # and each record's own update entry, as for any change
    assert [r for r, _a, o, _d in audit(loom_engine, "record.update") if o == "ok"] == [first, second]


def test_a_plain_update_of_the_owner_field_is_a_transfer_for_who_may_transfer(world, loom_engine):
    ids = world["ids"]
    lead = world["client"]("li")
    record_id = create(lead, name="one")
    moved = lead.patch(f"/api/v1/account/{record_id}", json={"account_manager": ids["sun"], "region": "north"})
    assert moved.status_code == 200, moved.get_json()
    assert accounts(loom_engine)["one"] == (ids["sun"], ids["sun"])
    assert len(audit(loom_engine, "record.transfer")) == 1


def test_transfer_is_all_or_nothing_and_only_within_the_update_scope(world, loom_engine):
    ids = world["ids"]
    lead, admin = world["client"]("li"), world["admin"]
    mine = create(lead, name="mine")
    theirs = create(admin, name="theirs", account_manager=ids["zhao"])
    reply = lead.post("/api/v1/account/_transfer", json={"ids": [mine, theirs], "to": "sun"})
    assert reply.status_code == 404 and reply.get_json()["code"] == "no_such_record"
    assert accounts(loom_engine) == {"mine": (ids["li"], ids["li"]), "theirs": (ids["zhao"], ids["zhao"])}
    assert audit(loom_engine, "record.transfer") == []


@pytest.mark.parametrize(("to", "code"), [("gone", "inactive_user"), ("nobody", "no_such_user"),
                                          (10**12, "no_such_user"), (None, "no_such_user")])
def test_transfer_to_an_unknown_or_deactivated_user_is_refused(world, loom_engine, to, code):
    ids = world["ids"]
    lead = world["client"]("li")
    record_id = create(lead, name="mine")
    reply = lead.post("/api/v1/account/_transfer", json={"ids": [record_id], "to": to})
    assert reply.status_code == 422 and codes(reply) == [code], reply.get_json()
    if code == "inactive_user":
        assert "gone is deactivated" in reply.get_json()["detail"]
    plain = world["admin"].patch(f"/api/v1/account/{record_id}", json={"account_manager": ids["gone"]})
    assert plain.status_code == 422 and codes(plain) == ["inactive_user"]
    assert accounts(loom_engine) == {"mine": (ids["li"], ids["li"])}


@pytest.mark.parametrize("body", [{"ids": [], "to": "zhao"}, {"ids": ["x"], "to": "zhao"}, {"ids": 3, "to": "zhao"},
                                  {"ids": [1], "from": "li", "to": "zhao"}, [1, 2]])
def test_a_malformed_transfer_is_a_clear_client_error(world, body):
    reply = world["client"]("li").post("/api/v1/account/_transfer", json=body)
    assert reply.status_code in (400, 422), reply.get_json()
    assert reply.get_json()["detail"]


def test_every_record_of_a_departing_user_goes_to_another(world, loom_engine):
    ids, admin = world["ids"], world["admin"]
    boss = world["client"]("boss")
    for name in ("a", "b"):
        create(admin, name=name, account_manager=ids["zhao"])
    create(admin, name="north", account_manager=ids["sun"])
    assert admin.post("/api/v1/memo", json={"title": "note", "owner": ids["zhao"]}).status_code == 201
    world["app"].extensions["loom"].identity.update_user(ids["zhao"], {"is_active": False}, actor="test")

    preview = boss.get("/api/v1/_transfer?from=zhao")
    assert preview.status_code == 200 and preview.get_json()["data"] == {"account": 2, "memo": 1}
    moved = boss.post("/api/v1/_transfer", json={"from": "zhao", "to": "wang"})
    assert moved.status_code == 200 and moved.get_json()["data"] == {"account": 2, "memo": 1}
    assert accounts(loom_engine) == {"a": (ids["wang"], ids["wang"]), "b": (ids["wang"], ids["wang"]),
                                     "north": (ids["sun"], ids["sun"])}
    assert len(audit(loom_engine, "record.transfer")) == 3
    # one entity at a time, and nothing left to move
    again = boss.post("/api/v1/account/_transfer", json={"from": "zhao", "to": "wang"})
    assert again.status_code == 200 and again.get_json()["transferred"] == 0
    same = boss.post("/api/v1/account/_transfer", json={"from": "wang", "to": "wang"})
    assert same.status_code == 422 and codes(same) == ["same_owner"]


def test_explain_names_the_owner_field(world, loom_app):
    from loom.permissions.explain import explain
    from loom.permissions.policy import Policy

    live = loom_app.extensions["loom"].metadata.live()
    principal = loom_app.extensions["loom"].identity.principal_for("wang")
    allowed, lines = explain(Policy(live.model), principal, live.model.entity("account"), "update")
    assert allowed and any("owner field account_manager is wang" in line for line in lines), lines


def test_two_concurrent_transfers_of_one_record_end_with_one_owner(world, loom_engine, loom_app):
    ids = world["ids"]
    record_id = create(world["admin"], name="contested", account_manager=ids["wang"])
    system = Principal.system("test")
    results: list[object] = []
    start = threading.Barrier(2)

    def give(to):
        with loom_app.app_context():
            service = record_service("account", system)
            start.wait()
            try:
                results.append(service.transfer([record_id], to)[0]["account_manager"]["id"])
            except Exception as exc:  # a refusal is a result too; a crash would show here
                results.append(exc)

    threads = [threading.Thread(target=give, args=(to,)) for to in ("zhao", "sun")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == sorted([ids["zhao"], ids["sun"]]), results
    manager, owner = accounts(loom_engine)["contested"]
    assert manager == owner and manager in (ids["zhao"], ids["sun"])
    with loom_engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version FROM e_account WHERE id = :i"), {"i": record_id}).scalar()
    assert version == 3
    entries = audit(loom_engine, "record.transfer")
    assert len(entries) == 2


def test_the_openapi_document_offers_transfers_to_who_may_transfer(world):
    from openapi_spec_validator import validate

    lead = world["client"]("li").get("/api/openapi.json").get_json()
    validate(lead)
    assert "post" in lead["paths"]["/api/v1/account/_transfer"]
    assert {"get", "post"} <= lead["paths"]["/api/v1/_transfer"].keys()
    rep = world["client"]("wang").get("/api/openapi.json").get_json()
    assert "/api/v1/account/_transfer" not in rep["paths"] and "/api/v1/_transfer" not in rep["paths"]
    token = world["client"]("li", read_only=True).get("/api/openapi.json").get_json()
    assert "/api/v1/account/_transfer" not in token["paths"]


def test_owner_cannot_be_written_around_a_read_only_owner_field(world, apply_metadata, make_entity, loom_engine):
    ids = world["ids"]
    account = make_entity("account", ACCOUNT, title_field="name", owner_field="account_manager")
    memo = make_entity("memo", [{"name": "title", "type": "string"}], title_field="title")
    apply_metadata(account, memo, {"kind": "role", "name": "lead", "permissions": {"account": {
        "actions": ["read", "create", "update", "transfer"], "scope": "all",
        "fields": {"account_manager": "read"}}}})
    lead = world["client"]("li")
    record_id = create(lead, name="one")
    for body in ({"owner": ids["zhao"]}, {"account_manager": ids["zhao"]}):
        refused = lead.patch(f"/api/v1/account/{record_id}", json=body)
        assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden_fields", body
    assert lead.post("/api/v1/account/_transfer", json={"ids": [record_id], "to": "zhao"}).status_code == 403
    assert accounts(loom_engine) == {"one": (ids["li"], ids["li"])}


def test_a_computed_default_of_the_owner_field_decides_the_owner(world, apply_metadata, make_entity, loom_engine):
    ids, admin = world["ids"], world["admin"]
    account = make_entity("account", ACCOUNT, title_field="name", owner_field="account_manager")
    contact = make_entity("contact", [
        {"name": "name", "type": "string"},
        {"name": "account", "type": "link", "target": "account"},
        {"name": "manager", "type": "link", "target": "user", "default": {"from": "account.account_manager"}},
    ], title_field="name", owner_field="manager")
    apply_metadata(account, contact, make_entity("memo", [{"name": "title", "type": "string"}]))
    acme = create(admin, name="Acme", account_manager=ids["zhao"])
    made = admin.post("/api/v1/contact", json={"name": "Li Lei", "account": acme})
    assert made.status_code == 201, made.get_json()
    with loom_engine.connect() as conn:
        row = conn.execute(sa.text("SELECT manager, owner FROM e_contact")).one()
    assert tuple(row) == (ids["zhao"], ids["zhao"])


def test_a_required_owner_field_is_refused_empty_rather_than_filled(world, apply_metadata, make_entity):
    ids, admin = world["ids"], world["admin"]
    apply_metadata(make_entity("deal", [{"name": "title", "type": "string"},
                                        {"name": "manager", "type": "link", "target": "user", "required": True}],
                               title_field="title", owner_field="manager"))
    missing = admin.post("/api/v1/deal", json={"title": "x"})
    assert missing.status_code == 422 and codes(missing) == ["required"]
    made = admin.post("/api/v1/deal", json={"title": "x", "manager": ids["zhao"]}).get_json()["data"]
    assert made["owner"]["id"] == ids["zhao"]
    emptied = admin.patch(f"/api/v1/deal/{made['id']}", json={"manager": None})
    assert emptied.status_code == 422 and codes(emptied) == ["required"]
