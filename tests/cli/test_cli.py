"""The ``loom`` command as an admin uses it."""

from __future__ import annotations

import socket

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from loom.cli import main


@pytest.fixture
def loom_cli(loom_database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "cli-test")
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    run("init")
    yield run


def write(folder, name, doc):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(doc, allow_unicode=True))


def test_validate_reports_every_problem_with_file_and_line(loom_cli, tmp_path):
    app = tmp_path / "app"
    write(app, "a.yaml", {"kind": "entity", "name": "a", "fields": [{"name": "x", "type": "strin"}]})
    write(app, "b.yaml", {"kind": "entity", "name": "b", "fields": [{"name": "y", "type": "link", "target": "nope"}]})
    output = loom_cli("metadata", "validate", str(app), code=1)
    assert "error: a.yaml:3: fields[0].type: 'strin' is not one of" in output
    assert "error: b.yaml:3: fields[0].target: no entity named 'nope' to link to" in output


def test_apply_diff_history_export_rollback(loom_cli, tmp_path):
    app = tmp_path / "app"
    doc = {"kind": "entity", "name": "ticket", "fields": [{"name": "subject", "type": "string"}]}
    write(app, "ticket.yaml", doc)
    assert "ok: 1 entities in 1 documents" in loom_cli("metadata", "validate", str(app))
    assert "+ entity ticket (1 fields)" in loom_cli("metadata", "diff", str(app))
    assert "published version 1" in loom_cli("metadata", "apply", str(app), "--author", "alice")
    assert "no changes" in loom_cli("metadata", "apply", str(app))

    doc["fields"].append({"name": "urgent", "type": "boolean"})
    write(app, "ticket.yaml", doc)
    diff = loom_cli("metadata", "diff", str(app))
    assert "version 1 -> 2" in diff and "+ field ticket.urgent (boolean)" in diff
    assert "history" and "published version 2" in loom_cli("metadata", "apply", str(app))

    history = loom_cli("metadata", "history")
    assert history.index("   2 ") < history.index("   1 ") and "alice" in history

    out = tmp_path / "export"
    assert "wrote 1 files" in loom_cli("metadata", "export", str(out))
    assert "urgent" in (out / "entity" / "ticket.yaml").read_text()
    assert "no changes" in loom_cli("metadata", "apply", str(out))

    rolled = loom_cli("metadata", "rollback", "1")
    assert "published version 3 (rollback to 1)" in rolled and "- field ticket.urgent" in rolled
    assert "there is no metadata version 9" in loom_cli("metadata", "rollback", "9", code=1)


def test_demo_metadata_installs_with_generated_records(loom_app, loom_client):
    from loom.seed.setup import install_demo

    counts = install_demo(loom_app.extensions["loom"])
    assert counts["customer"] >= 100 and counts["sales_order"] >= 100
    assert install_demo(loom_app.extensions["loom"]) == {}
    order = loom_client.get("/api/v1/sales_order?limit=1").get_json()["data"][0]
    assert order["lines"] and order["customer"]["title"]
    customers = loom_client.get("/api/v1/customer?filter[level][eq]=A&count=exact&limit=1").get_json()
    assert customers["count"] > 0


@pytest.fixture
def bare_cli(loom_database_url, tmp_path, monkeypatch):
    """The ``loom`` command pointed at a database where no instance was ever made."""
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "cli-test")
    monkeypatch.delenv("LOOM_DEBUG", raising=False)

    def run(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)
    return run


@pytest.mark.parametrize("command", [
    ["metadata", "history"], ["metadata", "diff", "."], ["metadata", "apply", "."], ["metadata", "rollback", "1"],
    ["metadata", "export", "out"], ["user", "create", "x"], ["token", "create", "x"], ["team", "create", "t"],
    ["role", "list"], ["perm", "explain", "x", "customer"], ["audit", "verify"], ["audit", "export"],
    ["files", "clean"],
])
def test_commands_outside_an_instance_refuse_and_create_nothing(bare_cli, loom_database_url, tmp_path, command):
    result = bare_cli(*command)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: there is no Loom instance in ")
    assert str(tmp_path / "instance") in lines[0] and "loom init" in lines[0]
    assert "Traceback" not in result.output
    assert not (tmp_path / "loom-test.db").exists() or loom_database_url.startswith("postgresql")
    engine = sa.create_engine(loom_database_url)
    try:
        assert not sa.inspect(engine).has_table("alembic_version")
    finally:
        engine.dispose()


def test_init_creates_the_instance_the_others_then_use(bare_cli):
    assert bare_cli("init").exit_code == 0
    result = bare_cli("metadata", "history")
    assert result.exit_code == 0 and "no metadata published yet" in result.output


def test_a_busy_port_is_one_line_that_says_what_to_do(bare_cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in (["serve", "--port", str(port)], ["demo", "--port", str(port)]):
            result = bare_cli(*command)
            assert result.exit_code == 1
            assert result.output.strip() == (f"error: port {port} is in use on 127.0.0.1; stop what uses it or "
                                             f"try --port {port + 1}")


def test_an_unreachable_database_is_one_line(bare_cli, monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("LOOM_DATABASE_URL", f"postgresql+psycopg://nobody@127.0.0.1:{port}/none")
    result = bare_cli("init")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the database did not answer as expected")
    assert "LOOM_DATABASE_URL" in lines[0]


def test_demo_reuses_an_existing_instance_as_it_is(loom_cli, tmp_path):
    app = tmp_path / "app"
    write(app, "note.yaml", {"kind": "entity", "name": "note", "fields": [{"name": "text", "type": "string"}]})
    loom_cli("metadata", "apply", str(app), "--author", "admin")
    output = loom_cli("demo", "--no-serve")
    assert "using the existing instance" in output and "metadata version 1" in output and "--reset" in output
    history = loom_cli("metadata", "history")
    assert "   2 " not in history and "admin" in history


def test_a_bot_gets_the_role_a_rule_needs_after_the_rule_is_published(loom_cli, tmp_path, loom_database_url):
    """The order a plugin that ships a role and a rule needs: the rule's user must exist
    before the rule is published, the role before it is granted."""
    app = tmp_path / "app"
    write(app, "note.yaml", {"kind": "entity", "name": "note", "fields": [{"name": "text", "type": "string"}]})
    write(app, "role.yaml", {"kind": "role", "name": "noter", "permissions": {"note": {"actions": ["read"]}}})
    write(app, "rule.yaml", {"kind": "rule", "name": "copy_note", "on": {"entity": "note", "event": "created"},
                             "action": "record.create", "run_as": "note_bot",
                             "with": {"entity": "note", "values": {"text": "{{ record.text }}"}}})
    assert "there is no role named noter" in loom_cli("user", "create", "note_bot", "--role", "noter", code=1)
    assert "note_bot" in loom_cli("metadata", "apply", str(app), code=1)  # the rule's user does not exist yet
    loom_cli("user", "create", "note_bot")
    assert "published version 1" in loom_cli("metadata", "apply", str(app))
    assert "note_bot holds the role noter" in loom_cli("user", "grant", "note_bot", "noter")
    assert "note_bot holds the role noter" in loom_cli("user", "grant", "note_bot", "noter")  # again: no change
    assert "there is no role named auditors" in loom_cli("user", "grant", "note_bot", "auditors", code=1)
    assert "there is no user named nobody" in loom_cli("user", "grant", "nobody", "noter", code=1)
    engine = sa.create_engine(loom_database_url)
    try:
        with engine.connect() as conn:
            held = conn.execute(sa.text("SELECT role FROM loom_role_assignments a JOIN loom_users u "
                                        "ON u.id = a.user_id WHERE u.username = 'note_bot'")).scalars().all()
            actions = conn.execute(sa.text("SELECT action FROM loom_audit WHERE action LIKE 'role.%' "
                                           "ORDER BY seq")).scalars().all()
        assert held == ["noter"] and actions == ["role.assign"]
        assert "note_bot no longer holds the role noter" in loom_cli("user", "revoke", "note_bot", "noter")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM loom_role_assignments")).scalar() == 0
    finally:
        engine.dispose()
