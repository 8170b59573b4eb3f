"""The hash chain: ``verify`` catches any entry edited, removed or reordered directly in
the database, stays whole with several processes writing at once, and still works after
old months are archived."""

from __future__ import annotations

import datetime as dt
import gzip
import multiprocessing

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from loom.audit import log as audit_log_module
from loom.audit.chain import archive, verify
from loom.audit.log import entry_hash
from loom.audit.models import audit_log
from loom.cli import main

_SQLITE_GUARDS = ("loom_audit_no_update", "loom_audit_no_delete")


def tamper(engine, *statements):
    """Change the log behind Loom's back, as someone with database access could."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            saved = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                         "AND tbl_name = 'loom_audit'")).scalars().all()
            for name in _SQLITE_GUARDS:
                conn.exec_driver_sql(f"DROP TRIGGER {name}")
        for statement in statements:
            conn.execute(sa.text(statement))
        if engine.dialect.name != "postgresql":
            for sql in saved:
                conn.exec_driver_sql(sql)


@pytest.fixture
def busy_log(apply_metadata, make_entity, loom_client, loom_engine):
    """A log with a few dozen entries of every kind."""
    apply_metadata(make_entity("gadget", [{"name": "label", "type": "string"}, {"name": "n", "type": "integer"}]))
    for i in range(12):
        record_id = loom_client.post("/api/v1/gadget", json={"label": f"g{i}", "n": i}).get_json()["data"]["id"]
        loom_client.patch(f"/api/v1/gadget/{record_id}", json={"n": i * 10})
    loom_client.get("/api/v1/gadget/_export").get_data()
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loom_audit")).scalar() > 25
    return loom_engine


def test_an_untouched_log_verifies(busy_log, loom_client):
    verdict = verify(busy_log)
    assert verdict.ok, verdict.problem
    with busy_log.connect() as conn:
        seqs = conn.execute(sa.text("SELECT seq FROM loom_audit ORDER BY seq")).scalars().all()
    assert seqs == list(range(1, len(seqs) + 1)) and verdict.checked == len(seqs)
    reply = loom_client.post("/api/v1/_audit/_verify").get_json()
    assert reply["ok"] is True and reply["checked"] == len(seqs)


@pytest.mark.parametrize(("case", "statements", "first_bad", "words"), [
    ("edited", ["UPDATE loom_audit SET actor = 'somebody else' WHERE seq = 7"], 7, "was edited"),
    ("edited changes", ["UPDATE loom_audit SET changes = '{\"n\":[3,31]}' WHERE seq = 12"], 12, "was edited"),
    ("removed", ["DELETE FROM loom_audit WHERE seq = 9"], 9, "missing"),
    ("removed several", ["DELETE FROM loom_audit WHERE seq BETWEEN 9 AND 11"], 9, "entries 9 to 11 are missing"),
    ("reordered", ["UPDATE loom_audit SET seq = -5 WHERE seq = 5", "UPDATE loom_audit SET seq = 5 WHERE seq = 6",
                   "UPDATE loom_audit SET seq = 6 WHERE seq = -5"], 5, "was edited"),
    ("cut at the end", ["DELETE FROM loom_audit WHERE seq = (SELECT max(seq) FROM loom_audit)"], None,
     "entries at the end were removed"),
])
def test_tampering_is_caught_and_named(busy_log, case, statements, first_bad, words):
    with busy_log.connect() as conn:
        last = conn.execute(sa.text("SELECT max(seq) FROM loom_audit")).scalar()
    tamper(busy_log, *statements)
    verdict = verify(busy_log)
    assert not verdict.ok
    assert verdict.first_bad == (first_bad if first_bad is not None else last)
    assert words in verdict.problem


def test_a_forged_entry_with_a_recomputed_hash_breaks_the_next_link(busy_log):
    with busy_log.connect() as conn:
        row = dict(conn.execute(sa.select(audit_log).where(audit_log.c.seq == 8)).mappings().one())
    row["actor"] = "innocent"
    forged = entry_hash(row)
    tamper(busy_log, f"UPDATE loom_audit SET actor = 'innocent', hash = '{forged}' WHERE seq = 8")
    verdict = verify(busy_log)
    assert not verdict.ok and verdict.first_bad == 9
    assert "does not follow entry 8" in verdict.problem


def test_verify_command_exits_non_zero_naming_the_entry(busy_log, loom_database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "cli-test")
    runner = CliRunner()
    good = runner.invoke(main, ["audit", "verify"])
    assert good.exit_code == 0 and good.output.startswith("ok: ")
    anchor = good.output.split("head ")[1].strip()
    again = runner.invoke(main, ["audit", "verify", "--expect", anchor])
    assert again.exit_code == 0, again.output
    tamper(busy_log, "UPDATE loom_audit SET ip = '1.2.3.4' WHERE seq = 3")
    bad = runner.invoke(main, ["audit", "verify"])
    assert bad.exit_code == 1
    assert "FAILED at entry 3: entry 3 was edited" in bad.output


def _writer(url: str, instance: str, worker: int, count: int) -> None:
    from loom.app import create_app
    from loom.records.door import record_context
    from loom.records.service import RecordService

    app = create_app({"DATABASE_URL": url, "INSTANCE_PATH": instance, "SECRET_KEY": "x", "DISCOVER_PLUGINS": False})
    with app.app_context():
        principal = app.extensions["loom"].identity.principal_for("admin")
        service = RecordService(record_context(principal), "gadget")
        for i in range(count):
            record = service.create({"label": f"w{worker}-{i}", "n": i})
            service.update(record["id"], {"n": -i - 1})
    app.extensions["loom"].engine.dispose()


def test_several_processes_writing_at_once_make_one_chain(busy_log, loom_database_url, tmp_path):
    with busy_log.connect() as conn:
        before = conn.execute(sa.text("SELECT count(*) FROM loom_audit")).scalar()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(loom_database_url, str(tmp_path / f"i{n}"), n, 15))
               for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    verdict = verify(busy_log)
    assert verdict.ok, verdict.problem
    assert verdict.checked == before + 3 * 15 * 2


@pytest.fixture
def back_in_time(monkeypatch):
    """Make the writer believe it is another day."""
    def travel(when: dt.datetime) -> None:
        monkeypatch.setattr(audit_log_module, "utcnow", lambda: when)
    return travel


def test_archived_months_leave_a_chain_that_still_verifies(apply_metadata, make_entity, loom_app, loom_engine,
                                                           back_in_time, tmp_path):
    from loom.principal import Principal
    from loom.records.door import record_context
    from loom.records.service import RecordService

    months = [dt.datetime(2026, 8, 10, tzinfo=dt.UTC), dt.datetime(2026, 9, 3, tzinfo=dt.UTC),
              dt.datetime(2026, 10, 20, tzinfo=dt.UTC)]
    back_in_time(months[0])
    apply_metadata(make_entity("gadget", [{"name": "label", "type": "string"}]))
    for when in months:
        back_in_time(when)
        with loom_app.app_context():
            service = RecordService(record_context(Principal.system("import")), "gadget")
            for i in range(4):
                service.create({"label": f"{when:%m}-{i}"})
    folder = tmp_path / "archive"
    files = archive(loom_engine, dt.date(2026, 10, 1), folder)
    assert [f.file for f in files] == ["loom-audit-2026-08.jsonl.gz", "loom-audit-2026-09.jsonl.gz"]
    with loom_engine.connect() as conn:
        left = conn.execute(sa.text("SELECT min(at) FROM loom_audit")).scalar()
    assert str(left).startswith("2026-10")
    assert verify(loom_engine).ok
    whole = verify(loom_engine, archive_dir=folder)
    assert whole.ok and whole.archives == 2, whole.problem

    # an archive file edited afterwards is caught
    path = folder / files[1].file
    text = gzip.decompress(path.read_bytes()).decode().replace('"09-1"', '"09-X"')
    path.write_bytes(gzip.compress(text.encode()))
    broken = verify(loom_engine, archive_dir=folder)
    assert not broken.ok and "was changed after it was written" in broken.problem


def test_postgres_lock_revokes_changing_rights(busy_log, loom_database_url, tmp_path, monkeypatch):
    if busy_log.dialect.name != "postgresql":
        pytest.skip("database rights are a PostgreSQL feature; SQLite relies on the triggers")
    role = "loom_app_audit_test"
    with busy_log.begin() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
            conn.exec_driver_sql(f"CREATE ROLE {role}")
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar()
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        conn.exec_driver_sql(f"GRANT ALL ON loom_audit TO {role}")
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "cli-test")
    result = CliRunner().invoke(main, ["audit", "lock", role])
    assert result.exit_code == 0, result.output
    try:
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), busy_log.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
            conn.exec_driver_sql("UPDATE loom_audit SET actor = 'x'")
        with busy_log.begin() as conn:
            conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
            assert conn.exec_driver_sql("SELECT count(*) FROM loom_audit").scalar() > 0
    finally:
        with busy_log.begin() as conn:
            conn.exec_driver_sql(f"REVOKE ALL ON loom_audit FROM {role}")
            conn.exec_driver_sql(f'REVOKE USAGE ON SCHEMA "{schema}" FROM {role}')
