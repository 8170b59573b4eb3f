"""Attacks on the business logic's newer doors — transfers, previews, roll-ups and
defaults read from a linked record — by a user trying to learn or change more than their
role allows: hostile input is a clear client error (never a 500, never a half-applied
change), nothing read through these doors shows a field or record the user may not read,
and every transfer, allowed or refused, leaves its audit entry in a chain that verifies."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

ACCOUNT = [
    {"name": "name", "type": "string", "required": True},
    {"name": "region", "type": "select", "options": [{"value": "east"}, {"value": "north"}]},
    {"name": "account_manager", "type": "link", "target": "user"},
]


def role(name, actions, scope="own", entity="account", **extra):
    return {"kind": "role", "name": name,
            "permissions": {entity: {"actions": list(actions), "scope": scope, **extra}}}


@pytest.fixture
def world(apply_metadata, make_entity, make_user, client_for, loom_client, loom_app):
    """Accounts owned by their account manager: ``rep`` may not transfer, ``lead`` may
    (within their own), ``mover`` may transfer but not update."""
    account = make_entity("account", ACCOUNT, title_field="name", owner_field="account_manager")
    every = ("read", "create", "update")
    apply_metadata(account, role("rep", every), role("lead", (*every, "transfer")),
                   role("mover", ("read", "create", "transfer")))
    ids = {"wang": make_user("wang", roles=["rep"], team="east"),
           "li": make_user("li", roles=["lead"], team="east"),
           "mo": make_user("mo", roles=["mover"], team="east"),
           "zhao": make_user("zhao", team="east"),
           "sun": make_user("sun", team="north"),
           "gone": make_user("gone", team="east")}
    loom_app.extensions["loom"].identity.update_user(ids["gone"], {"is_active": False}, actor="test")
    return {"ids": ids, "admin": loom_client, "client": client_for, "app": loom_app}


def owners(engine) -> dict[str, tuple[int, int, int]]:
    """name -> (account manager, owner, version) of every account."""
    with engine.connect() as conn:
        return {r.name: (r.account_manager, r.owner, r.version) for r in
                conn.execute(sa.text("SELECT name, account_manager, owner, version FROM e_account"))}


def audit(engine, action: str) -> list[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT record_id, actor, outcome, detail FROM loom_audit "
                                    "WHERE action = :a ORDER BY seq"), {"a": action}).all()
    return [(r.record_id, r.actor, r.outcome, r.detail if isinstance(r.detail, dict) or r.detail is None
             else json.loads(r.detail)) for r in rows]


def create(client, **values) -> int:
    reply = client.post("/api/v1/account", json=values)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]["id"]


def codes(reply) -> list[str]:
    return [e["code"] for e in (reply.get_json() or {}).get("errors", [])]


def verify_chain(app) -> None:
    from loom.audit.chain import verify
    verdict = verify(app.extensions["loom"].engine)
    assert verdict.ok, verdict


def assert_refused(reply) -> None:
    """A refusal naming the user who is not one (a NUL byte is refused before, as anywhere)."""
    assert reply.status_code in (400, 422), (reply.status_code, reply.get_data(as_text=True)[:500])
    assert reply.get_json()["detail"] and reply.get_json()["errors"]
    if reply.status_code == 422:
        assert codes(reply) == ["no_such_user"], reply.get_json()


# -- hostile input on the transfer routes -------------------------------------------------------

HOSTILE_TO = [None, 0, -1, 2**63, 2**70, 1.5, True, "' or 1=1 --", "li' --", ["zhao"], {"id": 1},
              "", "   ", "a\x00b", "\x00", "用户", "😀" * 200, "x" * 100_000, "١٢", "²", "0x10", "1e3"]


@pytest.mark.parametrize("to", HOSTILE_TO, ids=repr)
def test_a_transfer_to_a_hostile_user_is_a_clear_error_and_changes_nothing(world, loom_engine, to):
    lead = world["client"]("li")
    mine = create(lead, name="mine")
    before = owners(loom_engine)
    reply = lead.post("/api/v1/account/_transfer", json={"ids": [mine], "to": to})
    assert_refused(reply)
    assert len(reply.get_data()) < 5000   # a huge name is not sent back whole
    assert owners(loom_engine) == before
    assert_refused(lead.post("/api/v1/_transfer", json={"from": "li", "to": to}))
    assert owners(loom_engine) == before


@pytest.mark.parametrize("source", HOSTILE_TO[1:], ids=repr)
def test_counting_or_moving_the_records_of_a_hostile_user_is_a_clear_error(world, loom_engine, source):
    lead = world["client"]("li")
    create(lead, name="mine")
    before = owners(loom_engine)
    for reply in (lead.post("/api/v1/account/_transfer", json={"from": source, "to": "zhao"}),
                  lead.post("/api/v1/_transfer", json={"from": source, "to": "zhao"})):
        assert_refused(reply)
    if isinstance(source, str) and len(source) < 1000:
        counted = lead.get("/api/v1/_transfer", query_string={"from": source})
        assert counted.status_code in (400, 422), (counted.status_code, counted.get_data(as_text=True)[:500])
    assert owners(loom_engine) == before


@pytest.mark.parametrize("ids", [[0], [-1], [2**63], [1.0], ["1"], [True], [None], [[1]], [{"id": 1}],
                                 "1", {"1": 1}, None, list(range(1, 20_001))], ids=lambda v: repr(v)[:30])
def test_a_transfer_of_hostile_ids_is_a_clear_error_and_changes_nothing(world, loom_engine, ids):
    lead = world["client"]("li")
    create(lead, name="mine")
    before = owners(loom_engine)
    reply = lead.post("/api/v1/account/_transfer", json={"ids": ids, "to": "zhao"})
    assert reply.status_code in (400, 404, 413, 422), (reply.status_code, reply.get_data(as_text=True)[:500])
    assert reply.get_json()["detail"]
    assert owners(loom_engine) == before


@pytest.mark.parametrize("body", [{"ids": [1]}, {"from": "li"}, {}, {"ids": [1], "to": "zhao", "extra": 1},
                                  {"from": "li", "to": "zhao", "ids": None}, "text", 3, None])
def test_a_transfer_body_of_the_wrong_shape_is_a_clear_error(world, loom_engine, body):
    lead = world["client"]("li")
    create(lead, name="mine")
    before = owners(loom_engine)
    for url in ("/api/v1/account/_transfer", "/api/v1/_transfer"):
        reply = lead.post(url, json=body)
        assert reply.status_code in (400, 404, 422), (url, reply.status_code, reply.get_data(as_text=True)[:500])
        assert reply.get_json()["detail"]
    assert owners(loom_engine) == before


def test_a_member_a_transfer_does_not_take_is_refused_rather_than_skipped(world, loom_engine):
    """Records named by ``ids`` sent to the transfer of everything: not every record moves."""
    lead = world["client"]("li")
    first, _second = create(lead, name="one"), create(lead, name="two")
    before = owners(loom_engine)
    reply = lead.post("/api/v1/_transfer", json={"from": "li", "to": "zhao", "ids": [first]})
    assert reply.status_code == 400 and codes(reply) == ["bad_parameter"], reply.get_json()
    assert reply.get_json()["errors"][0]["field"] == "ids"
    typo = lead.post("/api/v1/account/_transfer", json={"ids": [first], "too": "zhao"})
    assert typo.status_code == 400 and [e["field"] for e in typo.get_json()["errors"]] == ["too"]
    many = lead.post("/api/v1/account/_transfer", json={"ids": [first], "to": "zhao",
                                                        **{f"k{i}": i for i in range(5000)}})
    assert many.status_code == 400 and len(many.get_data()) < 10_000
    assert owners(loom_engine) == before


def test_deeply_nested_or_huge_transfer_bodies_are_refused_cleanly(world, loom_engine):
    lead = world["client"]("li")
    create(lead, name="mine")
    before = owners(loom_engine)
    nested = "[" * 100_000 + "]" * 100_000
    for url in ("/api/v1/account/_transfer", "/api/v1/_transfer"):
        reply = lead.post(url, data='{"ids": ' + nested + ', "to": "zhao"}', content_type="application/json")
        assert reply.status_code in (400, 413, 422), (url, reply.status_code)
        huge = lead.post(url, data='{"ids": [' + ",".join(map(str, range(1, 300_001))) + '], "to": "zhao"}',
                         content_type="application/json")
        assert huge.status_code in (400, 404, 413, 422), (url, huge.status_code)
    assert owners(loom_engine) == before


# -- who may transfer what ------------------------------------------------------------------

def test_transfer_without_update_is_refused_on_every_door_and_logged_denied(world, loom_engine):
    ids, admin = world["ids"], world["admin"]
    mover = world["client"]("mo")
    mine = create(mover, name="mine")
    before = owners(loom_engine)
    denied_before = [e for e in audit(loom_engine, "record.transfer") + audit(loom_engine, "record.update")
                     if e[2] == "denied"]
    for url, body in (("/api/v1/account/_transfer", {"ids": [mine], "to": "zhao"}),
                      ("/api/v1/account/_transfer", {"from": "mo", "to": "zhao"}),
                      ("/api/v1/_transfer", {"from": "mo", "to": "zhao"})):
        reply = mover.post(url, json=body)
        assert reply.status_code == 403, (url, reply.get_json())
    assert mover.patch(f"/api/v1/account/{mine}", json={"account_manager": ids["zhao"]}).status_code == 403
    assert owners(loom_engine) == before
    assert mover.get("/api/v1/_transfer", query_string={"from": "mo"}).get_json()["data"] == {}
    denied = [e for e in audit(loom_engine, "record.transfer") + audit(loom_engine, "record.update")
              if e[2] == "denied"]
    assert len(denied) > len(denied_before)   # the refusals are in the audit log, as other refusals are
    assert admin.get(f"/api/v1/account/{mine}").get_json()["data"]["account_manager"]["id"] == ids["mo"]


def test_a_transfer_of_someone_elses_record_is_refused_as_if_it_did_not_exist(world, loom_engine):
    ids, admin = world["ids"], world["admin"]
    lead = world["client"]("li")
    mine = create(lead, name="mine")
    theirs = create(admin, name="theirs", account_manager=ids["sun"])
    before = owners(loom_engine)
    reply = lead.post("/api/v1/account/_transfer", json={"ids": [mine, theirs], "to": "zhao"})
    assert reply.status_code == 404, reply.get_json()
    assert "theirs" not in reply.get_data(as_text=True)
    missing = lead.post("/api/v1/account/_transfer", json={"ids": [mine, theirs + 1000], "to": "zhao"})
    assert missing.status_code == 404
    assert missing.get_json()["detail"].replace(str(theirs + 1000), "N") == \
        reply.get_json()["detail"].replace(str(theirs), "N")     # the same words: no oracle
    # another team's user's records: nothing of theirs counted or moved
    assert lead.get("/api/v1/_transfer", query_string={"from": "sun"}).get_json()["data"] == {}
    assert lead.post("/api/v1/account/_transfer", json={"from": "sun", "to": "li"}).get_json()["transferred"] == 0
    assert owners(loom_engine) == before


def test_a_transfer_to_oneself_or_to_the_same_owner_changes_nothing_and_logs_no_move(world, loom_engine):
    lead = world["client"]("li")
    mine = create(lead, name="mine")
    before = owners(loom_engine)
    reply = lead.post("/api/v1/account/_transfer", json={"ids": [mine], "to": "li"})
    assert reply.status_code == 200, reply.get_json()
    assert owners(loom_engine)["mine"][:2] == before["mine"][:2]
    assert audit(loom_engine, "record.transfer") == []
    same = lead.post("/api/v1/account/_transfer", json={"from": "li", "to": "li"})
    assert same.status_code == 422 and codes(same) == ["same_owner"]


def test_a_read_only_token_and_a_signed_out_caller_cannot_transfer_or_count(world, loom_engine, anonymous_client):
    lead = world["client"]("li")
    mine = create(lead, name="mine")
    token = world["client"]("li", read_only=True)
    before = owners(loom_engine)
    for client, expected in ((token, 403), (anonymous_client, 401)):
        assert client.post("/api/v1/account/_transfer", json={"ids": [mine], "to": "zhao"}).status_code == expected
        assert client.post("/api/v1/_transfer", json={"from": "li", "to": "zhao"}).status_code == expected
    assert anonymous_client.get("/api/v1/_transfer", query_string={"from": "li"}).status_code == 401
    assert owners(loom_engine) == before


def test_a_transfer_racing_an_update_loses_nothing_and_the_update_sees_the_new_version(world, loom_engine):
    ids = world["ids"]
    lead = world["client"]("li")
    mine = create(lead, name="mine")
    version = owners(loom_engine)["mine"][2]
    moved = lead.post("/api/v1/account/_transfer", json={"ids": [mine], "to": "zhao"})
    assert moved.status_code == 200
    # an edit made on the version read before the transfer is a conflict, not a silent undo
    stale = world["admin"].patch(f"/api/v1/account/{mine}", json={"account_manager": ids["li"]},
                                 headers={"If-Match": f'"{version}"'})
    assert stale.status_code in (409, 412), stale.get_json()
    assert owners(loom_engine)["mine"][:2] == (ids["zhao"], ids["zhao"])


def test_concurrent_transfers_of_many_records_end_with_one_owner_each_and_a_verified_chain(
        world, loom_engine, loom_app):
    ids = world["ids"]
    lead = world["client"]("li")
    records = [create(lead, name=f"a{i}") for i in range(6)]
    boss_client = world["admin"]
    results = []

    def give(to):
        reply = boss_client.post("/api/v1/account/_transfer", json={"ids": records, "to": to})
        results.append(reply.status_code)

    threads = [threading.Thread(target=give, args=(to,)) for to in ("zhao", "sun", "wang")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(code in (200, 409) for code in results), results
    assert 200 in results
    final = {manager for manager, owner, _v in owners(loom_engine).values() if manager == owner}
    assert len(final) == 1 and final <= {ids["zhao"], ids["sun"], ids["wang"]}
    moved = audit(loom_engine, "record.transfer")
    assert len(moved) == 6 * results.count(200)
    verify_chain(loom_app)


# -- roll-ups under attack ----------------------------------------------------------------------

@pytest.fixture
def desk(apply_metadata, make_entity, make_user, client_for, loom_client, loom_app):
    """Customers counting their open tickets (a roll-up over linked records); ``agent``
    may open tickets but not read a ticket's ``internal`` note nor its ``hours``."""
    apply_metadata(
        make_entity("customer", [
            {"name": "name", "type": "string", "required": True},
            {"name": "open_tickets", "type": "integer",
             "rollup": {"from": "ticket.customer", "count": True, "where": "status != 'closed'"}},
            {"name": "hours", "type": "decimal", "rollup": {"from": "ticket.customer", "sum": "hours"}},
        ], title_field="name"),
        make_entity("ticket", [
            {"name": "subject", "type": "string", "required": True},
            {"name": "customer", "type": "link", "target": "customer"},
            {"name": "status", "type": "select", "options": [{"value": "open"}, {"value": "closed"}],
             "default": "open"},
            {"name": "hours", "type": "decimal"},
            {"name": "internal", "type": "string"},
        ], title_field="subject"),
        {"kind": "role", "name": "agent", "permissions": {
            "customer": {"actions": ["read"], "scope": "all"},
            "ticket": {"actions": ["read", "create", "update"], "scope": "own",
                       "fields": {"internal": "none", "hours": "read"}}}})
    make_user("agent", roles=["agent"])
    return {"admin": loom_client, "agent": client_for("agent"), "app": loom_app}


def customer_rollups(engine, customer: int) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(sa.text("SELECT open_tickets, hours, version FROM e_customer WHERE id = :i"),
                                  {"i": customer}).one())


def test_a_parent_deleted_while_children_are_created_ends_consistent(desk, loom_engine, loom_app):
    admin = desk["admin"]
    acme = admin.post("/api/v1/customer", json={"name": "Acme"}).get_json()["data"]["id"]
    results: list[int] = []

    def add(n: int) -> None:
        for i in range(5):
            reply = admin.post("/api/v1/ticket", json={"subject": f"t{n}-{i}", "customer": acme, "hours": "1"})
            results.append(reply.status_code)

    def remove() -> None:
        for _ in range(10):
            results.append(admin.delete(f"/api/v1/customer/{acme}").status_code)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(2)] + [threading.Thread(target=remove)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {201, 204, 404, 409, 422}, results
    with loom_engine.connect() as conn:
        tickets = conn.execute(sa.text("SELECT count(*) FROM e_ticket WHERE customer = :i"), {"i": acme}).scalar()
        exists = conn.execute(sa.text("SELECT count(*) FROM e_customer WHERE id = :i"), {"i": acme}).scalar()
    if exists:
        assert customer_rollups(loom_engine, acme)[:1] == (tickets,)
    else:
        assert tickets == 0
    verify_chain(loom_app)


def test_a_roll_up_where_or_sum_over_a_hidden_field_reveals_it_to_nobody_through_their_own_input(
        desk, loom_engine):
    """The agent may not send ``internal`` (unknown field), so no roll-up reads their guess;
    refusals name neither the hidden field's value nor the customer's roll-ups."""
    admin, agent = desk["admin"], desk["agent"]
    acme = admin.post("/api/v1/customer", json={"name": "Acme"}).get_json()["data"]["id"]
    admin.post("/api/v1/ticket", json={"subject": "s", "customer": acme, "hours": "7.25", "internal": "vip"})
    before = customer_rollups(loom_engine, acme)
    for body in ({"subject": "x", "customer": acme, "internal": "vip"},
                 {"subject": "x", "customer": acme, "hours": "1"},
                 {"subject": "x", "customer": acme, "open_tickets": 1}):
        reply = agent.post("/api/v1/ticket", json=body)
        assert reply.status_code in (403, 422), reply.get_json()
        text = reply.get_data(as_text=True)
        assert "vip" not in text and "7.25" not in text
    assert customer_rollups(loom_engine, acme) == before


def audit_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM loom_audit")).scalar()


HOSTILE_PREVIEWS = [
    {"subject": {"a": [[[[["deep"]]]]]}}, {"subject": ["x"] * 10_000}, {"customer": {"id": 1}},
    {"customer": "1 or 1=1"}, {"customer": 2**70}, {"customer": -1}, {"hours": "NaN"}, {"hours": "1e400"},
    {"hours": float("inf")}, {"subject": "a\x00b"}, {"status": ["open", "closed"]}, {"owner": "' or 1=1"},
    {"internal": "guess"}, {"open_tickets": 3}, {"version": "x"}, {"id": 5}, {"": 1}, {"a" * 10_000: 1},
    [1, 2], "text", None, 3,
]


@pytest.mark.parametrize("data", HOSTILE_PREVIEWS, ids=lambda v: repr(v)[:25])
def test_a_hostile_preview_is_a_clear_error_and_writes_nothing(desk, loom_engine, loom_app, data):
    from loom.errors import LoomError
    from loom.records.door import record_context
    from loom.records.service import RecordService

    admin = desk["admin"]
    acme = admin.post("/api/v1/customer", json={"name": "Acme"}).get_json()["data"]["id"]
    mine = desk["agent"].post("/api/v1/ticket", json={"subject": "mine", "customer": acme}).get_json()["data"]
    admin.post("/api/v1/ticket", json={"subject": "hid", "customer": acme, "internal": "vip-note"})
    before, entries = customer_rollups(loom_engine, acme), audit_count(loom_engine)
    with loom_app.app_context():
        principal = loom_app.extensions["loom"].identity.principal_for("agent")
        service = RecordService(record_context(principal), "ticket")
        for record_id in (None, mine["id"]):
            try:
                preview = service.preview(data, record_id)
            except LoomError as exc:
                assert 400 <= exc.status < 500 and exc.detail
                continue
            assert "internal" not in preview["values"] and "vip-note" not in repr(preview)
            assert all(e["field"] != "internal" or e["code"] == "unknown_field" for e in preview["errors"])
    assert customer_rollups(loom_engine, acme) == before
    assert audit_count(loom_engine) == entries


def test_a_preview_moving_a_child_to_another_parent_recomputes_nothing_stored(desk, loom_engine, loom_app):
    from loom.records.door import record_context
    from loom.records.service import RecordService

    admin = desk["admin"]
    acme = admin.post("/api/v1/customer", json={"name": "Acme"}).get_json()["data"]["id"]
    beta = admin.post("/api/v1/customer", json={"name": "Beta"}).get_json()["data"]["id"]
    mine = desk["agent"].post("/api/v1/ticket", json={"subject": "mine", "customer": acme}).get_json()["data"]
    before = (customer_rollups(loom_engine, acme), customer_rollups(loom_engine, beta), audit_count(loom_engine))
    with loom_app.app_context():
        principal = loom_app.extensions["loom"].identity.principal_for("agent")
        service = RecordService(record_context(principal), "ticket")
        preview = service.preview({"customer": beta, "status": "closed"}, mine["id"])
        assert preview["values"]["customer"]["id"] == beta and preview["errors"] == []
        service.preview({"subject": "new", "customer": beta})
    assert (customer_rollups(loom_engine, acme), customer_rollups(loom_engine, beta),
            audit_count(loom_engine)) == before


def test_an_owner_field_the_writer_may_not_read_is_named_nowhere(world, apply_metadata, make_entity, make_user,
                                                                  loom_engine):
    """Whoever may not read the owner field learns nothing of it from a refused write of
    ``owner`` (nor of who owns the record)."""
    apply_metadata(make_entity("account", ACCOUNT, title_field="name", owner_field="account_manager"),
                   role("rep", ("read", "create", "update"), fields={"account_manager": "none"}),
                   role("lead", ("read", "create", "update", "transfer"), fields={"account_manager": "none"}))
    ids = world["ids"]
    for name in ("wang", "li"):
        client = world["client"](name)
        reply = client.post("/api/v1/account", json={"name": f"{name}'s"})
        assert reply.status_code == 201, reply.get_json()
        record = reply.get_json()["data"]
        assert "account_manager" not in record
        before = owners(loom_engine)
        for attempt in (client.patch(f"/api/v1/account/{record['id']}", json={"owner": ids["zhao"]}),
                        client.post("/api/v1/account", json={"name": "x", "owner": ids["zhao"]})):
            assert attempt.status_code == 403, attempt.get_json()
            assert "account_manager" not in attempt.get_data(as_text=True), attempt.get_json()
            assert [(e["field"], e["code"]) for e in attempt.get_json()["errors"]] == [("owner", "forbidden_field")]
        # the field itself, sent by name: unknown, in the words used for a field that does not exist
        named = client.patch(f"/api/v1/account/{record['id']}", json={"account_manager": ids["zhao"]})
        assert named.status_code == 422 and codes(named) == ["unknown_field"]
        assert owners(loom_engine) == before


def test_a_roll_up_that_cannot_be_stored_names_nothing_the_writer_may_not_read(
        apply_metadata, make_entity, make_user, client_for, loom_client, loom_engine):
    apply_metadata(
        make_entity("vault", [{"name": "name", "type": "string", "required": True},
                              {"name": "secret_total", "type": "decimal", "precision": 4, "scale": 2,
                               "rollup": {"from": "deposit.vault", "sum": "amount"}}], title_field="name"),
        make_entity("deposit", [{"name": "vault", "type": "link", "target": "vault"},
                                {"name": "amount", "type": "decimal", "precision": 10, "scale": 2}]),
        {"kind": "role", "name": "teller", "permissions": {
            "deposit": {"actions": ["read", "create"], "scope": "all"},
            "vault": {"actions": ["read"], "scope": "all", "fields": {"secret_total": "none"}}}})
    make_user("teller", roles=["teller"])
    vault = loom_client.post("/api/v1/vault", json={"name": "V"}).get_json()["data"]["id"]
    reply = client_for("teller").post("/api/v1/deposit", json={"vault": vault, "amount": "99999.00"})
    assert reply.status_code == 422, reply.get_json()
    text = reply.get_data(as_text=True)
    assert "secret_total" not in text, text


def test_a_transfer_of_everything_refused_for_one_entity_moves_nothing_of_any(
        world, apply_metadata, make_entity, make_user, loom_engine, loom_app):
    """The memo's rule refuses a memo leaving its author: the accounts moved before it in
    the same transfer go back too, and the refusal is a 422, not a half-done move."""
    apply_metadata(make_entity("account", ACCOUNT, title_field="name", owner_field="account_manager"),
                   make_entity("memo", [{"name": "title", "type": "string"}], title_field="title",
                               rules=[{"when": "owner != created_by", "message": {"en": "A memo stays with its author"}}]),
                   {"kind": "role", "name": "boss", "permissions": {
                       "account": {"actions": ["read", "create", "update", "transfer"], "scope": "team"},
                       "memo": {"actions": ["read", "create", "update", "transfer"], "scope": "team"}}})
    make_user("chief", roles=["boss"], team="east")
    boss = world["client"]("chief")
    create(boss, name="a1")
    create(boss, name="a2")
    assert boss.post("/api/v1/memo", json={"title": "m"}).status_code == 201
    before = owners(loom_engine)
    entries = len(audit(loom_engine, "record.transfer"))
    reply = boss.post("/api/v1/_transfer", json={"from": "chief", "to": "zhao"})
    assert reply.status_code == 422, reply.get_json()
    assert "A memo stays with its author" in reply.get_data(as_text=True)
    assert owners(loom_engine) == before
    assert len(audit(loom_engine, "record.transfer")) == entries
    verify_chain(loom_app)


def test_a_bulk_create_giving_one_row_away_without_transfer_creates_none(world, loom_engine):
    ids = world["ids"]
    wang, lead = world["client"]("wang"), world["client"]("li")
    rows = [{"name": "mine"}, {"name": "gift", "account_manager": ids["zhao"]}, {"name": "gift2", "owner": ids["sun"]}]
    refused = wang.post("/api/v1/account/_bulk", json=rows)
    assert refused.status_code in (403, 422), refused.get_json()
    assert owners(loom_engine) == {}
    # whoever may transfer gives rows away on create, each logged as a transfer
    given = lead.post("/api/v1/account/_bulk", json=rows)
    assert given.status_code == 201, given.get_json()
    assert {name: pair[:2] for name, pair in owners(loom_engine).items()} == {
        "mine": (ids["li"], ids["li"]), "gift": (ids["zhao"], ids["zhao"]), "gift2": (ids["sun"], ids["sun"])}
    assert sorted(e[3]["to"] for e in audit(loom_engine, "record.transfer") if e[2] == "ok") == \
        sorted([ids["zhao"], ids["sun"]])
    # to a deactivated user: refused, naming the row
    gone = lead.post("/api/v1/account/_bulk", json=[{"name": "x"}, {"name": "y", "account_manager": ids["gone"]}])
    assert gone.status_code == 422 and codes(gone) == ["inactive_user"], gone.get_json()
    assert gone.get_json()["errors"][0]["field"] == "[1].account_manager"
    assert len(owners(loom_engine)) == 3


def test_concurrent_writers_of_one_parents_rows_leave_its_roll_up_equal_to_its_rows(
        apply_metadata, make_entity, loom_client, loom_engine):
    apply_metadata(
        make_entity("purchase", [{"name": "code", "type": "string"},
                                 {"name": "total", "type": "money", "rollup": {"from": "lines", "sum": "amount"}},
                                 {"name": "count", "type": "integer", "rollup": {"from": "lines", "count": True}},
                                 {"name": "lines", "type": "table", "target": "purchase_line"}], title_field="code"),
        make_entity("purchase_line", [{"name": "amount", "type": "money"}], child=True))
    created = loom_client.post("/api/v1/purchase", json={"code": "P", "lines": [{"amount": "1.00"}]})
    record = created.get_json()["data"]
    first = record["lines"][0]["id"]
    results = []

    def add(n: int) -> None:
        for i in range(4):
            lines = [{"id": first, "amount": "1.00"}, {"amount": f"{n}{i}.00"}]
            results.append(loom_client.patch(f"/api/v1/purchase/{record['id']}", json={"lines": lines}).status_code)
        patched = loom_client.patch(f"/api/v1/purchase/{record['id']}", json={"code": f"P{n}"},
                                    headers={"If-Match": f'"{record["version"]}"'})
        results.append(patched.status_code)

    threads = [threading.Thread(target=add, args=(n,)) for n in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {200, 409, 412}, results
    with loom_engine.connect() as conn:
        total, count = conn.execute(sa.text("SELECT total, count FROM e_purchase")).one()
        rows = conn.execute(sa.text("SELECT amount FROM e_purchase_line")).scalars().all()
    assert (Decimal(str(total)), count) == (sum(Decimal(str(r)) for r in rows), len(rows)), (total, count, rows)


def test_a_username_made_of_digits_names_that_user_not_the_user_with_that_id(world, make_user, loom_engine):
    """``"to": "7"`` goes to the user called 7 where there is one: a transfer is never sent
    to whoever happens to have the id that a username spells."""
    ids = world["ids"]
    lead = world["client"]("li")
    digits = make_user(str(ids["sun"]), team="east")       # a user whose name is sun's id
    assert digits != ids["sun"]
    mine = create(lead, name="mine")
    reply = lead.post("/api/v1/account/_transfer", json={"ids": [mine], "to": str(ids["sun"])})
    assert reply.status_code == 200, reply.get_json()
    assert owners(loom_engine)["mine"][:2] == (digits, digits)
    # a JSON number is an id; text of digits naming no user is the id it spells
    back = world["admin"].post("/api/v1/account/_transfer", json={"ids": [mine], "to": ids["li"]})
    assert back.status_code == 200 and owners(loom_engine)["mine"][:2] == (ids["li"], ids["li"])
    by_id = lead.post("/api/v1/account/_transfer", json={"ids": [mine], "to": str(ids["zhao"])})
    assert by_id.status_code == 200 and owners(loom_engine)["mine"][:2] == (ids["zhao"], ids["zhao"])
    create(world["admin"], name="sun's", account_manager=ids["sun"])
    counted = world["admin"].get("/api/v1/_transfer", query_string={"from": str(ids["sun"])})
    assert counted.status_code == 200 and counted.get_json()["data"] == {}   # the user called so owns nothing
    assert world["admin"].get("/api/v1/_transfer", query_string={"from": "sun"}).get_json()["data"] == {"account": 1}


def test_a_refused_value_for_a_computed_field_names_no_field_the_writer_may_not_read(
        apply_metadata, make_entity, make_user, client_for, loom_client):
    apply_metadata(
        make_entity("part", [{"name": "name", "type": "string"}, {"name": "cost", "type": "money"}],
                    title_field="name"),
        make_entity("quote", [{"name": "title", "type": "string"}, {"name": "part", "type": "link", "target": "part"},
                              {"name": "price", "type": "money"}, {"name": "margin_note", "type": "string"},
                              {"name": "margin", "type": "money", "compute": "price - margin_secret"},
                              {"name": "margin_secret", "type": "money"},
                              {"name": "part_cost", "type": "money", "compute": "part.cost"},
                              {"name": "shown", "type": "money", "compute": "price * 2"}], title_field="title"),
        {"kind": "role", "name": "seller", "permissions": {
            "quote": {"actions": ["read", "create"], "scope": "all", "fields": {"margin_secret": "none"}},
            "part": {"actions": ["read"], "scope": "all", "fields": {"cost": "none"}}}})
    make_user("seller", roles=["seller"])
    reply = client_for("seller").post("/api/v1/quote", json={"title": "q", "margin": "1", "part_cost": "2",
                                                             "shown": "3"})
    assert reply.status_code == 422, reply.get_json()
    text = reply.get_data(as_text=True)
    assert "margin_secret" not in text and "cost" not in text.replace("part_cost", ""), text
    by_field = {e["field"]: e for e in reply.get_json()["errors"]}
    assert set(by_field) == {"margin", "part_cost", "shown"} and {e["code"] for e in by_field.values()} == {"computed"}
    assert by_field["shown"]["params"]["expression"] == "price * 2"     # one the writer may read, as written
    full = loom_client.post("/api/v1/quote", json={"title": "q", "margin": "1"}).get_json()
    assert full["errors"][0]["params"]["expression"] == "price - margin_secret"


def test_a_broken_rule_or_required_field_the_writer_may_not_read_is_refused_without_naming_it(
        apply_metadata, make_entity, make_user, client_for, loom_client):
    apply_metadata(
        make_entity("deal", [{"name": "title", "type": "string"}, {"name": "price", "type": "money"},
                             {"name": "floor", "type": "money", "default": "50"},
                             {"name": "approval", "type": "string", "required_when": "price > 1000"}],
                    title_field="title",
                    rules=[{"when": "price < floor", "message": {"en": "Priced too low"}, "fields": ["floor"]}]),
        {"kind": "role", "name": "seller", "permissions": {
            "deal": {"actions": ["read", "create", "update"], "scope": "all",
                     "fields": {"floor": "none", "approval": "none"}}}})
    make_user("seller", roles=["seller"])
    seller = client_for("seller")
    for body in ({"title": "t", "price": "10"}, {"title": "t", "price": "2000"}):
        reply = seller.post("/api/v1/deal", json=body)
        assert reply.status_code == 422, reply.get_json()
        text = reply.get_data(as_text=True)
        assert "floor" not in text and "approval" not in text, text
        assert all(e["field"] == "" for e in reply.get_json()["errors"])
    assert "Priced too low" in seller.post("/api/v1/deal", json={"title": "t", "price": "10"}).get_data(as_text=True)
    # whoever may read the field is told which it is
    full = loom_client.post("/api/v1/deal", json={"title": "t", "price": "10"}).get_json()
    assert [e["field"] for e in full["errors"]] == ["floor"]
