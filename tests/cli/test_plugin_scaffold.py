"""``loom plugin new NAME``: a plugin project that installs with pip and passes its own
tests as generated; names and folders it cannot use are refused in one line."""

from __future__ import annotations

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
    assert config["tool"]["setuptools"]["packages"] == ["loom_shop"]
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
