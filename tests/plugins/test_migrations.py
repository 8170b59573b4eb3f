"""A plugin's own alembic tree: applied after Loom's own by ``loom init`` and the test
fixtures, recorded in its own version table, taken back with ``loom plugin downgrade``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import loom
from loom.app import create_app
from loom.db import upgrade as upgrade_loom
from loom.plugins import plugin_manager
from loom.plugins.migrations import downgrade_plugin, upgrade_plugins

REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


@pytest.fixture
def tree(tmp_path):
    folder = tmp_path / "crm_extra_migrations"
    folder.mkdir()
    (folder / "0001_visits.py").write_text(REVISION.format(
        revision="crm_extra_0001", down=None,
        upgrade='    op.create_table("crm_extra_visits", sa.Column("id", sa.Integer, primary_key=True),\n'
                '                    sa.Column("note", sa.String(200)))',
        downgrade='    op.drop_table("crm_extra_visits")'))
    (folder / "0002_when.py").write_text(REVISION.format(
        revision="crm_extra_0002", down="crm_extra_0001",
        upgrade='    op.add_column("crm_extra_visits", sa.Column("visited_at", sa.DateTime(timezone=True)))',
        downgrade='    with op.batch_alter_table("crm_extra_visits") as batch:\n'
                  '        batch.drop_column("visited_at")'))
    return folder


class CrmExtra:
    def __init__(self, folder):
        self.folder = folder

    @loom.hookimpl
    def migration_folders(self):
        return [("crm_extra", self.folder)]


@pytest.fixture
def loom_plugins(tree):
    return [CrmExtra(tree)]


def columns(engine, table) -> set[str]:
    return {c["name"] for c in sa.inspect(engine).get_columns(table)}


def test_migration_folders_are_applied_with_the_test_database(loom_engine):
    assert columns(loom_engine, "crm_extra_visits") == {"id", "note", "visited_at"}
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version_crm_extra")).scalar() == "crm_extra_0002"
        loom_head = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert not loom_head.startswith("crm_extra")


def test_a_plugin_tree_goes_back_on_its_own_and_comes_again(loom_engine, tree):
    manager = plugin_manager([CrmExtra(tree)], discover=False)
    downgrade_plugin(loom_engine, manager, "crm_extra", "crm_extra_0001")
    assert columns(loom_engine, "crm_extra_visits") == {"id", "note"}
    downgrade_plugin(loom_engine, manager, "crm_extra")
    assert not sa.inspect(loom_engine).has_table("crm_extra_visits")
    assert sa.inspect(loom_engine).has_table("loom_users")
    assert upgrade_plugins(loom_engine, manager) == ["crm_extra"]
    assert columns(loom_engine, "crm_extra_visits") == {"id", "note", "visited_at"}


def test_loom_upgrades_the_same_once_the_plugin_is_uninstalled(loom_engine):
    """Its revision stays recorded in its own table, which Loom's upgrade never reads."""
    upgrade_loom(loom_engine)
    upgrade_plugins(loom_engine, plugin_manager(discover=False))
    assert sa.inspect(loom_engine).has_table("crm_extra_visits")


def test_tree_names_are_checked(loom_engine, tree):
    with pytest.raises(ValueError, match="lower case"):
        upgrade_plugins(loom_engine, plugin_manager([type("Bad", (), {
            "migration_folders": loom.hookimpl(lambda self: [("Bad Name", tree)])})()], discover=False))


def test_loom_init_and_plugin_downgrade_commands(loom_database_url, tree, tmp_path, monkeypatch):
    from loom.cli import main

    engine = sa.create_engine(loom_database_url)
    monkeypatch.setattr(main, "create_app", lambda: create_app({
        "ENGINE": engine, "INSTANCE_PATH": str(tmp_path / "cli"), "SECRET_KEY": "cli",
        "PLUGINS": [CrmExtra(tree)], "DISCOVER_PLUGINS": False}))
    try:
        assert CliRunner().invoke(main, ["init"], catch_exceptions=False).exit_code == 0
        assert columns(engine, "crm_extra_visits") == {"id", "note", "visited_at"}
        result = CliRunner().invoke(main, ["plugin", "downgrade", "crm_extra"], catch_exceptions=False)
        assert result.exit_code == 0 and "crm_extra: tables at base" in result.output
        assert not sa.inspect(engine).has_table("crm_extra_visits")
        result = CliRunner().invoke(main, ["plugin", "downgrade", "nope"], catch_exceptions=False)
        assert result.exit_code == 1 and "no installed plugin ships migrations named 'nope'" in result.output
    finally:
        engine.dispose()
