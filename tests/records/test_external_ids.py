"""External ids: a record's id in another system, linked once each way, so that writes
coming back from that system find their record again (an upsert), through the API, the
record.create / record.update actions and plugins alike; every link audited, gone with
its record, and never a way to learn about a record one may not read."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from loom.errors import BadRequest, Conflict
from loom.principal import Principal
from loom.records import external_ids
from loom.records.door import record_service


@pytest.fixture
def shop(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("vendor", [{"name": "name", "type": "string", "required": True},
                               {"name": "city", "type": "string"}], title_field="name"),
        {"kind": "role", "name": "buyer", "permissions": {
            "vendor": {"actions": ["read", "create", "update", "delete"], "scope": "own"}}},
        {"kind": "role", "name": "viewer", "permissions": {"vendor": {"actions": ["read"]}}},
    )
    make_user("root", superuser=True)
    make_user("ann", roles=["buyer"])
    make_user("bob", roles=["buyer"])
    make_user("val", roles=["viewer"])


def _links(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT system, entity, external_id, record_id, created_by FROM loom_external_ids ORDER BY id"))]


def _audit(engine, action: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT actor, entity, record_id, detail FROM loom_audit WHERE action = :a ORDER BY seq"), {"a": action})]


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def _new(client, name="Acme", **values) -> int:
    reply = client.post("/api/v1/vendor", json={"name": name, **values})
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]["id"]


# -- the functions -------------------------------------------------------------------------

def test_link_is_idempotent_and_a_clash_names_both_sides(shop, loom_engine):
    with loom_engine.connect() as conn, conn.begin():
        assert external_ids.link(conn, "erp", "vendor", "V-1", 11, "sync") is True
        assert external_ids.link(conn, "erp", "vendor", "V-1", 11, "sync") is False  # again: nothing new
        assert external_ids.link(conn, "crm.cn", "vendor", "V-1", 12, "sync") is True  # another system may
        with pytest.raises(Conflict) as taken:
            external_ids.link(conn, "erp", "vendor", "V-1", 13, "sync")
        assert taken.value.code == "external_id_taken"
        assert "V-1" in taken.value.detail and "vendor 11" in taken.value.detail and "vendor 13" in taken.value.detail
        with pytest.raises(Conflict) as linked:
            external_ids.link(conn, "erp", "vendor", "V-2", 11, "sync")
        assert linked.value.code == "record_already_linked"
        assert "'V-1'" in linked.value.detail and "'V-2'" in linked.value.detail
        # the failed attempts left the transaction usable and changed nothing
        assert external_ids.record_for(conn, "erp", "vendor", "V-1") == 11
        assert external_ids.external_for(conn, "erp", "vendor", 11) == "V-1"
        assert external_ids.record_for(conn, "erp", "vendor", "V-2") is None
        assert external_ids.external_for(conn, "erp", "vendor", 13) is None
    assert _links(loom_engine) == [("erp", "vendor", "V-1", 11, "sync"), ("crm.cn", "vendor", "V-1", 12, "sync")]
    assert [(a, e, r) for a, e, r, _d in _audit(loom_engine, "external_id.link")] == [("sync", "vendor", 11),
                                                                                      ("sync", "vendor", 12)]
    assert external_ids.unlink(loom_engine, "erp", "vendor", 11, "sync") == "V-1"
    assert external_ids.unlink(loom_engine, "erp", "vendor", 11, "sync") is None
    assert external_ids.record_for(loom_engine, "erp", "vendor", "V-1") is None
    assert len(_audit(loom_engine, "external_id.unlink")) == 1


def test_a_link_made_in_a_transaction_that_rolls_back_is_gone_with_it(shop, loom_engine):
    with pytest.raises(RuntimeError), loom_engine.connect() as conn, conn.begin():
        external_ids.link(conn, "erp", "vendor", "V-9", 5, "sync")
        raise RuntimeError("the caller's work failed")
    assert _links(loom_engine) == []
    assert _audit(loom_engine, "external_id.link") == []


@pytest.mark.parametrize(("system", "external_id", "field", "words"), [
    ("ERP", "1", "system", "lower-case"),
    ("x" * 101, "1", "system", "at most 100"),
    ("", "1", "system", "name the other system"),
    ("../erp", "1", "system", "lower-case"),
    (".", "1", "system", "starting with a letter or digit"),
    ("erp", "", "external_id", "give the id"),
    ("erp", "x" * 201, "external_id", "at most 200"),
    ("erp", "a\x00b", "external_id", "control characters"),
    ("erp", "a\nb", "external_id", "control characters"),
    ("erp", "a\u2028b", "external_id", "control characters"),
    ("erp", " V-1", "external_id", "begin or end with a space"),
    ("erp", "../V-1", "external_id", ". or .."),
    ("erp", "SO/./1", "external_id", ". or .."),
    ("erp", ["V-1"], "external_id", "give the id"),
])
def test_hostile_system_names_and_ids_are_refused_naming_the_problem(shop, loom_engine, system, external_id, field,
                                                                     words):
    with pytest.raises(BadRequest) as refused:
        external_ids.link(loom_engine, system, "vendor", external_id, 1, "sync")
    assert refused.value.status == 400
    assert refused.value.errors[0]["field"] == field and words in refused.value.errors[0]["message"]
    assert _links(loom_engine) == []


def test_ids_with_slashes_and_any_script_are_fine(shop, loom_engine):
    for value in ("SO/2026/0042", "供应商-001", "a..b", "x" * 200):
        assert external_ids.link(loom_engine, "erp", "vendor", value, len(value), "sync")
        assert external_ids.record_for(loom_engine, "erp", "vendor", value) == len(value)
    assert external_ids.link(loom_engine, "dialer", "vendor", 42, 7, "sync")  # a number is taken as its digits
    assert external_ids.external_for(loom_engine, "dialer", "vendor", 7) == "42"


# -- upsert through the record service -----------------------------------------------------

def test_upsert_creates_then_updates_the_same_record(shop, loom_app, loom_engine):
    ann = Principal.system("ann-sync")
    with loom_app.app_context():
        first, created = external_ids.upsert(record_service("vendor", ann), "erp", "V-7", {"name": "Acme"})
        again, created_again = external_ids.upsert(record_service("vendor", ann), "erp", "V-7",
                                                   {"name": "Acme", "city": "Suzhou"})
    assert created is True and created_again is False
    assert again["id"] == first["id"] and again["city"] == "Suzhou" and again["version"] == first["version"] + 1
    assert _count(loom_engine, "e_vendor") == 1
    assert _links(loom_engine) == [("erp", "vendor", "V-7", first["id"], "system:ann-sync")]
    with loom_engine.connect() as conn:
        actions = conn.execute(sa.text("SELECT action FROM loom_audit WHERE entity = 'vendor' AND record_id = :r "
                                       "ORDER BY seq"),
                               {"r": first["id"]}).scalars().all()
    assert actions == ["record.create", "external_id.link", "record.update"]


def test_an_upsert_whose_create_is_refused_leaves_no_record_and_no_link(shop, loom_app, loom_engine):
    with loom_app.app_context(), pytest.raises(Exception) as refused:
        external_ids.upsert(record_service("vendor", Principal.system("sync")), "erp", "V-8", {"city": "no name"})
    assert refused.value.status == 422
    assert _count(loom_engine, "e_vendor") == 0 and _links(loom_engine) == []


def test_upsert_joins_the_callers_transaction(shop, loom_app, loom_engine):
    with pytest.raises(RuntimeError), loom_app.app_context(), loom_engine.connect() as conn, conn.begin():
        service = record_service("vendor", Principal.system("sync"), conn)
        record, _created = external_ids.upsert(service, "erp", "V-3", {"name": "Joined"})
        assert external_ids.record_for(conn, "erp", "vendor", "V-3") == record["id"]
        raise RuntimeError("the caller's work failed")
    assert _count(loom_engine, "e_vendor") == 0 and _links(loom_engine) == []


def test_two_concurrent_upserts_of_one_external_id_make_one_record(shop, loom_app, loom_engine):
    """The second waits for the first (PostgreSQL: a transaction lock on the external id;
    SQLite: writers take turns), then finds its link and updates the record."""
    start, results, failures = threading.Barrier(4), [], []

    def upsert(n: int) -> None:
        try:
            with loom_app.app_context():
                start.wait()
                results.append(external_ids.upsert(record_service("vendor", Principal.system(f"sync-{n}")),
                                                   "erp", "V-RACE", {"name": "Race", "city": f"city {n}"}))
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=upsert, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(created for _record, created in results) == [False, False, False, True]
    assert len({record["id"] for record, _created in results}) == 1
    assert _count(loom_engine, "e_vendor") == 1 and len(_links(loom_engine)) == 1


@pytest.mark.parametrize("clash", ["two ids for one record", "one id for two records"])
def test_concurrent_clashing_links_give_one_link_and_a_conflict_never_an_error(shop, loom_engine, clash):
    start, outcomes = threading.Barrier(2), []

    def link(n: int) -> None:
        external_id, record_id = (f"V-{n}", 5) if clash == "two ids for one record" else ("V-1", 5 + n)
        start.wait()
        try:
            outcomes.append(external_ids.link(loom_engine, "erp", "vendor", external_id, record_id, f"sync-{n}"))
        except Conflict as conflict:
            outcomes.append(conflict.code)

    threads = [threading.Thread(target=link, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = "record_already_linked" if clash == "two ids for one record" else "external_id_taken"
    assert sorted(outcomes, key=str) == sorted([True, expected], key=str)
    assert len(_links(loom_engine)) == 1


# -- deleting a record -----------------------------------------------------------------------

def test_deleting_a_record_removes_its_links_and_frees_the_id(shop, client_for, loom_engine):
    root = client_for("root")
    first = _new(root)
    assert root.put(f"/api/v1/vendor/{first}/_external_ids/erp", json={"external_id": "V-1"}).status_code == 201
    assert root.put(f"/api/v1/vendor/{first}/_external_ids/crm", json={"external_id": "C-1"}).status_code == 201
    assert root.delete(f"/api/v1/vendor/{first}").status_code == 204
    assert _links(loom_engine) == []
    assert {d for _a, _e, _r, d in _audit(loom_engine, "external_id.unlink")} and all(
        "record deleted" in d for _a, _e, _r, d in _audit(loom_engine, "external_id.unlink"))
    assert root.get("/api/v1/vendor/_by_external/erp/V-1").status_code == 404
    second = _new(root, "Acme again")
    assert root.put(f"/api/v1/vendor/{second}/_external_ids/erp", json={"external_id": "V-1"}).status_code == 201


# -- the API ----------------------------------------------------------------------------------

def test_linking_reading_finding_and_unlinking_through_the_api(shop, client_for, loom_engine):
    ann = client_for("ann")
    vendor = _new(ann)
    assert ann.get(f"/api/v1/vendor/{vendor}/_external_ids").get_json()["data"] == []
    put = ann.put(f"/api/v1/vendor/{vendor}/_external_ids/erp", json={"external_id": "SO/2026/7"})
    assert put.status_code == 201 and put.get_json()["data"] == {"system": "erp", "external_id": "SO/2026/7",
                                                                 "record_id": vendor}
    again = ann.put(f"/api/v1/vendor/{vendor}/_external_ids/erp", json={"external_id": "SO/2026/7"})
    assert again.status_code == 200
    links = ann.get(f"/api/v1/vendor/{vendor}/_external_ids").get_json()["data"]
    assert [(link["system"], link["external_id"], link["created_by"]) for link in links] == [("erp", "SO/2026/7", "ann")]
    found = ann.get("/api/v1/vendor/_by_external/erp/SO/2026/7")
    assert found.status_code == 200 and found.get_json()["data"]["id"] == vendor
    assert found.headers["ETag"] == f'"{found.get_json()["data"]["version"]}"'
    assert ann.get("/api/v1/vendor/_by_external/erp/SO%2F2026%2F7").get_json()["data"]["id"] == vendor

    other = _new(ann, "Other")
    clash = ann.put(f"/api/v1/vendor/{other}/_external_ids/erp", json={"external_id": "SO/2026/7"})
    assert clash.status_code == 409 and clash.get_json()["code"] == "external_id_taken"
    assert clash.get_json()["params"]["linked_record_id"] == vendor  # ann may read it: named
    second = ann.put(f"/api/v1/vendor/{vendor}/_external_ids/erp", json={"external_id": "SO/2026/8"})
    assert second.status_code == 409 and second.get_json()["code"] == "record_already_linked"

    assert ann.delete(f"/api/v1/vendor/{vendor}/_external_ids/erp").status_code == 204
    assert ann.delete(f"/api/v1/vendor/{vendor}/_external_ids/erp").status_code == 404
    assert ann.get("/api/v1/vendor/_by_external/erp/SO/2026/7").status_code == 404
    assert _links(loom_engine) == []
    assert [a for a, _e, _r, _d in _audit(loom_engine, "external_id.link")] == ["ann"]
    assert [a for a, _e, _r, _d in _audit(loom_engine, "external_id.unlink")] == ["ann"]


def test_someone_elses_record_is_not_found_every_way_and_no_oracle(shop, client_for, loom_engine):
    ann, bob = client_for("ann"), client_for("bob")  # both buyers, each of their own records
    hidden = _new(ann, "Ann's")
    assert ann.put(f"/api/v1/vendor/{hidden}/_external_ids/erp", json={"external_id": "V-1"}).status_code == 201
    mine = _new(bob, "Bob's")

    assert bob.get(f"/api/v1/vendor/{hidden}/_external_ids").status_code == 404
    assert bob.put(f"/api/v1/vendor/{hidden}/_external_ids/erp", json={"external_id": "V-2"}).status_code == 404
    assert bob.delete(f"/api/v1/vendor/{hidden}/_external_ids/erp").status_code == 404
    linked_but_hidden = bob.get("/api/v1/vendor/_by_external/erp/V-1")
    not_linked = bob.get("/api/v1/vendor/_by_external/erp/V-404")
    assert linked_but_hidden.status_code == not_linked.status_code == 404
    assert (linked_but_hidden.get_json()["detail"].replace("V-1", "?")
            == not_linked.get_json()["detail"].replace("V-404", "?"))
    # a clash with a record bob may not read does not name it
    clash = bob.put(f"/api/v1/vendor/{mine}/_external_ids/erp", json={"external_id": "V-1"})
    assert clash.status_code == 409
    assert "linked_record_id" not in clash.get_json()["params"]
    assert clash.get_json()["detail"] == "erp id 'V-1' is already linked to another vendor"
    assert _links(loom_engine) == [("erp", "vendor", "V-1", hidden, "ann")]


def test_a_reader_reads_links_but_may_not_change_them(shop, client_for, loom_engine):
    root, val = client_for("root"), client_for("val")
    vendor = _new(root)
    root.put(f"/api/v1/vendor/{vendor}/_external_ids/erp", json={"external_id": "V-1"})
    assert [link["external_id"] for link in val.get(f"/api/v1/vendor/{vendor}/_external_ids").get_json()["data"]] \
        == ["V-1"]
    assert val.get("/api/v1/vendor/_by_external/erp/V-1").get_json()["data"]["id"] == vendor
    refused = val.put(f"/api/v1/vendor/{vendor}/_external_ids/crm", json={"external_id": "C-1"})
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden_action"
    assert val.delete(f"/api/v1/vendor/{vendor}/_external_ids/erp").status_code == 403
    assert [(s, x) for s, _e, x, _r, _c in _links(loom_engine)] == [("erp", "V-1")]


def test_a_read_only_token_is_refused_on_every_write(shop, client_for, loom_engine):
    root = client_for("root")
    vendor = _new(root)
    root.put(f"/api/v1/vendor/{vendor}/_external_ids/erp", json={"external_id": "V-1"})
    reader = client_for("root", read_only=True)
    assert reader.get(f"/api/v1/vendor/{vendor}/_external_ids").status_code == 200
    for reply in (reader.put(f"/api/v1/vendor/{vendor}/_external_ids/crm", json={"external_id": "C-1"}),
                  reader.put(f"/api/v1/vendor/{vendor}/_external_ids/erp", json={"external_id": "V-1"}),
                  reader.delete(f"/api/v1/vendor/{vendor}/_external_ids/erp")):
        assert reply.status_code == 403 and "read-only token" in reply.get_json()["detail"]
    assert [(s, x) for s, _e, x, _r, _c in _links(loom_engine)] == [("erp", "V-1")]


@pytest.mark.parametrize(("system", "body", "words"), [
    ("ERP", {"external_id": "V-1"}, "lower-case"),
    ("x" * 101, {"external_id": "V-1"}, "at most 100"),
    ("erp", {"external_id": "x" * 201}, "at most 200"),
    ("erp", {"external_id": "V\u00001"}, "NUL character"),
    ("erp", {"external_id": "V\r\n1"}, "control characters"),
    ("erp", {"external_id": ".."}, ". or .."),
    ("erp", {"external_id": None}, "give the id"),
    ("erp", {}, "give the id"),
    ("erp", {"external_id": {"$ne": 1}}, "give the id"),
    ("e%00rp", {"external_id": "V-1"}, "NUL character"),
    ("e%0Arp", {"external_id": "V-1"}, "lower-case"),
])
def test_hostile_input_through_the_api_is_a_400_naming_the_problem(shop, client_for, loom_engine, system, body, words):
    root = client_for("root")
    vendor = _new(root)
    reply = root.put(f"/api/v1/vendor/{vendor}/_external_ids/{system}", json=body)
    assert reply.status_code == 400, reply.get_json()
    assert words in reply.get_json()["detail"]
    assert _links(loom_engine) == []


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/api/v1/vendor/_by_external/erp/../../vendor/1", 400, ". or .."),
    ("/api/v1/vendor/_by_external/erp/%2E%2E", 400, ". or .."),
    ("/api/v1/vendor/_by_external/erp/V%001", 400, "NUL character"),
    ("/api/v1/vendor/_by_external/erp/V%091", 400, "control characters"),
    ("/api/v1/vendor/_by_external/ERP/V-1", 400, "lower-case"),
    ("/api/v1/vendor/_by_external/erp/" + "x" * 201, 400, "at most 200"),
    ("/api/v1/vendor/_by_external/erp/V%0A1", 404, ""),  # no route takes a line break in the path
    ("/api/v1/nothing/_by_external/erp/V-1", 404, "no entity named"),
])
def test_hostile_lookups_are_refused_never_a_500(shop, client_for, path, status, words):
    reply = client_for("root").get(path)
    assert reply.status_code == status, (path, reply.status_code)
    assert words in reply.get_json()["detail"]


def test_a_put_body_must_be_a_json_object(shop, client_for):
    root = client_for("root")
    vendor = _new(root)
    reply = root.put(f"/api/v1/vendor/{vendor}/_external_ids/erp", json=["V-1"])
    assert reply.status_code == 400 and "JSON object" in reply.get_json()["detail"]


# -- the record.create and record.update actions ---------------------------------------------

def _call(arguments, app, principal, delivery_id=7):
    from loom.integrations.actions import ActionCall

    return ActionCall(arguments=arguments, idempotency_key=f"delivery-{delivery_id}", delivery_id=delivery_id,
                      attempt=1, rule="copy_vendors", principal=principal, app=app)


def test_record_create_with_an_external_id_is_an_upsert(shop, loom_app, loom_engine):
    from loom.integrations import records

    bot = Principal.system("erp-sync")
    arguments = {"entity": "vendor", "values": {"name": "Acme"}, "external_id": {"system": "erp", "id": "V-1"}}
    made = records.create(_call(arguments, loom_app, bot))
    again = records.create(_call(arguments, loom_app, bot))  # the same delivery tried again
    assert made["created"] is True and again == {**made, "created": False}
    changed = records.create(_call({**arguments, "values": {"name": "Acme", "city": "Wuxi"}}, loom_app, bot))
    assert changed["id"] == made["id"] and changed["version"] == made["version"] + 1
    assert _count(loom_engine, "e_vendor") == 1
    assert _links(loom_engine) == [("erp", "vendor", "V-1", made["id"], "system:erp-sync")]
    # a number rendered from a template is the same id as its text
    numeric = records.create(_call({**arguments, "external_id": {"system": "erp", "id": 42}}, loom_app, bot))
    assert records.create(_call({**arguments, "external_id": {"system": "erp", "id": "42"}}, loom_app, bot))[
        "id"] == numeric["id"]


def test_record_update_finds_its_record_by_external_id(shop, loom_app, loom_engine):
    from loom.integrations import records
    from loom.integrations.actions import PermanentFailure

    bot = Principal.system("erp-sync")
    made = records.create(_call({"entity": "vendor", "values": {"name": "Acme"},
                                 "external_id": {"system": "erp", "id": "V-1"}}, loom_app, bot))
    updated = records.update(_call({"entity": "vendor", "values": {"city": "Hefei"},
                                    "external_id": {"system": "erp", "id": "V-1"}}, loom_app, bot))
    assert updated == {"id": made["id"], "version": made["version"] + 1}
    with pytest.raises(PermanentFailure, match="404") as missing:
        records.update(_call({"entity": "vendor", "values": {"city": "x"},
                              "external_id": {"system": "erp", "id": "V-404"}}, loom_app, bot))
    assert "V-404" in str(missing.value)
    with pytest.raises(PermanentFailure, match="either id or external_id"):
        records.update(_call({"entity": "vendor", "values": {}, "id": made["id"],
                              "external_id": {"system": "erp", "id": "V-1"}}, loom_app, bot))
    with pytest.raises(PermanentFailure, match="id must be"):
        records.update(_call({"entity": "vendor", "values": {}}, loom_app, bot))


@pytest.mark.parametrize(("external_id", "words"), [
    ({"system": "ERP", "id": "V-1"}, "external_id.system"),
    ({"system": "erp", "id": "V\n1"}, "control characters"),
    ({"system": "erp", "id": "x" * 201}, "at most 200"),
    ({"system": "erp"}, "external_id must be"),
    ("V-1", "external_id must be"),
])
def test_a_bad_external_id_argument_is_a_permanent_failure_naming_it(shop, loom_app, loom_engine, external_id, words):
    from loom.integrations import records
    from loom.integrations.actions import PermanentFailure

    for action in (records.create, records.update):
        with pytest.raises(PermanentFailure, match=words):
            action(_call({"entity": "vendor", "values": {"name": "x"}, "external_id": external_id}, loom_app,
                         Principal.system("erp-sync")))
    assert _count(loom_engine, "e_vendor") == 0


def test_the_upsert_is_the_rule_principals_to_make(shop, loom_app, loom_engine, client_for):
    """An upsert may update only what its principal may: bob's delivery cannot reach the
    vendor ann's delivery created and linked."""
    from loom.integrations import records
    from loom.integrations.actions import PermanentFailure

    identity = loom_app.extensions["loom"].identity
    with loom_app.app_context():
        ann, bob = identity.principal_for("ann"), identity.principal_for("bob")
    arguments = {"entity": "vendor", "values": {"name": "Acme"}, "external_id": {"system": "erp", "id": "V-1"}}
    made = records.create(_call(arguments, loom_app, ann))
    with pytest.raises(PermanentFailure, match="404") as refused:
        records.create(_call({**arguments, "values": {"name": "Hijacked"}}, loom_app, bob))
    assert "not one you may change" in str(refused.value) and f"id {made['id']}" not in str(refused.value)
    assert client_for("ann").get(f"/api/v1/vendor/{made['id']}").get_json()["data"]["name"] == "Acme"
    assert _count(loom_engine, "e_vendor") == 1


def test_a_replayed_rule_delivery_does_not_create_twice(apply_metadata, make_entity, make_user, loom_app,
                                                        loom_engine, client_for):
    """A rule copies each new lead into a contact, linked by the lead's id: the worker
    runs the delivery, an admin replays it, and there is still one contact."""
    from loom.integrations.worker import Worker

    make_user("root", superuser=True)
    make_user("bot", superuser=True)
    apply_metadata(
        make_entity("lead", [{"name": "company", "type": "string", "required": True}], title_field="company"),
        make_entity("contact", [{"name": "company", "type": "string", "required": True}], title_field="company"),
        {"kind": "rule", "name": "copy_leads", "on": {"entity": "lead", "event": "created"},
         "action": "record.create", "run_as": "bot",
         "with": {"entity": "contact", "values": {"company": "{{ record.company }}"},
                  "external_id": {"system": "crm.leads", "id": "{{ record.id }}"}}},
    )
    root = client_for("root")
    lead = root.post("/api/v1/lead", json={"company": "Acme"}).get_json()["data"]["id"]
    Worker(loom_app).run_once()
    with loom_engine.connect() as conn:
        created = conn.execute(sa.text("SELECT min(created_at) FROM loom_deliveries")).scalar()
    replayed = root.post("/api/v1/_deliveries/_replay", json={"since": "2000-01-01T00:00:00Z",
                                                             "until": "2999-01-01T00:00:00Z"})
    assert replayed.status_code == 200 and replayed.get_json()["replayed"] == 1, replayed.get_json()
    Worker(loom_app).run_once()
    contacts = root.get("/api/v1/contact").get_json()["data"]
    assert [c["company"] for c in contacts] == ["Acme"]
    assert root.get(f"/api/v1/contact/_by_external/crm.leads/{lead}").get_json()["data"]["id"] == contacts[0]["id"]
    with loom_engine.connect() as conn:
        results = conn.execute(sa.text("SELECT status, result FROM loom_deliveries ORDER BY id")).all()
    assert created is not None and [r.status for r in results] == ["succeeded", "succeeded"]
    assert [json.loads(r.result)["created"] if isinstance(r.result, str) else r.result["created"]
            for r in results] == [True, False]


def test_the_api_description_lists_the_external_id_endpoints_each_caller_may_use(shop, client_for):
    from openapi_spec_validator import validate

    buyer = client_for("ann").get("/api/openapi.json").get_json()
    validate(buyer)
    assert set(buyer["paths"]["/api/v1/vendor/{id}/_external_ids/{system}"]) == {"parameters", "put", "delete"}
    assert "get" in buyer["paths"]["/api/v1/vendor/{id}/_external_ids"]
    assert "get" in buyer["paths"]["/api/v1/vendor/_by_external/{system}/{external_id}"]
    viewer = client_for("val").get("/api/openapi.json").get_json()
    assert "/api/v1/vendor/{id}/_external_ids/{system}" not in viewer["paths"]
    assert "get" in viewer["paths"]["/api/v1/vendor/{id}/_external_ids"]
