"""Metadata shipped by plugins: loaded with the app's own documents, clashes named with
both files, published by ``loom init`` where the live metadata lacks it."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

import loom
from loom.app import create_app

VISIT = {"kind": "entity", "name": "visit", "fields": [{"name": "note", "type": "string"}]}
TICKET = {"kind": "entity", "name": "ticket", "fields": [{"name": "subject", "type": "string"}]}


def write(folder, name, doc):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(doc))


class CrmExtra:
    def __init__(self, folder):
        self.folder = folder

    @loom.hookimpl
    def metadata_folders(self):
        return [self.folder]


@pytest.fixture
def shipped(tmp_path):
    folder = tmp_path / "shipped"
    write(folder, "visit.yaml", VISIT)
    return folder


@pytest.fixture
def cli(loom_engine, shipped, tmp_path, monkeypatch):
    from loom.cli import main

    monkeypatch.setattr(main, "create_app", lambda: create_app({
        "ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "cli"), "SECRET_KEY": "cli",
        "PLUGINS": [CrmExtra(shipped)], "DISCOVER_PLUGINS": False}))

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    return run


def test_metadata_folders_are_applied_with_the_apps_documents(cli, tmp_path, loom_app):
    app = tmp_path / "app"
    write(app, "ticket.yaml", TICKET)
    diff = cli("metadata", "diff", str(app))
    assert "+ entity ticket" in diff and "+ entity visit" in diff
    cli("metadata", "apply", str(app))
    assert set(loom_app.extensions["loom"].metadata.live().model.entities) == {"ticket", "visit"}
    exported = tmp_path / "exported"
    cli("metadata", "export", str(exported))
    assert "no changes" in cli("metadata", "apply", str(exported))  # identical copies are taken once


def test_a_clash_with_a_shipped_document_names_both_files(cli, tmp_path):
    app = tmp_path / "app"
    write(app, "mine.yaml", {**VISIT, "fields": [{"name": "other", "type": "integer"}]})
    out = cli("metadata", "apply", str(app), code=1)
    assert "error: CrmExtra:visit.yaml:5: name: entity 'visit' is also declared in mine.yaml:5; rename one" in out


def test_problems_in_shipped_files_name_the_plugin(cli, shipped, tmp_path):
    write(shipped, "broken.yaml", {"kind": "entity", "name": "broken", "fields": [{"name": "x", "type": "strin"}]})
    app = tmp_path / "app"
    write(app, "ticket.yaml", TICKET)
    assert "error: CrmExtra:broken.yaml:" in cli("metadata", "diff", str(app), code=1)


def test_loom_init_publishes_what_the_live_metadata_lacks(cli, loom_app):
    out = cli("init")
    assert "with the plugins' metadata" in out and "+ entity visit" in out
    assert "with the plugins' metadata" not in cli("init")  # nothing missing the second time
    service = loom_app.extensions["loom"].metadata
    assert service.history()[0].source == "plugins"
    assert set(service.live().model.entities) == {"visit"}
