"""``loom plugin new NAME``: a plugin project that installs with pip and passes its own
tests as generated; names and folders it cannot use are refused in one line."""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from loom.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCAFFOLD = ROOT / "platform" / "loom" / "commands" / "scaffold"
FILES = {"README.md", ".gitignore", "pyproject.toml", "loom_shop/__init__.py", "loom_shop/metadata/shop_message.yaml",
         "loom_shop/metadata/rules/shop_rule.yaml", "tests/conftest.py", "tests/test_shop.py"}


def new(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, ["plugin", "new", *args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


def generated(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def run_its_tests(project: Path, *args: str) -> subprocess.CompletedProcess:
    """The generated project's tests, in a pytest of their own: the plugin is imported from
    the project's folder (PYTHONPATH) and registered by the ini option the project sets, so
    nothing is installed; LOOM_TEST_DATABASE_URL, when set, runs them on PostgreSQL too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env["PYTHONPATH"] = str(project)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                          env=env, capture_output=True, text=True, timeout=300)


def test_it_writes_a_pip_installable_project_named_after_the_plugin(tmp_path):
    project = tmp_path / "shop-plugin"
    output = new("shop", "--directory", str(project))

    assert generated(project) == FILES
    assert output.startswith(f"created plugin project {project} (8 files):")
    config = tomllib.loads((project / "pyproject.toml").read_text())
    loom_distribution = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert config["project"]["name"] == "loom-shop"
    assert loom_distribution in config["project"]["dependencies"]
    assert config["project"]["entry-points"]["loom.plugins"] == {"shop": "loom_shop"}
    assert config["project"]["optional-dependencies"]["test"] == ["pytest>=8"]
    assert config["tool"]["setuptools"]["packages"]["find"]["include"] == ["loom_shop*"]
    assert config["tool"]["setuptools"]["package-data"] == {"*": ["*.yaml"]}
    pytest_options = config["tool"]["pytest"]["ini_options"]
    assert pytest_options["loom_plugins"] == ["loom_shop"] and "-p loom" in pytest_options["addopts"]
    for path in FILES:
        text = (project / path).read_text()
        assert "__PLUGIN__" not in text and "__TITLE__" not in text, path
        if path.endswith(".py"):
            compile(text, path, "exec")
    code = (project / "loom_shop" / "__init__.py").read_text()
    assert 'NAME = "shop"' in code and "import loom\n" in code
    assert "kind: rule\nname: shop_notify_ready\n" in (project / "loom_shop/metadata/rules/shop_rule.yaml").read_text()
    assert "pip install ./loom-shop" in (project / "README.md").read_text()


def test_its_files_ship_with_loom(tmp_path):
    """Every file of the scaffold is package data of loom.commands, so ``pip install .``
    installs it (the wheel test in test_packaging builds the package)."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "loom.commands"]
    templates = [p.relative_to(SCAFFOLD.parent).as_posix() for p in SCAFFOLD.rglob("*") if p.is_file()
                 and "__pycache__" not in p.parts]
    assert len(templates) == len(FILES)
    for template in templates:
        assert template.endswith(".tmpl") and any(fnmatch.fnmatch(template, p) for p in patterns), template


def test_the_default_folder_is_loom_name_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    output = new("shop")
    assert generated(tmp_path / "loom-shop") == FILES
    assert "pip install -e './loom-shop[test]' && pytest ./loom-shop" in output


def test_the_generated_tests_pass_as_generated(tmp_path):
    new("shop", "--directory", str(tmp_path / "loom-shop"))
    result = run_its_tests(tmp_path / "loom-shop")
    assert result.returncode == 0, result.stdout + result.stderr
    per_database = 2 if os.environ.get("LOOM_TEST_DATABASE_URL") else 1
    assert f"{4 * per_database} passed" in result.stdout, result.stdout


def test_the_generated_tests_catch_an_action_that_drops_the_idempotency_key(tmp_path):
    project = tmp_path / "loom-shop"
    new("shop", "--directory", str(project))
    code = project / "loom_shop" / "__init__.py"
    text = code.read_text()
    assert 'headers = {"Idempotency-Key": call.idempotency_key}' in text
    code.write_text(text.replace('headers = {"Idempotency-Key": call.idempotency_key}', "headers = {}"))

    result = run_its_tests(project, "-k", "sent_once", "-x")

    assert result.returncode == 1 and "Idempotency-Key" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["Shop", "1shop", "shop-x", "shop x", "shop_", "shop__x", "_shop", "s" * 31,
                                  "loom", "loom_shop", "class", "http", "record", "example"])
def test_a_name_it_cannot_use_is_refused_in_one_line(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    output = new(name, code=1)
    assert output.startswith(f"error: '{name}' cannot name a plugin: ") and output.count("\n") == 1, output
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_holds_anything_is_refused_and_left_alone(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    (tmp_path / "a-file").write_text("mine")

    assert new("shop", "--directory", str(tmp_path / "taken"), code=1) == (
        f"error: {tmp_path / 'taken'} exists and is not an empty folder; give another --directory\n")
    assert generated(tmp_path / "taken") == {"notes.txt"}
    assert "is not an empty folder" in new("shop", "--directory", str(tmp_path / "a-file"), code=1)
    (tmp_path / "empty").mkdir()
    new("shop", "--directory", str(tmp_path / "empty"))
    assert generated(tmp_path / "empty") == FILES


# -- the fixtures the generated tests use (loom.testing) ------------------------------------

GADGET = {"kind": "entity", "name": "gadget", "fields": [{"name": "label", "type": "string"}]}
READER = {"kind": "role", "name": "gadget_reader", "permissions": {"gadget": {"actions": ["read"], "scope": "all"}}}
#: a rule whose deliveries always fail in a way worth trying again (nothing listens on port 9)
UNREACHABLE = {"kind": "rule", "name": "ping_nowhere", "on": {"entity": "gadget", "event": "created"},
               "action": "http.request", "with": {"url": "http://127.0.0.1:9/", "body": {"id": "{{ record.id }}"},
                                                  "timeout": 1},
               "run_as": "gadget_bot", "retry": {"max_attempts": 3, "backoff": "fixed", "first_wait": "10m"}}


@pytest.fixture
def gadgets(make_user, apply_metadata, loom_client):
    make_user("gadget_bot", roles=["gadget_reader"])
    apply_metadata(GADGET, READER, UNREACHABLE)
    return loom_client


def test_loom_plugins_is_empty_unless_the_ini_option_names_modules(loom_plugins):
    assert loom_plugins == []


def test_run_deliveries_runs_what_is_due_at_the_fake_clock_s_now(gadgets, run_deliveries, deliveries, fake_clock):
    record = gadgets.post("/api/v1/gadget", json={"label": "a"}).get_json()["data"]
    [delivery] = deliveries(rule="ping_nowhere", record_id=record["id"])
    assert delivery["status"] == "pending" and delivery["attempt_rows"] == []

    assert (run_deliveries().retried, run_deliveries().claimed) == (1, 0)  # the second: not due for 10 minutes
    fake_clock.advance(minutes=9)
    assert run_deliveries().claimed == 0
    fake_clock.advance(minutes=1, seconds=1)
    assert run_deliveries().retried == 1
    [delivery] = deliveries(rule="ping_nowhere")
    assert (delivery["status"], delivery["attempts"]) == ("pending", 2)
    assert [a["outcome"] for a in delivery["attempt_rows"]] == ["failed", "failed"]
    assert deliveries(rule="another") == [] and deliveries(status="dead") == []


def test_run_deliveries_until_settled_moves_the_clock_to_each_retry(gadgets, run_deliveries, deliveries, fake_clock):
    gadgets.post("/api/v1/gadget", json={"label": "a"})
    before = fake_clock.now

    report = run_deliveries(until_settled=True)

    assert (report.claimed, report.retried, report.dead) == (3, 2, 1)
    assert fake_clock.now - before >= dt.timedelta(minutes=20)
    [delivery] = deliveries(status="dead")
    assert [a["outcome"] for a in delivery["attempt_rows"]] == ["failed", "failed", "dead"]


def test_fake_clock_starts_now_and_moves_as_told(fake_clock):
    assert abs(fake_clock.now - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    later = fake_clock.advance(dt.timedelta(hours=1), minutes=30)
    assert dt.timedelta(minutes=89) < later - dt.datetime.now(dt.UTC) <= dt.timedelta(minutes=90)
    assert fake_clock.set(dt.datetime(2030, 1, 1, 8)).replace(microsecond=0) == dt.datetime(2030, 1, 1, 8,
                                                                                           tzinfo=dt.UTC)


def test_outbox_lists_events_by_topic_pattern(gadgets, outbox):
    record = gadgets.post("/api/v1/gadget", json={"label": "a"}).get_json()["data"]
    gadgets.patch(f"/api/v1/gadget/{record['id']}", json={"label": "b"})

    events = outbox(topic="record.*", entity="gadget")
    assert [(e["topic"], e["record_id"], e["status"]) for e in events] == [
        ("record.created", record["id"], "pending"), ("record.updated", record["id"], "pending")]
    assert events[1]["payload"]["changes"] == {"label": ["a", "b"]}
    assert outbox(topic="record.deleted") == []
    with pytest.raises(TypeError, match="not colour"):
        outbox(colour="red")


def test_deliveries_refuses_a_filter_it_does_not_know(deliveries):
    with pytest.raises(TypeError, match="not colour"):
        deliveries(colour="red")
