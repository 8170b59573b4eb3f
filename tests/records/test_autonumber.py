"""Autonumber fields: Loom numbers each new record ("SO-202612-00001"), on SQLite and
PostgreSQL, through the API as a user sees it."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
import sqlalchemy as sa

import loom
from loom.errors import MetadataError
from loom.metadata import compile_documents, load_text
from loom.principal import Principal

PATTERN = "SO-{yyyy}{mm}-{seq:5}"


@pytest.fixture
def orders(apply_metadata, make_entity):
    """Two entities alike but for gap_free: ``order`` (gaps allowed), ``invoice`` (none)."""
    def fields(gap_free: bool) -> list[dict]:
        return [{"name": "number", "type": "string", "autonumber": PATTERN, "gap_free": gap_free, "unique": True},
                {"name": "code", "type": "string", "unique": True},
                {"name": "note", "type": "string"}]
    apply_metadata(make_entity("order", fields(False)), make_entity("invoice", fields(True)))


@pytest.fixture
def frozen(monkeypatch):
    """Set the clock the record service reads: frozen.at(2026, 11, 30, 23, 59)."""
    class Clock:
        def at(self, *parts: int) -> None:
            moment = dt.datetime(*parts, tzinfo=dt.UTC)
            monkeypatch.setattr("loom.records.service.utcnow", lambda: moment)
    return Clock()


def create(client, entity: str, **values) -> dict:
    response = client.post(f"/api/v1/{entity}", json=values)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]


def numbers(engine, entity: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(f"SELECT number FROM e_{entity} ORDER BY id")).scalars())


@pytest.mark.parametrize("entity", ["order", "invoice"])
def test_numbers_have_the_pattern_and_start_again_each_month(orders, loom_client, frozen, entity):
    frozen.at(2026, 11, 30, 23, 59)
    assert create(loom_client, entity)["number"] == "SO-202611-00001"
    assert create(loom_client, entity)["number"] == "SO-202611-00002"
    frozen.at(2026, 12, 1, 0, 0)
    assert create(loom_client, entity)["number"] == "SO-202612-00001"
    frozen.at(2026, 11, 30, 23, 59, 59)  # a late November create goes on with November's counter
    assert create(loom_client, entity)["number"] == "SO-202611-00003"


def test_the_date_is_the_app_time_zone_s(orders, loom_app, loom_client, frozen):
    loom_app.extensions["loom"].time_zone = "Asia/Shanghai"
    frozen.at(2026, 11, 30, 20, 0)  # 04:00 on 1 December in Shanghai
    assert create(loom_client, "order")["number"] == "SO-202612-00001"


def test_the_number_is_in_the_reply_the_record_the_event_and_the_audit_entry(orders, loom_client, loom_engine,
                                                                            frozen):
    frozen.at(2026, 12, 2, 9, 0)
    made = create(loom_client, "order", note="first")
    assert made["number"] == "SO-202612-00001"
    assert loom_client.get(f"/api/v1/order/{made['id']}").get_json()["data"]["number"] == "SO-202612-00001"
    with loom_engine.connect() as conn:
        payload = conn.execute(sa.text("SELECT payload FROM loom_outbox WHERE topic = 'record.created' "
                                       "AND entity = 'order'")).scalar_one()
        changes = conn.execute(sa.text("SELECT changes FROM loom_audit WHERE action = 'record.create' "
                                       "AND entity = 'order'")).scalar_one()
    payload = json.loads(payload) if isinstance(payload, str) else payload
    changes = json.loads(changes) if isinstance(changes, str) else changes
    assert payload["record"]["number"] == "SO-202612-00001"
    assert "SO-202612-00001" in json.dumps(changes)


@pytest.mark.parametrize("entity", ["order", "invoice"])
def test_fifty_concurrent_creates_get_fifty_distinct_numbers(orders, loom_client, client_for, loom_engine, entity):
    clients = [client_for("admin") for _ in range(50)]
    start = threading.Barrier(50)
    replies: list = [None] * 50

    def work(i: int) -> None:
        start.wait()
        replies[i] = clients[i].post(f"/api/v1/{entity}", json={"note": f"thread {i}"})

    threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in replies] == [201] * 50, [r.get_json() for r in replies if r.status_code != 201]
    given = sorted(int(r.get_json()["data"]["number"][-5:]) for r in replies)
    assert given == list(range(1, 51))
    assert len(set(numbers(loom_engine, entity))) == 50


def _fail_some(client, entity: str) -> list[str]:
    """Create, then fail three creates on the unique code, then create again."""
    create(client, entity, code="A")
    for _ in range(3):
        assert client.post(f"/api/v1/{entity}", json={"code": "A"}).status_code in (409, 422)
    create(client, entity, code="B")
    return [n[-5:] for n in numbers(client.application.extensions["loom"].engine, entity)]


def test_gap_free_numbers_have_no_gaps_after_failed_creates(orders, loom_client):
    assert _fail_some(loom_client, "invoice") == ["00001", "00002"]


def test_numbers_that_may_have_gaps_lose_those_of_failed_creates_on_postgresql(orders, loom_client, loom_engine):
    """On PostgreSQL the number is taken and committed before the record's transaction, so
    a failed create loses it; SQLite's writers take turns anyway, so there it is taken in
    the record's transaction and given back."""
    expected = ["00001", "00005"] if loom_engine.dialect.name == "postgresql" else ["00001", "00002"]
    assert _fail_some(loom_client, "order") == expected


@pytest.mark.parametrize("entity", ["order", "invoice"])
def test_a_deleted_record_s_number_is_never_given_again(orders, loom_client, entity):
    made = [create(loom_client, entity) for _ in range(3)]
    assert loom_client.delete(f"/api/v1/{entity}/{made[-1]['id']}").status_code in (200, 204)
    assert create(loom_client, entity)["number"].endswith("-00004")


@pytest.mark.parametrize("entity", ["order", "invoice"])
def test_a_bulk_create_numbers_its_rows_in_order(orders, loom_client, loom_engine, frozen, entity):
    frozen.at(2026, 12, 2, 9, 0)
    create(loom_client, entity, note="before")
    response = loom_client.post(f"/api/v1/{entity}/_bulk", json=[{"note": f"row {i}"} for i in range(30)])
    assert response.status_code == 201, response.get_json()
    ids = [row["id"] for row in response.get_json()["data"]]
    with loom_engine.connect() as conn:
        rows = dict(conn.execute(sa.text(f"SELECT id, number FROM e_{entity}")).all())
    assert [rows[i] for i in ids] == [f"SO-202612-{n:05d}" for n in range(2, 32)]


@pytest.mark.parametrize("entity", ["order", "invoice"])
def test_a_user_cannot_give_or_change_the_number(orders, loom_client, loom_engine, entity):
    refused = loom_client.post(f"/api/v1/{entity}", json={"number": "SO-209912-99999"})
    assert refused.status_code == 422
    assert {(e["field"], e["code"]) for e in refused.get_json()["errors"]} == {("number", "read_only")}
    bulk = loom_client.post(f"/api/v1/{entity}/_bulk", json=[{"note": "x"}, {"number": "mine"}])
    assert bulk.status_code == 422
    assert [e["field"] for e in bulk.get_json()["errors"]] == ["[1].number"]
    made = create(loom_client, entity)
    changed = loom_client.patch(f"/api/v1/{entity}/{made['id']}", json={"number": "SO-209912-99999"})
    assert changed.status_code == 422
    assert numbers(loom_engine, entity) == [made["number"]]


def test_the_system_may_import_legacy_numbers_and_the_counter_moves_past_them(orders, loom_app, loom_client,
                                                                              frozen):
    frozen.at(2026, 12, 2, 9, 0)
    system = loom.record_service("invoice", Principal.system("legacy-import"), app=loom_app)
    assert system.create({"number": "SO-202612-00041"})["number"] == "SO-202612-00041"
    system.bulk_create([{"number": "SO-202611-00007"}, {"number": "OLD-17"}, {"note": "numbered by Loom"}])
    assert create(loom_client, "invoice")["number"] == "SO-202612-00043"
    frozen.at(2026, 11, 30, 12, 0)
    assert create(loom_client, "invoice")["number"] == "SO-202611-00008"


def test_a_number_is_taken_in_the_caller_s_transaction_when_given_one(orders, loom_app, loom_engine):
    class Boom(Exception):
        pass

    system = Principal.system("test")
    with pytest.raises(Boom), loom_engine.begin() as conn:
        loom.record_service("order", system, connection=conn, app=loom_app).create({"note": "rolled back"})
        raise Boom
    made = loom.record_service("order", system, app=loom_app).create({"note": "kept"})
    assert made["number"].endswith("-00001")


def test_renaming_the_field_or_entity_keeps_the_counter(orders, loom_client, apply_metadata, make_entity):
    create(loom_client, "order")
    apply_metadata(make_entity("sales_order", [
        {"name": "doc_number", "type": "string", "autonumber": PATTERN, "renamed_from": "number"},
        {"name": "code", "type": "string", "unique": True}, {"name": "note", "type": "string"}],
        renamed_from="order"))
    assert create(loom_client, "sales_order")["doc_number"].endswith("-00002")


BAD_PATTERNS = [
    ('"SO-{yyyy}"', "exactly one {seq} placeholder"),
    ('"{seq:3}-{seq:3}"', "exactly one {seq} placeholder"),
    ('"SO-{month}-{seq:4}"', "unknown placeholder {month}"),
    ('"SO-{seq:0}"', "1 to 18 digits"),
    ('"SO-{seq:4"', "a brace outside a placeholder"),
]


@pytest.mark.parametrize(("pattern", "message"), BAD_PATTERNS)
def test_a_bad_pattern_is_a_metadata_error_with_file_and_line(pattern, message):
    text = f"kind: entity\nname: thing\nfields:\n  - name: ref\n    type: string\n    autonumber: {pattern}\n"
    documents, problems = load_text(text, "thing.yaml")
    assert problems == []
    with pytest.raises(MetadataError) as caught:
        compile_documents(documents)
    rendered = [str(p) for p in caught.value.problems]
    assert any(r.startswith("thing.yaml:6: fields[0].autonumber:") and message in r for r in rendered), rendered


@pytest.mark.parametrize(("extra", "path", "message"), [
    ("type: integer\n    autonumber: 'N{seq}'", "fields[0].autonumber", "does not apply to a integer field"),
    ("type: string\n    autonumber: 'N{seq}'\n    default: N1", "fields[0].default", "cannot have default"),
    ("type: string\n    autonumber: 'N{seq}'\n    required: true", "fields[0].required", "cannot have required"),
    ("type: string\n    gap_free: true", "fields[0].gap_free", "autonumber fields only"),
    ("type: string\n    autonumber: 'N{seq}'\n    compute: \"'x'\"", "fields[0].compute", "cannot have compute"),
    ("type: string\n    autonumber: 'SO-{yyyy}-{seq:6}'\n    max_length: 8", "fields[0].autonumber",
     "more than max_length (8)"),
])
def test_an_autonumber_field_s_settings_must_fit(extra, path, message):
    text = f"kind: entity\nname: thing\nfields:\n  - name: ref\n    {extra}\n"
    documents, problems = load_text(text, "thing.yaml")
    assert problems == []
    with pytest.raises(MetadataError) as caught:
        compile_documents(documents)
    found = caught.value.problems
    assert any(p.path == path and message in p.message and p.line for p in found), found


def test_a_field_made_autonumber_later_numbers_new_records_and_a_new_pattern_counts_on(apply_metadata, make_entity,
                                                                                      loom_client):
    def publish(number: dict) -> None:
        apply_metadata(make_entity("claim", [{"name": "ref", "type": "string", **number},
                                             {"name": "note", "type": "string"}]))

    publish({})
    old = create(loom_client, "claim", ref="handwritten-1")
    publish({"autonumber": "CL-{seq:3}"})
    assert loom_client.get(f"/api/v1/claim/{old['id']}").get_json()["data"]["ref"] == "handwritten-1"
    assert create(loom_client, "claim")["ref"] == "CL-001"
    publish({"autonumber": "CL-{seq:6}"})  # more digits: the same counter
    assert create(loom_client, "claim")["ref"] == "CL-000002"
    publish({"autonumber": "CLM-{seq:6}"})  # another prefix: a counter of its own
    assert create(loom_client, "claim")["ref"] == "CLM-000001"
