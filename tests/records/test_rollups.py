"""Roll-ups and recompute through links, as the API shows them: a roll-up over child rows
follows the rows a write gives; one over linked records follows every create, update,
move, delete and bulk create of them, in the same transaction, as a real change of the
parent (version, audit entry, event); ``depends_on_links`` recomputes the records that
read a changed record through a link."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from loom.audit.models import audit_log
from loom.events import outbox

REGION = {"kind": "entity", "name": "region", "title_field": "name", "fields": [
    {"name": "name", "type": "string"},
    {"name": "open_tickets", "type": "integer", "rollup": {"from": "customer.region", "sum": "open_tickets"}},
]}
CUSTOMER = {"kind": "entity", "name": "customer", "title_field": "name", "fields": [
    {"name": "name", "type": "string"},
    {"name": "region", "type": "link", "target": "region"},
    {"name": "credit_limit", "type": "money"},
    {"name": "open_tickets", "type": "integer",
     "rollup": {"from": "service_ticket.customer", "count": True, "where": "status != 'closed'"}},
    {"name": "hours", "type": "decimal", "scale": 2, "rollup": {"from": "service_ticket.customer", "sum": "hours"}},
    {"name": "avg_hours", "type": "decimal", "scale": 2,
     "rollup": {"from": "service_ticket.customer", "avg": "hours"}},
    {"name": "first_opened", "type": "date", "rollup": {"from": "service_ticket.customer", "min": "opened"}},
    {"name": "last_subject", "type": "string", "rollup": {"from": "service_ticket.customer", "max": "subject"}},
    {"name": "load", "type": "string", "compute": "if(open_tickets > 2, 'busy', 'calm')"},
]}
TICKET = {"kind": "entity", "name": "service_ticket", "title_field": "subject", "fields": [
    {"name": "subject", "type": "string"},
    {"name": "customer", "type": "link", "target": "customer"},
    {"name": "status", "type": "string", "default": "open"},
    {"name": "hours", "type": "decimal", "scale": 2},
    {"name": "opened", "type": "date"},
    {"name": "note", "type": "text"},
    {"name": "credit_left", "type": "money", "compute": "customer.credit_limit - coalesce(hours, 0)",
     "depends_on_links": True},
    {"name": "region_name", "type": "string", "compute": "customer.region.name", "depends_on_links": True},
]}
ORDER = {"kind": "entity", "name": "sales_order", "title_field": "code", "fields": [
    {"name": "code", "type": "string"},
    {"name": "discount", "type": "percent"},
    {"name": "lines_total", "type": "money", "rollup": {"from": "lines", "sum": "amount"}},
    {"name": "big_lines", "type": "integer", "rollup": {"from": "lines", "count": True, "where": "amount > 100"}},
    {"name": "cheapest", "type": "money", "rollup": {"from": "lines", "min": "unit_price"}},
    {"name": "total", "type": "money", "compute": "lines_total * (1 - coalesce(discount, 0) / 100)"},
    {"name": "lines", "type": "table", "target": "order_line"},
]}
LINE = {"kind": "entity", "name": "order_line", "child": True, "fields": [
    {"name": "quantity", "type": "integer"},
    {"name": "unit_price", "type": "money"},
    {"name": "amount", "type": "money", "compute": "quantity * unit_price"},
]}


@pytest.fixture
def crm(apply_metadata, loom_app):
    apply_metadata(REGION, CUSTOMER, TICKET, ORDER, LINE)
    return loom_app


def _created(client, entity: str, body: dict) -> dict:
    reply = client.post(f"/api/v1/{entity}", json=body)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["data"]


def _get(client, entity: str, record_id: int) -> dict:
    reply = client.get(f"/api/v1/{entity}/{record_id}")
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["data"]


def _patch(client, entity: str, record_id: int, body: dict) -> dict:
    reply = client.patch(f"/api/v1/{entity}/{record_id}", json=body)
    assert reply.status_code == 200, reply.get_json()
    return reply.get_json()["data"]


def _rollups(client, customer_id: int) -> tuple:
    c = _get(client, "customer", customer_id)
    return c["open_tickets"], c["hours"], c["avg_hours"], c["first_opened"], c["last_subject"], c["load"]


# -- child rows -------------------------------------------------------------------------------------

def test_child_rollups_follow_the_rows_a_write_gives(crm, loom_client):
    order = _created(loom_client, "sales_order", {"code": "SO-1", "discount": "10", "lines": [
        {"quantity": 2, "unit_price": "30.00"}, {"quantity": 5, "unit_price": "40.00"},
        {"quantity": 1, "unit_price": None}]})
    # amounts 60, 200, null: computed first, then summed; the where counts one line over 100
    assert (order["lines_total"], order["big_lines"], order["cheapest"], order["total"]) == \
        ("260.00", 1, "30.00", "234.00")
    lines = order["lines"]
    updated = _patch(loom_client, "sales_order", order["id"], {"lines": [
        {"id": lines[1]["id"], "quantity": 1, "unit_price": "40.00"}, {"quantity": 3, "unit_price": "50.00"}]})
    assert (updated["lines_total"], updated["big_lines"], updated["cheapest"], updated["total"]) == \
        ("190.00", 1, "40.00", "171.00")
    # a write that leaves the rows alone keeps the roll-ups, and the computed field reads them
    updated = _patch(loom_client, "sales_order", order["id"], {"discount": "50"})
    assert (updated["lines_total"], updated["total"]) == ("190.00", "95.00")
    emptied = _patch(loom_client, "sales_order", order["id"], {"lines": []})
    assert (emptied["lines_total"], emptied["big_lines"], emptied["cheapest"], emptied["total"]) == \
        ("0.00", 0, None, "0.00")


def test_a_rollup_cannot_be_written(crm, loom_client):
    reply = loom_client.post("/api/v1/sales_order", json={"code": "x", "lines_total": "5"})
    assert reply.status_code == 422
    assert reply.get_json()["errors"] == [{
        "field": "lines_total", "code": "computed", "message": "is rolled up as sum(amount) of lines; it cannot be set",
        "params": {"rollup": "sum(amount) of lines"}}]
    customer = _created(loom_client, "customer", {"name": "Acme"})
    reply = loom_client.patch(f"/api/v1/customer/{customer['id']}", json={"open_tickets": 3})
    assert reply.status_code == 422 and reply.get_json()["errors"][0]["code"] == "computed"


def test_bulk_created_orders_get_their_child_rollups(crm, loom_app):
    from loom.principal import Principal
    from loom.records.door import record_service

    with loom_app.app_context():
        service = record_service("sales_order", Principal.system("test"))
        ids = service.bulk_create([{"code": f"B{i}", "lines": [{"quantity": i, "unit_price": "2.50"}] * 2}
                                   for i in range(1, 4)])
        totals = [service.get(i)["lines_total"] for i in ids]
    assert totals == ["5.00", "10.00", "15.00"]


# -- linked records ---------------------------------------------------------------------------------

def test_link_rollups_follow_creates_updates_moves_and_deletes(crm, loom_client):
    acme = _created(loom_client, "customer", {"name": "Acme"})["id"]
    bolt = _created(loom_client, "customer", {"name": "Bolt"})["id"]
    assert _rollups(loom_client, acme) == (0, "0.00", None, None, None, "calm")  # nothing links to it yet
    t1 = _created(loom_client, "service_ticket", {"subject": "b-printer", "customer": acme, "hours": "1.50",
                                                  "opened": "2030-03-02"})
    _created(loom_client, "service_ticket", {"subject": "a-screen", "customer": acme, "hours": "2.25",
                                             "opened": "2030-01-15"})
    t3 = _created(loom_client, "service_ticket", {"subject": "c-mouse", "customer": acme, "opened": "2030-02-01"})
    assert _rollups(loom_client, acme) == (3, "3.75", "1.88", "2030-01-15", "c-mouse", "busy")
    # closing a ticket: the where no longer counts it; the sum still does
    _patch(loom_client, "service_ticket", t3["id"], {"status": "closed"})
    assert _rollups(loom_client, acme)[:2] == (2, "3.75")
    assert _rollups(loom_client, acme)[5] == "calm"  # the computed field reading the roll-up followed
    # a change of a field no roll-up reads recomputes nothing: the customer keeps its version
    version = _get(loom_client, "customer", acme)["version"]
    _patch(loom_client, "service_ticket", t3["id"], {"note": "called back"})
    assert _get(loom_client, "customer", acme)["version"] == version
    _patch(loom_client, "service_ticket", t3["id"], {"subject": "c-mouse!"})  # max(subject) reads it
    assert _get(loom_client, "customer", acme)["version"] == version + 1
    # moving a ticket changes both customers
    _patch(loom_client, "service_ticket", t1["id"], {"customer": bolt})
    assert _rollups(loom_client, acme) == (1, "2.25", "2.25", "2030-01-15", "c-mouse!", "calm")
    assert _rollups(loom_client, bolt) == (1, "1.50", "1.50", "2030-03-02", "b-printer", "calm")
    # unlinking and deleting
    _patch(loom_client, "service_ticket", t1["id"], {"customer": None})
    assert _rollups(loom_client, bolt) == (0, "0.00", None, None, None, "calm")
    assert loom_client.delete(f"/api/v1/service_ticket/{t3['id']}").status_code in (200, 204)
    assert _rollups(loom_client, acme) == (1, "2.25", "2.25", "2030-01-15", "a-screen", "calm")


def test_bulk_create_recomputes_every_parent_once(crm, loom_client, loom_app):
    acme = _created(loom_client, "customer", {"name": "Acme"})["id"]
    bolt = _created(loom_client, "customer", {"name": "Bolt"})["id"]
    reply = loom_client.post("/api/v1/service_ticket/_bulk", json=[
        {"subject": f"t{i}", "customer": acme if i % 3 else bolt, "hours": "1.00",
         "status": "closed" if i == 1 else "open"} for i in range(9)])
    if reply.status_code == 404:  # no bulk endpoint: through the service
        from loom.principal import Principal
        from loom.records.door import record_service
        with loom_app.app_context():
            record_service("service_ticket", Principal.system("test")).bulk_create([
                {"subject": f"t{i}", "customer": acme if i % 3 else bolt, "hours": "1.00",
                 "status": "closed" if i == 1 else "open"} for i in range(9)])
    else:
        assert reply.status_code in (200, 201), reply.get_json()
    assert _rollups(loom_client, acme)[:2] == (5, "6.00")
    assert _rollups(loom_client, bolt)[:2] == (3, "3.00")
    # one derived change per customer, not one per ticket
    assert _get(loom_client, "customer", acme)["version"] == 2
    assert _get(loom_client, "customer", bolt)["version"] == 2


def test_a_cascade_goes_two_levels_up(crm, loom_client):
    north = _created(loom_client, "region", {"name": "North"})["id"]
    south = _created(loom_client, "region", {"name": "South"})["id"]
    acme = _created(loom_client, "customer", {"name": "Acme", "region": north})["id"]
    bolt = _created(loom_client, "customer", {"name": "Bolt", "region": north})["id"]
    for customer in (acme, acme, bolt):
        _created(loom_client, "service_ticket", {"subject": "s", "customer": customer})
    assert _get(loom_client, "region", north)["open_tickets"] == 3
    _patch(loom_client, "customer", bolt, {"region": south})  # the customer moves: both regions follow
    assert (_get(loom_client, "region", north)["open_tickets"], _get(loom_client, "region", south)["open_tickets"]) \
        == (2, 1)
    ticket = _created(loom_client, "service_ticket", {"subject": "s", "customer": bolt})
    assert _get(loom_client, "region", south)["open_tickets"] == 2
    _patch(loom_client, "service_ticket", ticket["id"], {"status": "closed"})
    assert _get(loom_client, "region", south)["open_tickets"] == 1


def test_lists_filter_and_sort_by_a_rollup(crm, loom_client):
    ids = {}
    for name, count in (("A", 2), ("B", 0), ("C", 1)):
        ids[name] = _created(loom_client, "customer", {"name": name})["id"]
        for _ in range(count):
            _created(loom_client, "service_ticket", {"subject": "s", "customer": ids[name]})
    reply = loom_client.get("/api/v1/customer?sort=-open_tickets")
    assert [c["name"] for c in reply.get_json()["data"]] == ["A", "C", "B"]
    reply = loom_client.get("/api/v1/customer?filter[open_tickets][gte]=1&sort=name")
    assert [c["name"] for c in reply.get_json()["data"]] == ["A", "C"]


# -- depends_on_links -------------------------------------------------------------------------------

def test_depends_on_links_recomputes_the_records_reading_a_changed_record(crm, loom_client):
    north = _created(loom_client, "region", {"name": "North"})["id"]
    acme = _created(loom_client, "customer", {"name": "Acme", "credit_limit": "100.00", "region": north})["id"]
    other = _created(loom_client, "customer", {"name": "Other", "credit_limit": "5.00"})["id"]
    tickets = [_created(loom_client, "service_ticket", {"subject": f"t{i}", "customer": acme, "hours": str(i)})
               for i in range(3)]
    lone = _created(loom_client, "service_ticket", {"subject": "lone", "customer": other})
    assert [t["credit_left"] for t in tickets] == ["100.00", "99.00", "98.00"]
    assert tickets[0]["region_name"] == "North"
    _patch(loom_client, "customer", acme, {"credit_limit": "250.00"})
    after = [_get(loom_client, "service_ticket", t["id"]) for t in tickets]
    assert [t["credit_left"] for t in after] == ["250.00", "249.00", "248.00"]
    assert [t["version"] for t in after] == [2, 2, 2]
    assert _get(loom_client, "service_ticket", lone["id"])["version"] == 1  # reads another customer
    # two links away: the region's name
    _patch(loom_client, "region", north, {"name": "Nord"})
    assert {_get(loom_client, "service_ticket", t["id"])["region_name"] for t in tickets} == {"Nord"}
    # a customer field the tickets do not read changes no ticket
    _patch(loom_client, "customer", acme, {"name": "Acme Ltd"})
    assert _get(loom_client, "service_ticket", tickets[0]["id"])["version"] == 3


# -- a derived change is a change ---------------------------------------------------------------------

def test_a_derived_change_bumps_the_version_and_is_audited_and_published(crm, loom_client, loom_app):
    acme = _created(loom_client, "customer", {"name": "Acme"})
    etag = loom_client.get(f"/api/v1/customer/{acme['id']}").headers.get("ETag")
    ticket = _created(loom_client, "service_ticket", {"subject": "s", "customer": acme["id"], "hours": "2.00"})
    after = loom_client.get(f"/api/v1/customer/{acme['id']}")
    assert after.get_json()["data"]["version"] == 2
    assert after.headers.get("ETag") != etag
    assert after.get_json()["data"]["updated_at"] >= acme["updated_at"]
    engine = loom_app.extensions["loom"].engine
    with engine.connect() as conn:
        entry = conn.execute(sa.select(audit_log).where(audit_log.c.entity == "customer",
                                                        audit_log.c.action == "record.update")).mappings().one()
        event = conn.execute(sa.select(outbox).where(outbox.c.entity == "customer",
                                                     outbox.c.topic == "record.updated")).mappings().one()
    assert entry["record_id"] == acme["id"] and entry["actor"] == "admin"
    assert json.loads(entry["detail"]) == {"recomputed_because": {"entity": "service_ticket", "ids": [ticket["id"]]}}
    assert json.loads(entry["changes"])["open_tickets"] == [0, 1]
    assert json.loads(entry["changes"])["hours"] == ["0.00", "2.00"]
    payload = event["payload"] if isinstance(event["payload"], dict) else json.loads(event["payload"])
    assert payload["recomputed_because"] == {"entity": "service_ticket", "ids": [ticket["id"]]}
    assert payload["changes"]["open_tickets"] == [0, 1]
    history = loom_client.get(f"/api/v1/customer/{acme['id']}/_history").get_json()["data"]
    assert history[-1]["action"] == "record.update" and history[-1]["changes"]["open_tickets"] == [0, 1]


def test_a_user_who_cannot_read_the_parent_keeps_its_rollup_right(crm, apply_metadata, make_user, client_for,
                                                                   loom_client):
    apply_metadata(REGION, CUSTOMER, TICKET, ORDER, LINE, {
        "kind": "role", "name": "agent", "permissions": {
            "service_ticket": {"actions": ["read", "create", "update"],
                               "fields": {"credit_left": "none", "region_name": "none"}},
            # the customer may be linked to, but its roll-ups and credit are not the agent's to see
            "customer": {"actions": ["read"], "fields": {"open_tickets": "none", "hours": "none",
                                                          "avg_hours": "none", "credit_limit": "none",
                                                          "last_subject": "none", "load": "none"}}}})
    make_user("agent", roles=["agent"])
    agent = client_for("agent")
    north = _created(loom_client, "region", {"name": "North"})["id"]
    acme = _created(loom_client, "customer", {"name": "Acme", "region": north, "credit_limit": "9.00"})["id"]
    reply = agent.post("/api/v1/service_ticket", json={"subject": "secret-less", "customer": acme,
                                                       "hours": "4.00"})
    assert reply.status_code == 201, reply.get_json()
    text = json.dumps(reply.get_json())
    for leaked in ("open_tickets", "avg_hours", "North", "region", "9.00", "5.00"):
        assert leaked not in text
    # the agent reads no region at all, yet the region's roll-up two levels up is right too
    assert agent.get(f"/api/v1/region/{north}").status_code in (403, 404)
    assert _get(loom_client, "customer", acme)["open_tickets"] == 1
    assert _get(loom_client, "customer", acme)["hours"] == "4.00"
    assert _get(loom_client, "region", north)["open_tickets"] == 1
    seen = agent.get(f"/api/v1/customer/{acme}").get_json()["data"]
    assert "open_tickets" not in seen and "hours" not in seen
    # the derived change is the agent's: recorded as made by them
    engine = crm.extensions["loom"].engine
    with engine.connect() as conn:
        actors = set(conn.execute(sa.select(audit_log.c.actor).where(
            audit_log.c.entity.in_(["customer", "region"]), audit_log.c.action == "record.update")).scalars())
    assert actors == {"agent"}


def test_a_user_who_cannot_read_the_parent_at_all_still_moves_its_rollup(crm, apply_metadata, make_user,
                                                                          client_for, loom_client):
    apply_metadata(REGION, CUSTOMER, TICKET, ORDER, LINE, {
        "kind": "role", "name": "closer", "permissions": {
            "service_ticket": {"actions": ["read", "update"], "fields": {"credit_left": "none", "region_name": "none"}}}})
    make_user("closer", roles=["closer"])
    closer = client_for("closer")
    acme = _created(loom_client, "customer", {"name": "Acme Secret", "credit_limit": "77.00"})["id"]
    ticket = _created(loom_client, "service_ticket", {"subject": "s", "customer": acme, "hours": "3.00"})["id"]
    assert closer.get(f"/api/v1/customer/{acme}").status_code in (403, 404)
    reply = closer.patch(f"/api/v1/service_ticket/{ticket}", json={"status": "closed", "hours": "5.00"})
    assert reply.status_code == 200, reply.get_json()
    text = json.dumps(reply.get_json())
    for leaked in ("Acme Secret", "77.00", "open_tickets"):
        assert leaked not in text
    assert _rollups(loom_client, acme)[:2] == (0, "5.00")


def test_a_rollup_too_large_for_its_field_refuses_the_write(apply_metadata, make_entity, loom_client):
    apply_metadata(
        make_entity("box", [{"name": "name", "type": "string"},
                            {"name": "weight", "type": "decimal", "precision": 4, "scale": 0,
                             "rollup": {"from": "item.box", "sum": "weight"}}]),
        make_entity("item", [{"name": "box", "type": "link", "target": "box"},
                             {"name": "weight", "type": "decimal", "precision": 10, "scale": 0}]))
    box = _created(loom_client, "box", {"name": "b"})["id"]
    _created(loom_client, "item", {"box": box, "weight": "9000"})
    reply = loom_client.post("/api/v1/item", json={"box": box, "weight": "2000"})
    assert reply.status_code == 422
    assert reply.get_json()["errors"][0]["code"] == "derived_unstorable"
    assert _get(loom_client, "box", box)["weight"] == "9000"
    assert len(loom_client.get("/api/v1/item").get_json()["data"]) == 1  # the write did not happen


def test_values_agree_with_sql_after_many_writes(crm, loom_client, loom_app):
    """Whatever the path, the stored roll-ups equal what a query over the tickets gives."""
    customers = [_created(loom_client, "customer", {"name": f"c{i}"})["id"] for i in range(3)]
    tickets = []
    for i in range(12):
        tickets.append(_created(loom_client, "service_ticket", {
            "subject": f"s{i}", "customer": customers[i % 3], "hours": f"{i}.25",
            "status": "closed" if i % 4 == 0 else "open"})["id"])
    for i, ticket in enumerate(tickets[:6]):
        _patch(loom_client, "service_ticket", ticket, {"customer": customers[(i + 1) % 3]})
    engine = loom_app.extensions["loom"].engine
    with engine.connect() as conn:
        expected = {row[0]: (row[1], Decimal(str(row[2]))) for row in conn.execute(sa.text(
            "SELECT customer, SUM(CASE WHEN status != 'closed' THEN 1 ELSE 0 END), SUM(hours) "
            "FROM e_service_ticket GROUP BY customer"))}
    for customer in customers:
        open_tickets, hours = _rollups(loom_client, customer)[:2]
        assert (open_tickets, Decimal(hours)) == expected[customer]


# -- random sequences of writes -------------------------------------------------------------------

MONEY = st.one_of(st.none(), st.decimals(min_value=0, max_value=500, places=2, allow_nan=False,
                                         allow_infinity=False))
FLAG = st.one_of(st.none(), st.booleans())


def _cents(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.01"), ROUND_HALF_UP))


def _expected(items: list[tuple[Decimal | None, bool | None]]) -> dict:
    amounts = [a for a, _flag in items if a is not None]
    return {"flagged": sum(1 for _a, flag in items if flag is True), "total": _cents(sum(amounts, Decimal(0))),
            "top": _cents(max(amounts)) if amounts else None, "low": _cents(min(amounts)) if amounts else None,
            "mean": _cents(sum(amounts) / len(amounts)) if amounts else None}


@pytest.fixture
def piles(apply_metadata, make_entity, loom_app):
    aggregates = [{"name": "flagged", "type": "integer", "where": "flag"}, {"name": "total", "sum": "amount"},
                  {"name": "top", "max": "amount"}, {"name": "low", "min": "amount"}, {"name": "mean", "avg": "amount"}]

    def rollups(source):
        fields = []
        for spec in aggregates:
            spec = dict(spec)
            name, kind = spec.pop("name"), spec.pop("type", "money")
            if "where" in spec:
                spec["count"] = True
            fields.append({"name": name, "type": kind, "rollup": {"from": source, **spec}})
        return fields

    apply_metadata(
        make_entity("pile", [{"name": "label", "type": "string"}, *rollups("chip.pile")]),
        make_entity("chip", [{"name": "pile", "type": "link", "target": "pile"},
                             {"name": "amount", "type": "money"}, {"name": "flag", "type": "boolean"}]),
        make_entity("basket", [{"name": "label", "type": "string"}, *rollups("rows"),
                               {"name": "rows", "type": "table", "target": "basket_row"}]),
        make_entity("basket_row", [{"name": "amount", "type": "money"}, {"name": "flag", "type": "boolean"},
                                   {"name": "tag", "type": "link", "target": "tag"}], child=True),
        # rows of every basket, rolled up by the tag they link to
        make_entity("tag", [{"name": "label", "type": "string"}, *rollups("basket_row.tag")]),
    )
    return loom_app


def test_random_writes_keep_every_rollup_equal_to_its_records(piles, loom_client):
    client = loom_client

    class Writes(RuleBasedStateMachine):
        """Chips created, changed, moved between piles, deleted, bulk created; basket rows
        replaced, retagged and moved from one basket to another: every roll-up follows,
        the tags' over the rows of every basket too."""

        def __init__(self):
            super().__init__()
            self.piles = [_created(client, "pile", {"label": f"p{i}"})["id"] for i in range(3)]
            self.baskets = [_created(client, "basket", {"label": f"b{i}"})["id"] for i in range(2)]
            self.chips: dict[int, dict] = {}
            self.rows: dict[int, list[dict]] = {b: [] for b in self.baskets}
            self.tags = [_created(client, "tag", {"label": f"t{i}"})["id"] for i in range(2)]

        def _chip_body(self, pile, amount, flag):
            return {"pile": None if pile is None else self.piles[pile],
                    "amount": None if amount is None else str(amount), "flag": flag}

        @rule(pile=st.none() | st.integers(0, 2), amount=MONEY, flag=FLAG)
        def create_chip(self, pile, amount, flag):
            chip = _created(client, "chip", self._chip_body(pile, amount, flag))
            self.chips[chip["id"]] = {"pile": chip["pile"] and chip["pile"]["id"], "amount": amount, "flag": flag}

        @rule(data=st.data(), amount=MONEY, flag=FLAG)
        def change_chip(self, data, amount, flag):
            assume(self.chips)
            chip = data.draw(st.sampled_from(sorted(self.chips)))
            _patch(client, "chip", chip, {"amount": None if amount is None else str(amount), "flag": flag})
            self.chips[chip].update(amount=amount, flag=flag)

        @rule(data=st.data(), pile=st.none() | st.integers(0, 2))
        def move_chip(self, data, pile):
            assume(self.chips)
            chip = data.draw(st.sampled_from(sorted(self.chips)))
            target = None if pile is None else self.piles[pile]
            _patch(client, "chip", chip, {"pile": target})
            self.chips[chip]["pile"] = target

        @rule(data=st.data())
        def delete_chip(self, data):
            assume(self.chips)
            chip = data.draw(st.sampled_from(sorted(self.chips)))
            assert client.delete(f"/api/v1/chip/{chip}").status_code in (200, 204)
            del self.chips[chip]

        @rule(chips=st.lists(st.tuples(st.integers(0, 2), MONEY, FLAG), min_size=1, max_size=4))
        def bulk_create_chips(self, chips):
            from loom.principal import Principal
            from loom.records.door import record_service
            with piles.app_context():
                ids = record_service("chip", Principal.system("test")).bulk_create(
                    [self._chip_body(*chip) for chip in chips])
            for chip_id, (pile, amount, flag) in zip(ids, chips, strict=True):
                self.chips[chip_id] = {"pile": self.piles[pile], "amount": amount, "flag": flag}

        def _kept(self, stored):
            return [{"id": r["id"], "amount": r["amount"], "flag": r["flag"], "tag": r["tag"] and r["tag"]["id"]}
                    for r in stored["rows"]]

        @rule(basket=st.integers(0, 1), rows=st.lists(st.tuples(MONEY, FLAG, st.none() | st.integers(0, 1)),
                                                         max_size=4), keep=st.booleans(), retag=st.booleans())
        def write_rows(self, basket, rows, keep, retag):
            basket_id = self.baskets[basket]
            kept = [{**r, "tag": self.tags[0] if retag else r["tag"]} for r in self.rows[basket_id]] if keep else []
            new = [{"amount": None if a is None else str(a), "flag": f, "tag": None if t is None else self.tags[t]}
                   for a, f, t in rows]
            self.rows[basket_id] = self._kept(_patch(client, "basket", basket_id, {"rows": kept + new}))

        @rule(data=st.data())
        def move_row(self, data):
            source, target = data.draw(st.permutations(self.baskets))
            assume(self.rows[source])
            moved = data.draw(st.sampled_from(self.rows[source]))
            rest = [r for r in self.rows[source] if r["id"] != moved["id"]]
            _patch(client, "basket", source, {"rows": rest})
            self.rows[source] = rest
            stored = _patch(client, "basket", target, {"rows": [*self.rows[target], {
                "amount": moved["amount"], "flag": moved["flag"], "tag": moved["tag"]}]})
            self.rows[target] = self._kept(stored)

        @invariant()
        def rollups_equal_the_model(self):
            for pile in self.piles:
                items = [(c["amount"], c["flag"]) for c in self.chips.values() if c["pile"] == pile]
                record = _get(client, "pile", pile)
                assert {k: record[k] for k in ("flagged", "total", "top", "low", "mean")} == _expected(items)
            for basket in self.baskets:
                items = [(None if r["amount"] is None else Decimal(r["amount"]), r["flag"]) for r in self.rows[basket]]
                record = _get(client, "basket", basket)
                assert {k: record[k] for k in ("flagged", "total", "top", "low", "mean")} == _expected(items)
            every_row = [r for rows in self.rows.values() for r in rows]
            for tag in self.tags:
                items = [(None if r["amount"] is None else Decimal(r["amount"]), r["flag"]) for r in every_row
                         if r["tag"] == tag]
                record = _get(client, "tag", tag)
                assert {k: record[k] for k in ("flagged", "total", "top", "low", "mean")} == _expected(items)

    run_state_machine_as_test(Writes, settings=settings(
        max_examples=15, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))


def test_concurrent_writers_adding_to_one_parent_both_count(crm, loom_client):
    """Two writers adding tickets to one customer at the same time: each locks the customer
    before reading its aggregate, so neither overwrites the other's count."""
    import threading

    from loom.principal import Principal
    from loom.records.door import record_service

    acme = _created(loom_client, "customer", {"name": "Acme"})["id"]
    failures = []

    def add(n: int) -> None:
        try:
            with crm.app_context():
                service = record_service("service_ticket", Principal.system(f"writer{n}"))
                for i in range(8):
                    service.create({"subject": f"w{n}-{i}", "customer": acme, "hours": "1.00"})
        except Exception as exc:  # reported below, with the thread's error
            failures.append(exc)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _rollups(loom_client, acme)[:2] == (24, "24.00")
    assert _get(loom_client, "customer", acme)["version"] == 25


def test_a_rollup_added_to_records_that_exist_is_filled_at_publish(apply_metadata, loom_client):
    plain_customer = {**CUSTOMER, "fields": [f for f in CUSTOMER["fields"] if "rollup" not in f and "compute" not in f]}
    plain_region = {**REGION, "fields": [f for f in REGION["fields"] if "rollup" not in f]}
    plain_order = {**ORDER, "fields": [f for f in ORDER["fields"] if "rollup" not in f and "compute" not in f]}
    apply_metadata(plain_region, plain_customer, TICKET, plain_order, LINE)
    north = _created(loom_client, "region", {"name": "North"})["id"]
    acme = _created(loom_client, "customer", {"name": "Acme", "region": north, "credit_limit": "10.00"})["id"]
    idle = _created(loom_client, "customer", {"name": "Idle"})["id"]
    for i, status in enumerate(("open", "open", "open", "closed")):
        _created(loom_client, "service_ticket", {"subject": f"s{i}", "customer": acme, "hours": f"{i}.50",
                                                 "status": status, "opened": f"2030-01-0{i + 1}"})
    order = _created(loom_client, "sales_order", {"code": "SO", "discount": "10", "lines": [
        {"quantity": 2, "unit_price": "30.00"}, {"quantity": 5, "unit_price": "40.00"}]})["id"]
    version = _get(loom_client, "customer", acme)["version"]
    plan = apply_metadata(REGION, CUSTOMER, TICKET, ORDER, LINE)
    assert "  fills customer.open_tickets for every stored record" in plan.summary
    assert _rollups(loom_client, acme) == (3, "8.00", "2.00", "2030-01-01", "s3", "busy")
    assert _rollups(loom_client, idle) == (0, "0.00", None, None, None, "calm")
    assert _get(loom_client, "region", north)["open_tickets"] == 3  # filled after what it sums
    stored = _get(loom_client, "sales_order", order)
    assert (stored["lines_total"], stored["big_lines"], stored["cheapest"], stored["total"]) == \
        ("260.00", 1, "30.00", "234.00")
    assert _get(loom_client, "customer", acme)["version"] == version  # a publish, not a change of the record
    # another where: filled again; writes go on from there
    changed = {**CUSTOMER, "fields": [
        {**f, "rollup": {**f["rollup"], "where": "status = 'closed'"}} if f["name"] == "open_tickets" else f
        for f in CUSTOMER["fields"]]}
    apply_metadata(REGION, changed, TICKET, ORDER, LINE)
    assert _rollups(loom_client, acme)[0] == 1
    assert _get(loom_client, "region", north)["open_tickets"] == 1
    _created(loom_client, "service_ticket", {"subject": "x", "customer": acme, "status": "closed"})
    assert _rollups(loom_client, acme)[0] == 2


@pytest.fixture
def stock(apply_metadata, make_entity, loom_app):
    apply_metadata(
        make_entity("product", [
            {"name": "name", "type": "string"},
            {"name": "sold", "type": "integer", "rollup": {"from": "line.product", "sum": "quantity"}},
            {"name": "big_orders", "type": "integer",
             "rollup": {"from": "line.product", "count": True, "where": "amount >= 100"}}], title_field="name"),
        make_entity("order", [{"name": "code", "type": "string"},
                              {"name": "lines", "type": "table", "target": "line"}]),
        make_entity("line", [{"name": "product", "type": "link", "target": "product"},
                             {"name": "quantity", "type": "integer"}, {"name": "price", "type": "money"},
                             {"name": "amount", "type": "money", "compute": "quantity * price"}], child=True))
    return loom_app


def test_child_rows_rolled_up_by_the_record_they_link_to(stock, loom_client):
    lamp, desk = (_created(loom_client, "product", {"name": n})["id"] for n in ("lamp", "desk"))

    def sold():
        return [(_get(loom_client, "product", p)["sold"], _get(loom_client, "product", p)["big_orders"])
                for p in (lamp, desk)]

    order = _created(loom_client, "order", {"code": "A", "lines": [
        {"product": lamp, "quantity": 2, "price": "10.00"}, {"product": lamp, "quantity": 10, "price": "10.00"},
        {"product": desk, "quantity": 1, "price": "300.00"}]})
    assert sold() == [(12, 1), (1, 1)]
    lines = order["lines"]
    # a row moved to another product, one removed, one added: both products follow
    _patch(loom_client, "order", order["id"], {"lines": [
        {"id": lines[0]["id"], "product": desk, "quantity": 2, "price": "10.00"},
        {"id": lines[2]["id"], "product": desk, "quantity": 1, "price": "300.00"},
        {"product": lamp, "quantity": 4, "price": "1.00"}]})
    assert sold() == [(4, 0), (3, 1)]
    # a write of the order that leaves its rows alone recomputes nothing
    version = _get(loom_client, "product", lamp)["version"]
    _patch(loom_client, "order", order["id"], {"code": "A2"})
    assert _get(loom_client, "product", lamp)["version"] == version
    second = _created(loom_client, "order", {"code": "B", "lines": [{"product": lamp, "quantity": 1, "price": "1"}]})
    assert sold() == [(5, 0), (3, 1)]
    assert loom_client.delete(f"/api/v1/order/{order['id']}").status_code in (200, 204)
    assert sold() == [(1, 0), (0, 0)]
    engine = stock.extensions["loom"].engine
    with engine.connect() as conn:
        detail = conn.execute(sa.select(audit_log.c.detail).where(
            audit_log.c.entity == "product", audit_log.c.record_id == desk).order_by(audit_log.c.seq.desc())
        ).scalars().first()
    assert json.loads(detail) == {"recomputed_because": {"entity": "order", "ids": [order["id"]]}}
    assert second["lines"][0]["amount"] == "1.00"
    from loom.principal import Principal
    from loom.records.door import record_service
    with stock.app_context():
        record_service("order", Principal.system("test")).bulk_create([
            {"code": f"C{i}", "lines": [{"product": desk, "quantity": i, "price": "50.00"}]} for i in (1, 2, 3)])
    assert sold() == [(1, 0), (6, 2)]  # amounts 50, 100, 150
