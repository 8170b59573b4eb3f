"""From record changes to deliveries: each rule whose event, changed fields and condition
hold writes one delivery in the change's transaction, on every write path; a refused or
rolled-back change writes none; a rule's own writes stop at its depth, audited."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loom import record_service
from loom.audit.models import audit_log
from loom.errors import LoomError
from loom.integrations.context import running_delivery
from loom.integrations.models import deliveries
from loom.principal import Principal

SYSTEM = Principal.system("test")

ACCOUNT = {"kind": "entity", "name": "account", "title_field": "name", "fields": [
    {"name": "name", "type": "string", "required": True},
    {"name": "limit", "type": "money"},
]}
DEAL = {"kind": "entity", "name": "deal", "title_field": "title", "fields": [
    {"name": "title", "type": "string", "required": True},
    {"name": "stage", "type": "select", "options": [{"value": "open"}, {"value": "won"}, {"value": "lost"}],
     "default": "open"},
    {"name": "amount", "type": "integer"},
    {"name": "account", "type": "link", "target": "account"},
    {"name": "api_key", "type": "string", "secret": True},
]}


def rule_doc(name: str, on: dict, **extra) -> dict:
    return {"kind": "rule", "name": name, "on": on, "action": "record.update", "run_as": "bot",
            "with": {"entity": "deal", "id": "{{ record.id }}"}, **extra}


RULES = [
    rule_doc("big_deal", {"entity": "deal", "event": "created", "when": "amount > 100"}),
    rule_doc("deal_won", {"entity": "deal", "event": "updated", "changed": ["stage"], "when": "stage == 'won'"}),
    rule_doc("over_limit", {"entity": "deal", "event": "updated", "when": "amount > account.limit"}),
    rule_doc("deal_gone", {"entity": "deal", "event": "deleted"}),
]


@pytest.fixture
def world(loom_app, make_user, apply_metadata):
    make_user("bot", roles=())
    apply_metadata(ACCOUNT, DEAL, *RULES)
    return loom_app


def rows(app, **where):
    engine = app.extensions["loom"].engine
    query = sa.select(deliveries).order_by(deliveries.c.id)
    for name, value in where.items():
        query = query.where(deliveries.c[name] == value)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def test_each_rule_writes_one_delivery_for_the_changes_it_declares(world):
    with world.app_context():
        accounts = record_service("account", SYSTEM)
        deals = record_service("deal", SYSTEM)
        acme = accounts.create({"name": "Acme", "limit": "500.00"})
        small = deals.create({"title": "small", "amount": 50, "account": acme["id"]})
        big = deals.create({"title": "big", "amount": 700, "account": acme["id"], "api_key": "s3cret"})
        assert [(r["rule"], r["record_id"]) for r in rows(world)] == [("big_deal", big["id"])]
        delivery = rows(world)[0]
        assert delivery["status"] == "pending" and delivery["run_as"] == "bot" and delivery["depth"] == 0
        assert delivery["trigger"] == "record.created" and delivery["action"] == "record.update"
        assert delivery["plugin"] == "loom"
        assert delivery["context"]["with"] == {"entity": "deal", "id": "{{ record.id }}"}
        # the record as the change left it, its secret masked (deliveries leave Loom)
        assert delivery["context"]["record"]["title"] == "big"
        assert "s3cret" not in str(delivery["context"])
        # a change of another field: deal_won does not fire; over_limit reads the account
        deals.update(small["id"], {"title": "small one"})
        assert [r["rule"] for r in rows(world)] == ["big_deal"]
        deals.update(small["id"], {"amount": 900})
        assert [r["rule"] for r in rows(world, record_id=small["id"])] == ["over_limit"]
        updated = rows(world, rule="over_limit")[0]
        assert updated["context"]["changes"] == {"amount": [50, 900]}
        # stage changed to won: deal_won (and over_limit, still over)
        deals.update(small["id"], {"stage": "won"})
        assert sorted(r["rule"] for r in rows(world, record_id=small["id"])) == ["deal_won", "over_limit", "over_limit"]
        # the account's limit raised: the next change is no longer over it
        accounts.update(acme["id"], {"limit": "5000.00"})
        deals.update(small["id"], {"title": "fine"})
        assert len(rows(world, rule="over_limit")) == 2
        deals.delete(big["id"])
        gone = rows(world, rule="deal_gone")
        assert [(r["record_id"], r["trigger"]) for r in gone] == [(big["id"], "record.deleted")]
        keys = [r["idempotency_key"] for r in rows(world)]
        assert len(keys) == len(set(keys))


def test_a_refused_or_rolled_back_change_writes_no_delivery(world):
    with world.app_context():
        deals = record_service("deal", SYSTEM)
        with pytest.raises(LoomError):
            deals.bulk_create([{"title": "fine", "amount": 500}, {"amount": 900}])  # the second has no title
        assert rows(world) == []
        engine = world.extensions["loom"].engine
        with pytest.raises(RuntimeError), engine.begin() as conn:
            record_service("deal", SYSTEM, conn).create({"title": "joined", "amount": 800})
            raise RuntimeError("the caller's transaction fails after the write")
        assert rows(world) == []
        deals.bulk_create([{"title": "a", "amount": 101}, {"title": "b", "amount": 1}, {"title": "c", "amount": 102}])
        assert [r["context"]["record"]["title"] for r in rows(world)] == ["a", "c"]


def test_a_rules_own_writes_stop_at_its_depth_and_the_stop_is_audited(world):
    with world.app_context():
        deals = record_service("deal", SYSTEM)
        with running_delivery(1, "deal_won", depth=2, chain=("big_deal",)):
            deals.create({"title": "depth 3", "amount": 500})
        assert [(r["rule"], r["depth"], r["context"]["chain"]) for r in rows(world)] == \
            [("big_deal", 3, ["big_deal", "deal_won"])]
        with running_delivery(2, "deal_won", depth=3, chain=("big_deal", "deal_won")):
            deals.create({"title": "depth 4", "amount": 500})
        assert len(rows(world)) == 1
        engine = world.extensions["loom"].engine
        with engine.connect() as conn:
            stops = conn.execute(sa.select(audit_log.c.detail, audit_log.c.outcome)
                                 .where(audit_log.c.action == "rule.loop_stopped")).all()
        found = [(json.loads(s.detail) if isinstance(s.detail, str) else s.detail, s.outcome) for s in stops]
        assert [(d["rule"], d["depth"], outcome) for d, outcome in found] == [("big_deal", 4, "denied")]


class Changes(RuleBasedStateMachine):
    """Random creates, updates and deletes: the deliveries are exactly what the rules say."""

    app = None

    def __init__(self):
        super().__init__()
        self.expected: list[tuple[str, int, int]] = []
        self.records: dict[int, dict] = {}
        self.context = self.app.app_context()
        self.context.push()
        engine = self.app.extensions["loom"].engine
        with engine.begin() as conn:
            conn.execute(deliveries.delete())
        self.deals = record_service("deal", SYSTEM)
        self.account = record_service("account", SYSTEM).create({"name": "A", "limit": "300.00"})

    def teardown(self):
        self.context.pop()

    @initialize()
    def start(self):
        pass

    @rule(amount=st.integers(0, 600), stage=st.sampled_from(["open", "won", "lost"]))
    def create(self, amount, stage):
        record = self.deals.create({"title": "t", "amount": amount, "stage": stage, "account": self.account["id"]})
        self.records[record["id"]] = {"amount": amount, "stage": stage, "version": record["version"]}
        if amount > 100:
            self.expected.append(("big_deal", record["id"], record["version"]))

    @precondition(lambda self: self.records)
    @rule(data=st.data(), amount=st.none() | st.integers(0, 600), stage=st.none() | st.sampled_from(["open", "won", "lost"]))
    def update(self, data, amount, stage):
        record_id = data.draw(st.sampled_from(sorted(self.records)))
        old = self.records[record_id]
        change = {k: v for k, v in {"amount": amount, "stage": stage}.items() if v is not None and v != old[k]}
        if not change:
            return
        updated = self.deals.update(record_id, change)
        new = {**old, **change, "version": updated["version"]}
        self.records[record_id] = new
        if "stage" in change and new["stage"] == "won":
            self.expected.append(("deal_won", record_id, new["version"]))
        if new["amount"] > 300:
            self.expected.append(("over_limit", record_id, new["version"]))

    @precondition(lambda self: self.records)
    @rule(data=st.data())
    def delete(self, data):
        record_id = data.draw(st.sampled_from(sorted(self.records)))
        version = self.records.pop(record_id)["version"]
        self.deals.delete(record_id)
        self.expected.append(("deal_gone", record_id, version))

    @invariant()
    def deliveries_are_what_the_rules_declare(self):
        found = [(r["rule"], r["record_id"], int(r["idempotency_key"].rsplit(":", 1)[1])) for r in rows(self.app)]
        assert sorted(found) == sorted(self.expected)


def test_random_changes_make_exactly_the_declared_deliveries(world):
    Changes.app = world
    case = Changes.TestCase
    case.settings = settings(max_examples=15, stateful_step_count=12, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    case().runTest()
