"""The deliveries API: filters and pages, one delivery with its attempts, retry and replay,
every refusal; and nobody but a superuser sees or changes anything through it."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import sqlalchemy as sa

from loom.integrations.models import attempts, deliveries

T0 = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)
_keys = itertools.count(1)


def add_delivery(engine, **values) -> int:
    """A delivery row as the trigger side writes one (defaults: a pending http.request)."""
    n = next(_keys)
    row = {"created_at": T0, "rule": "push_orders", "trigger": "record.updated", "action": "http.request",
           "plugin": "loom", "entity": "order", "record_id": 7, "run_as": "bot", "depth": 0,
           "context": {"record": {"id": 7, "name": "Order 7"}, "with": {"order": "{{ record.id }}"}},
           "idempotency_key": f"push_orders:order:7:{n}", "status": "pending", "attempts": 0, "max_attempts": 8,
           "backoff": "exponential", "backoff_seconds": 30, "available_at": T0, **values}
    with engine.begin() as conn:
        return conn.execute(deliveries.insert().values(**row)).inserted_primary_key[0]


def add_attempt(engine, delivery_id: int, attempt: int, outcome: str, error: str | None = None) -> None:
    started = T0 + dt.timedelta(minutes=attempt)
    with engine.begin() as conn:
        conn.execute(attempts.insert().values(delivery_id=delivery_id, attempt=attempt, worker="w1",
                                              started_at=started, finished_at=started + dt.timedelta(seconds=1),
                                              outcome=outcome, error=error, duration_ms=1000.0))


def rows(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(deliveries).order_by(deliveries.c.id)).mappings()]


def audit_entries(engine, action: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.exec_driver_sql(
            "SELECT actor, rows, detail FROM loom_audit WHERE action = ? ORDER BY seq"
            if engine.dialect.name == "sqlite" else
            "SELECT actor, rows, detail FROM loom_audit WHERE action = %s ORDER BY seq", (action,)).mappings()]


@pytest.fixture
def engine(loom_app):
    return loom_app.extensions["loom"].engine


@pytest.fixture
def mixed(engine):
    """One delivery of each kind, oldest first."""
    return {
        "waiting": add_delivery(engine),
        "failed": add_delivery(engine, attempts=2, last_error="HTTP 503", created_at=T0 + dt.timedelta(hours=1)),
        "running": add_delivery(engine, status="running", attempts=1, lease_owner="w1",
                                created_at=T0 + dt.timedelta(hours=2)),
        "dead": add_delivery(engine, status="dead", attempts=8, last_error="HTTP 500 boom", rule="sync_stock",
                             action="erp.push_stock", plugin="loom_erp", entity="product", record_id=3,
                             created_at=T0 + dt.timedelta(hours=3), finished_at=T0 + dt.timedelta(hours=4)),
        "succeeded": add_delivery(engine, status="succeeded", attempts=1, result={"ok": True},
                                  created_at=T0 + dt.timedelta(days=1), finished_at=T0 + dt.timedelta(days=1)),
    }


def ids_of(reply) -> list[int]:
    assert reply.status_code == 200, reply.get_json()
    return [d["id"] for d in reply.get_json()["data"]]


def test_the_list_is_newest_first_and_filters_by_each_parameter(loom_client, mixed):
    m = mixed
    assert ids_of(loom_client.get("/api/v1/_deliveries")) == sorted(m.values(), reverse=True)
    assert ids_of(loom_client.get("/api/v1/_deliveries?status=pending")) == [m["failed"], m["waiting"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?status=failed")) == [m["failed"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?status=dead")) == [m["dead"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?status=running")) == [m["running"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?status=succeeded")) == [m["succeeded"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?rule=sync_stock")) == [m["dead"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?plugin=loom_erp")) == [m["dead"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?action=erp.push_stock")) == [m["dead"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?entity=product&record_id=3")) == [m["dead"]]
    assert ids_of(loom_client.get("/api/v1/_deliveries?entity=order&record_id=3")) == []
    assert ids_of(loom_client.get("/api/v1/_deliveries?since=2026-11-20T09:30:00Z&until=2026-11-21")) == \
        [m["dead"], m["running"]]
    one = loom_client.get("/api/v1/_deliveries?status=dead").get_json()["data"][0]
    assert one["last_error"] == "HTTP 500 boom" and one["attempts"] == 8 and one["max_attempts"] == 8
    assert one["created_at"] == "2026-11-20T11:00:00.000Z"
    assert "context" not in one                         # record data only on the delivery's own page
    failed = loom_client.get("/api/v1/_deliveries?status=failed").get_json()["data"][0]
    assert failed["failed"] is True and failed["status"] == "pending"


def test_pages_follow_the_cursor_to_the_end(loom_client, engine):
    made = [add_delivery(engine) for _ in range(7)]
    seen, cursor = [], None
    while True:
        reply = loom_client.get("/api/v1/_deliveries", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})})
        seen += ids_of(reply)
        cursor = reply.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(made, reverse=True)


@pytest.mark.parametrize("query, parameter", [
    ("status=broken", "status"), ("record_id=abc", "record_id"), ("record_id=99999999999999999999", "record_id"),
    ("since=yesterday", "since"), ("until=2026-13-01", "until"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("cursor=x", "cursor"), ("colour=red", "colour"),
])
def test_a_bad_parameter_is_a_400_naming_it(loom_client, query, parameter):
    reply = loom_client.get(f"/api/v1/_deliveries?{query}")
    assert reply.status_code == 400
    problem = reply.get_json()
    assert reply.content_type == "application/problem+json"
    assert problem["errors"][0]["field"] == parameter and problem["errors"][0]["code"] == "bad_parameter"


def test_one_delivery_shows_its_context_and_attempts_in_order(loom_client, engine, mixed):
    dead = mixed["dead"]
    for n in (2, 1, 3):
        add_attempt(engine, dead, n, "failed" if n < 3 else "dead", error=f"try {n} failed")
    data = loom_client.get(f"/api/v1/_deliveries/{dead}").get_json()["data"]
    assert data["context"]["record"] == {"id": 7, "name": "Order 7"}
    assert [a["attempt"] for a in data["attempts_made"]] == [1, 2, 3]
    assert data["attempts_made"][2] | {"started_at": None} == {
        "attempt": 3, "worker": "w1", "started_at": None, "finished_at": "2026-11-20T08:03:01.000Z",
        "outcome": "dead", "error": "try 3 failed", "duration_ms": 1000.0}
    for missing in (dead + 100, 0, 2**63, 10**30):
        reply = loom_client.get(f"/api/v1/_deliveries/{missing}")
        assert reply.status_code == 404
        if missing != 0:
            assert reply.get_json()["code"] in ("no_such_delivery", "not_found")
    assert loom_client.get(f"/api/v1/_deliveries/{dead + 100}").get_json()["code"] == "no_such_delivery"


def test_retry_puts_dead_and_failed_back_and_skips_the_rest(loom_client, engine, mixed):
    from loom.integrations.context import DELIVERIES_WRITTEN

    m = mixed
    DELIVERIES_WRITTEN.clear()
    reply = loom_client.post("/api/v1/_deliveries/_retry", json={"ids": [m["dead"], m["failed"], m["succeeded"],
                                                                          m["running"], m["waiting"], m["dead"]]})
    assert reply.status_code == 200, reply.get_json()
    body = reply.get_json()
    assert body["retried"] == [m["dead"], m["failed"]]
    assert DELIVERIES_WRITTEN.is_set()                  # the workers of this process look at once
    assert body["skipped"] == [{"id": m["succeeded"], "status": "succeeded"},
                               {"id": m["running"], "status": "running"},
                               {"id": m["waiting"], "status": "pending"}]
    after = {r["id"]: r for r in rows(engine)}
    dead = after[m["dead"]]
    assert dead["status"] == "pending" and dead["attempts"] == 8 and dead["finished_at"] is None
    assert dead["max_attempts"] == 16                   # a fresh round of 8 (the rule is not in the metadata)
    assert after[m["failed"]]["max_attempts"] == 10
    available = after[m["dead"]]["available_at"]
    available = available if available.tzinfo else available.replace(tzinfo=dt.UTC)
    assert abs(available - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert after[m["succeeded"]]["status"] == "succeeded" and after[m["running"]]["status"] == "running"
    entries = audit_entries(engine, "delivery.retry")
    assert len(entries) == 1 and entries[0]["actor"] == "admin" and entries[0]["rows"] == 2
    assert str(m["dead"]) in entries[0]["detail"]


def test_retry_of_an_unknown_id_changes_nothing(loom_client, engine, mixed):
    before = rows(engine)
    reply = loom_client.post("/api/v1/_deliveries/_retry", json={"ids": [mixed["dead"], 99999]})
    assert reply.status_code == 404 and reply.get_json()["code"] == "no_such_delivery"
    assert reply.get_json()["params"] == {"id": 99999}
    assert rows(engine) == before


@pytest.mark.parametrize("body, field", [
    ({}, "ids"), ({"ids": []}, "ids"), ({"ids": "1"}, "ids"), ({"ids": [True]}, "ids"), ({"ids": [1.5]}, "ids"),
    ({"ids": [-1]}, "ids"), ({"ids": [2**63]}, "ids"), ({"ids": list(range(1, 1002))}, "ids"),
    ({"ids": [1], "force": True}, "force"),
])
def test_a_bad_retry_body_is_a_400_naming_the_member(loom_client, engine, mixed, body, field):
    before = rows(engine)
    reply = loom_client.post("/api/v1/_deliveries/_retry", json=body)
    assert reply.status_code == 400 and reply.get_json()["errors"][0]["field"] == field
    assert rows(engine) == before


def test_a_retry_body_that_is_not_an_object_or_not_json_is_refused(loom_client):
    assert loom_client.post("/api/v1/_deliveries/_retry", json=[1, 2]).status_code == 400
    assert loom_client.post("/api/v1/_deliveries/_retry", data="ids=1",
                            content_type="application/x-www-form-urlencoded").status_code == 415


def test_replay_makes_new_deliveries_of_the_finished_ones_with_new_keys(loom_client, engine, mixed):
    m = mixed
    span = {"since": "2026-11-20", "until": "2026-11-22"}
    count = loom_client.post("/api/v1/_deliveries/_replay", json={**span, "dry_run": True})
    assert count.get_json() == {"count": 2, "max": 10000}
    assert len(rows(engine)) == 5                       # counting changes nothing
    reply = loom_client.post("/api/v1/_deliveries/_replay", json=span)
    assert reply.status_code == 200, reply.get_json()
    assert reply.get_json()["replayed"] == 2
    by_id = {r["id"]: r for r in rows(engine)}
    new = [by_id[i] for i in reply.get_json()["ids"]]
    dead, succeeded = by_id[m["dead"]], by_id[m["succeeded"]]
    assert [n["idempotency_key"] for n in new] == [dead["idempotency_key"] + ":replay:1",
                                                  succeeded["idempotency_key"] + ":replay:1"]
    for copy, original in zip(new, (dead, succeeded), strict=True):
        assert copy["status"] == "pending" and copy["attempts"] == 0 and copy["max_attempts"] == 8
        for name in ("rule", "trigger", "action", "plugin", "entity", "record_id", "context", "run_as", "depth"):
            assert copy[name] == original[name], name
    assert dead["status"] == "dead" and succeeded["status"] == "succeeded"   # the originals stay as they were
    # replayed again: the next number; a replay of a replay counts from the original key
    again = loom_client.post("/api/v1/_deliveries/_replay", json={**span, "rule": "sync_stock"}).get_json()
    assert again["replayed"] == 1
    assert rows(engine)[-1]["idempotency_key"] == dead["idempotency_key"] + ":replay:2"
    with engine.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == again["ids"][0]).values(status="dead"))
    third = loom_client.post("/api/v1/_deliveries/_replay",
                             json={"since": "2026-11-25", "until": "2100-01-01", "rule": "sync_stock"}).get_json()
    assert third["replayed"] == 1
    assert rows(engine)[-1]["idempotency_key"] == dead["idempotency_key"] + ":replay:3"
    entries = audit_entries(engine, "delivery.replay")
    assert len(entries) == 3 and [e["rows"] for e in entries] == [2, 1, 1]
    assert "2026-11-20T00:00:00.000Z" in entries[0]["detail"]


def test_replay_filters_narrow_the_range(loom_client, engine, mixed):
    reply = loom_client.post("/api/v1/_deliveries/_replay",
                             json={"since": "2026-11-01", "until": "2026-12-01", "entity": "product", "record_id": 3})
    assert reply.get_json()["replayed"] == 1
    reply = loom_client.post("/api/v1/_deliveries/_replay",
                             json={"since": "2026-11-01", "until": "2026-12-01", "plugin": "nobody"})
    assert reply.get_json() == {"replayed": 0, "ids": []}


@pytest.mark.parametrize("body, field", [
    ({"until": "2026-12-01"}, "since"), ({"since": "2026-11-01"}, "until"),
    ({"since": "soon", "until": "2026-12-01"}, "since"), ({"since": "2026-11-01", "until": 5}, "until"),
    ({"since": "2026-12-01", "until": "2026-11-01"}, "until"),
    ({"since": "2026-11-01", "until": "2026-12-01", "status": "dead"}, "status"),
    ({"since": "2026-11-01", "until": "2026-12-01", "record_id": "x"}, "record_id"),
    ({"since": "2026-11-01", "until": "2026-12-01", "rule": 3}, "rule"),
    ({"since": "2026-11-01", "until": "2026-12-01", "dry_run": "yes"}, "dry_run"),
])
def test_a_bad_replay_body_is_a_400_naming_the_member(loom_client, engine, mixed, body, field):
    before = rows(engine)
    reply = loom_client.post("/api/v1/_deliveries/_replay", json=body)
    assert reply.status_code == 400, reply.get_json()
    assert reply.get_json()["errors"][0]["field"] == field
    assert rows(engine) == before


def test_a_replay_over_the_cap_is_refused_whole(loom_client, engine, monkeypatch):
    from loom.integrations import admin

    monkeypatch.setattr(admin, "MAX_REPLAY", 3)
    for _ in range(4):
        add_delivery(engine, status="dead", attempts=8)
    before = rows(engine)
    reply = loom_client.post("/api/v1/_deliveries/_replay", json={"since": "2026-11-01", "until": "2026-12-01"})
    assert reply.status_code == 422
    assert reply.get_json()["errors"][0] | {"message": ""} == {
        "field": "until", "code": "replay_too_large", "params": {"count": 4, "max": 3}, "message": ""}
    assert rows(engine) == before


# -- who may ---------------------------------------------------------------------------------

ROUTES = [("get", "/api/v1/_deliveries", None), ("get", "/api/v1/_deliveries/{dead}", None),
          ("post", "/api/v1/_deliveries/_retry", {"ids": ["{dead}"]}),
          ("post", "/api/v1/_deliveries/_replay", {"since": "2026-11-01", "until": "2026-12-01"}),
          ("post", "/api/v1/_deliveries/_replay", {"since": "2026-11-01", "until": "2026-12-01", "dry_run": True})]


def _call(client, method, path, body, dead):
    path = path.format(dead=dead)
    if body is not None:
        body = {k: ([dead] if v == ["{dead}"] else v) for k, v in body.items()}
    return getattr(client, method)(path, json=body) if method == "post" else client.get(path)


@pytest.fixture
def callers(make_user, client_for, apply_metadata, make_entity):
    """Everyone who is not a superuser: a plain user, an administrator of users, roles and the
    audit log, and a superuser's read-only token."""
    apply_metadata(make_entity("order", [{"name": "name", "type": "string"}]),
                   {"kind": "role", "name": "boss", "admin": ["users", "teams", "roles", "metadata", "audit"],
                    "permissions": {"order": {"actions": ["read", "create", "update", "delete"]}}})
    make_user("plain")
    make_user("manager", roles=["boss"])
    make_user("root", superuser=True)
    return {"plain": client_for("plain"), "manager": client_for("manager"),
            "read-only superuser": client_for("root", read_only=True)}


@pytest.mark.parametrize("who", ["plain", "manager", "read-only superuser"])
def test_nobody_but_a_superuser_reads_or_changes_deliveries(callers, engine, mixed, who):
    client = callers[who]
    before = rows(engine)
    for method, path, body in ROUTES:
        reply = _call(client, method, path, body, mixed["dead"])
        if who == "read-only superuser" and method == "get":
            assert reply.status_code == 200                 # a read-only token reads what its user may
            continue
        assert reply.status_code == 403, (method, path, reply.get_json())
        text = reply.get_data(as_text=True)
        assert "HTTP 500 boom" not in text and "Order 7" not in text
    assert rows(engine) == before
    assert audit_entries(engine, "delivery.retry") == [] and audit_entries(engine, "delivery.replay") == []


def test_without_a_credential_every_route_is_a_401(anonymous_client, engine, mixed):
    for method, path, body in ROUTES:
        assert _call(anonymous_client, method, path, body, mixed["dead"]).status_code == 401


def test_a_session_needs_its_csrf_token_to_retry(loom_app, make_user, engine, mixed):
    make_user("root", superuser=True, password="correct horse battery")
    client = loom_app.test_client()
    login = client.post("/api/v1/_auth/login", json={"username": "root", "password": "correct horse battery"})
    assert login.status_code == 200, login.get_json()
    assert client.get("/api/v1/_deliveries").status_code == 200
    before = rows(engine)
    reply = client.post("/api/v1/_deliveries/_retry", json={"ids": [mixed["dead"]]})
    assert reply.status_code == 400
    assert rows(engine) == before


# -- with the worker -------------------------------------------------------------------------

@pytest.fixture
def flaky_action():
    """An action that fails while ``down`` holds, and records the idempotency key of each call."""
    import uuid

    from loom.integrations.actions import Action, register_action, unregister_action

    state = {"down": True, "keys": []}

    def run(call):
        state["keys"].append(call.idempotency_key)
        if state["down"]:
            raise ConnectionError("ERP is down")
        return {"ok": True}
    name = f"test.flaky_{uuid.uuid4().hex[:8]}"
    register_action(Action(name, run, plugin="loom"))
    state["name"] = name
    yield state
    unregister_action(name)


def test_a_retried_dead_delivery_and_a_replayed_one_run_through_the_worker(loom_client, engine, loom_app,
                                                                           flaky_action):
    from loom.db import utcnow
    from loom.integrations.worker import Worker

    failing = add_delivery(engine, action=flaky_action["name"], run_as="admin", max_attempts=2, entity=None,
                           record_id=None, context={"record": {}, "with": {}, "chain": []},
                           created_at=utcnow(), available_at=utcnow() - dt.timedelta(seconds=1))
    worker = Worker(loom_app)
    now = utcnow()
    for _ in range(2):
        worker.run_once(now=now)
        now += dt.timedelta(hours=2)
    assert rows(engine)[0]["status"] == "dead" and rows(engine)[0]["attempts"] == 2
    flaky_action["down"] = False
    assert loom_client.post("/api/v1/_deliveries/_retry", json={"ids": [failing]}).get_json()["retried"] == [failing]
    assert worker.run_once(now=now).succeeded == 1
    done = rows(engine)[0]
    assert done["status"] == "succeeded" and done["attempts"] == 3 and done["max_attempts"] == 10
    assert [a["outcome"] for a in loom_client.get(f"/api/v1/_deliveries/{failing}").get_json()["data"]
            ["attempts_made"]] == ["failed", "dead", "succeeded"]
    replayed = loom_client.post("/api/v1/_deliveries/_replay", json={
        "since": (now - dt.timedelta(days=1)).isoformat(), "until": (now + dt.timedelta(days=1)).isoformat()})
    assert replayed.get_json()["replayed"] == 1
    assert worker.run_once(now=now).succeeded == 1
    key = done["idempotency_key"]
    assert flaky_action["keys"] == [key, key, key, key + ":replay:1"]    # the remote end sees a new request
