"""Attachment files through the API: an attachment value is only ever the caller's own
upload for that field, within the field's limits, held by one record; a file is served
only while a record the reader may read holds it; files no record holds are removed."""

from __future__ import annotations

import datetime as dt
import io

import pytest
import sqlalchemy as sa

from loom.records.files import app_files, uploads


@pytest.fixture
def contracts(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("contract", [
            {"name": "title", "type": "string", "required": True},
            {"name": "scan", "type": "attachment", "max_size": 2048, "accept": [".pdf", ".txt"]},
            {"name": "photo", "type": "attachment"},
            {"name": "lines", "type": "table", "target": "contract_line"},
        ], title_field="title"),
        make_entity("contract_line", [{"name": "note", "type": "string"},
                                      {"name": "proof", "type": "attachment", "max_size": 100}], child=True),
        make_entity("memo", [{"name": "title", "type": "string"}, {"name": "scan", "type": "attachment"}]),
        {"kind": "role", "name": "clerk", "permissions": {
            "contract": {"actions": ["read", "create", "update", "delete"], "scope": "own"},
            "memo": {"actions": ["read", "create", "update"]}}},
    )
    make_user("alice", roles=["clerk"])
    make_user("bob", roles=["clerk"])


def _upload(client, entity: str, field: str, content: bytes = b"%PDF-1.4 alice", name: str = "deal.pdf",
            mimetype: str = "application/pdf"):
    return client.post(f"/api/v1/{entity}/_files/{field}", data={"file": (io.BytesIO(content), name, mimetype)},
                       content_type="multipart/form-data")


def _download(client, record_id: int, field: str = "scan", entity: str = "contract"):
    response = client.get(f"/r/{entity}/{record_id}/_file/{field}")
    response.close()
    return response


def test_a_key_is_no_pass_to_another_users_file(loom_app, contracts, client_for):
    alice, bob = client_for("alice"), client_for("bob")
    uploaded = _upload(alice, "contract", "scan")
    assert uploaded.status_code == 201, uploaded.get_json()
    key = uploaded.get_json()["data"]["key"]
    mine = alice.post("/api/v1/contract", json={"title": "Alice's", "scan": {"key": key}})
    assert mine.status_code == 201, mine.get_json()
    assert mine.get_json()["data"]["scan"] == {"key": key, "name": "deal.pdf", "size": 14,
                                               "content_type": "application/pdf"}
    # bob knows the key (it is in the record's JSON) and attaches it to a record of his own
    stolen = bob.post("/api/v1/contract", json={"title": "Bob's", "scan": {"key": key, "name": "x.pdf"}})
    assert stolen.status_code == 422
    assert stolen.get_json()["errors"] == [{"field": "scan", "code": "no_such_upload", "params": {}, "message": (
        "there is no upload of yours with this key for this field; upload the file first")}]
    own = bob.post("/api/v1/contract", json={"title": "Bob's"}).get_json()["data"]["id"]
    assert bob.patch(f"/api/v1/contract/{own}", json={"scan": {"key": key}}).status_code == 422
    bulk = bob.post("/api/v1/contract/_bulk", json=[{"title": "a"}, {"title": "b", "scan": {"key": key}}])
    assert bulk.status_code == 422 and bulk.get_json()["errors"][0]["field"] == "[1].scan"
    # nor through a table row, nor another entity's field with the same name
    rows = bob.post("/api/v1/contract", json={"title": "Rows", "lines": [{"note": "n", "proof": {"key": key}}]})
    assert rows.status_code == 422 and rows.get_json()["errors"][0]["field"] == "lines[0].proof"
    # and bob cannot download it through alice's record (row scope own), nor any other way
    record = mine.get_json()["data"]["id"]
    assert _download(bob, record).status_code == 404
    assert _download(bob, own).status_code == 404
    assert _download(alice, record).status_code == 200


def test_an_upload_attaches_only_to_its_own_field_entity_and_one_record(loom_app, contracts, client_for):
    alice = client_for("alice")
    key = _upload(alice, "contract", "scan").get_json()["data"]["key"]
    other_field = alice.post("/api/v1/contract", json={"title": "t", "photo": {"key": key}})
    assert other_field.status_code == 422 and other_field.get_json()["errors"][0]["field"] == "photo"
    other_entity = alice.post("/api/v1/memo", json={"title": "t", "scan": {"key": key}})
    assert other_entity.status_code == 422
    twice = alice.post("/api/v1/contract/_bulk", json=[{"title": "a", "scan": {"key": key}},
                                                      {"title": "b", "scan": {"key": key}}])
    assert twice.status_code == 422 and twice.get_json()["errors"][0]["field"] == "[1].scan"
    first = alice.post("/api/v1/contract", json={"title": "a", "scan": {"key": key}})
    assert first.status_code == 201
    second = alice.post("/api/v1/contract", json={"title": "b", "scan": {"key": key}})
    assert second.status_code == 422 and "attached to another record" in second.get_json()["errors"][0]["message"]
    # the record keeps its file when its whole value is sent back (a GET, edited, PATCHed)
    record = first.get_json()["data"]
    kept = alice.patch(f"/api/v1/contract/{record['id']}", json={"title": "a2", "scan": record["scan"]})
    assert kept.status_code == 200 and kept.get_json()["data"]["scan"] == record["scan"]
    # a name or size sent with the key is ignored: the upload's own are stored
    key2 = _upload(alice, "contract", "scan", b"%PDF two", "two.pdf").get_json()["data"]["key"]
    forged = alice.patch(f"/api/v1/contract/{record['id']}",
                         json={"scan": {"key": key2, "name": "evil\r\nSet-Cookie: a=b.pdf", "size": 1}})
    assert forged.status_code == 200
    assert forged.get_json()["data"]["scan"]["name"] == "two.pdf"
    assert forged.get_json()["data"]["scan"]["size"] == 8


def test_limits_hold_through_the_api(loom_app, contracts, client_for):
    alice = client_for("alice")
    too_big = _upload(alice, "contract", "scan", b"x" * 4096, "big.pdf")
    assert too_big.status_code == 422 and too_big.get_json()["errors"] == [
        {"field": "file", "code": "file_too_large", "params": {"kb": 2}, "message": "the file is larger than 2 KB"}]
    wrong = _upload(alice, "contract", "scan", b"MZ", "tool.exe", "application/octet-stream")
    assert wrong.status_code == 422 and "not accepted" in wrong.get_json()["errors"][0]["message"]
    assert _upload(alice, "contract_line", "proof").status_code == 404  # a child entity has no API of its own
    # an upload made for a field without limits cannot be smuggled into a field with limits
    big = _upload(alice, "contract", "photo", b"x" * 4096, "big.exe").get_json()["data"]["key"]
    smuggled = alice.post("/api/v1/contract", json={"title": "t", "scan": {"key": big}})
    assert smuggled.status_code == 422
    # nor can a made-up value be stored
    made_up = alice.post("/api/v1/contract", json={"title": "t", "photo": {"key": "A" * 32, "name": "x", "size": 1}})
    assert made_up.status_code == 422
    assert alice.post("/api/v1/contract", json={"title": "t", "photo": "A" * 32}).status_code == 422


def test_an_upload_needs_the_right_to_set_the_field(loom_app, contracts, client_for, make_user, apply_metadata):
    read_only = client_for("alice", read_only=True)
    assert _upload(read_only, "contract", "scan").status_code == 403
    make_user("reader")
    assert _upload(client_for("reader"), "contract", "scan").status_code in (403, 404)
    assert _upload(client_for("alice"), "contract", "title").status_code == 404
    no_file = client_for("alice").post("/api/v1/contract/_files/scan", data={}, content_type="multipart/form-data")
    assert no_file.status_code in (400, 415)


def test_a_name_with_line_breaks_is_cleaned(loom_app, contracts, client_for):
    alice = client_for("alice")
    broken = _upload(alice, "contract", "photo", b"data", "a\r\nSet-Cookie: x=1.txt", "text/plain")
    assert broken.status_code == 400  # the multipart header itself is broken: a clear 400, never a 500
    uploaded = _upload(alice, "contract", "photo", b"data", "a\tb\x07\u2028c\u0085.txt", "text/plain")
    assert uploaded.status_code == 201
    value = uploaded.get_json()["data"]
    assert value["name"] == "abc.txt"
    record = alice.post("/api/v1/contract", json={"title": "t", "photo": {"key": value["key"]}}).get_json()["data"]
    # a name stored before names were cleaned is cleaned when it is offered for download
    table = loom_app.extensions["loom"].metadata.live().tables["contract"]
    with loom_app.extensions["loom"].engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == record["id"])
                     .values(photo={**value, "name": "evil\r\nSet-Cookie: a=b.txt"}))
    download = alice.get(f"/r/contract/{record['id']}/_file/photo")
    assert download.status_code == 200
    assert "Set-Cookie" not in download.headers and "\n" not in download.headers["Content-Disposition"]
    download.close()


def test_no_download_once_the_record_is_deleted_or_the_field_cleared(loom_app, contracts, client_for):
    alice = client_for("alice")
    keys = [_upload(alice, "contract", "scan").get_json()["data"]["key"] for _ in range(2)]
    first = alice.post("/api/v1/contract", json={"title": "a", "scan": {"key": keys[0]}}).get_json()["data"]["id"]
    second = alice.post("/api/v1/contract", json={"title": "b", "scan": {"key": keys[1]}}).get_json()["data"]["id"]
    assert _download(alice, first).status_code == 200
    assert alice.delete(f"/api/v1/contract/{first}").status_code == 204
    assert _download(alice, first).status_code == 404
    assert alice.patch(f"/api/v1/contract/{second}", json={"scan": None}).status_code == 200
    assert _download(alice, second).status_code == 404
    # nor can the file of a deleted record be attached again to a new record
    again = alice.post("/api/v1/contract", json={"title": "c", "scan": {"key": keys[0]}})
    assert again.status_code == 422


def test_files_no_record_holds_are_removed_after_the_grace_period(loom_app, contracts, client_for):
    alice = client_for("alice")
    held, cleared, deleted, loose, fresh = (
        _upload(alice, "contract", "scan").get_json()["data"]["key"] for _ in range(5))
    alice.post("/api/v1/contract", json={"title": "held", "scan": {"key": held}})
    gone = alice.post("/api/v1/contract", json={"title": "cleared", "scan": {"key": cleared}}).get_json()["data"]
    alice.patch(f"/api/v1/contract/{gone['id']}", json={"scan": None})
    doomed = alice.post("/api/v1/contract", json={"title": "deleted", "scan": {"key": deleted}}).get_json()["data"]
    alice.delete(f"/api/v1/contract/{doomed['id']}")
    engine = loom_app.extensions["loom"].engine
    with engine.begin() as conn:  # all but one are older than the grace period
        conn.execute(sa.update(uploads).where(uploads.c.key != fresh)
                     .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    with loom_app.app_context():
        files = app_files()
        live = loom_app.extensions["loom"].metadata.live()
        assert files.remove_orphans(live.model, live.tables) == 3
        with engine.connect() as conn:
            assert set(conn.execute(sa.select(uploads.c.key)).scalars()) == {held, fresh}
        assert files.path(held).exists() and files.path(fresh).exists()
        assert not any(files.path(k).exists() for k in (cleared, deleted, loose))
        assert files.remove_orphans(live.model, live.tables) == 0


def test_the_cleanup_command_removes_orphans(loom_app, contracts, client_for, loom_database_url, monkeypatch):
    from click.testing import CliRunner

    from loom.cli import main

    alice = client_for("alice")
    key = _upload(alice, "contract", "scan").get_json()["data"]["key"]
    engine = loom_app.extensions["loom"].engine
    with engine.begin() as conn:
        conn.execute(sa.update(uploads).values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", loom_app.instance_path)
    monkeypatch.setenv("LOOM_SECRET_KEY", "cli-test")
    result = CliRunner().invoke(main, ["files", "clean"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 file(s) no record holds removed" in result.output
    with loom_app.app_context():
        assert not app_files().path(key).exists()
