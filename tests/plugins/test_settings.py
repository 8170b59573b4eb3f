"""Plugin settings: declared as a JSON Schema, checked on save, secrets sealed and never
shown back; set and shown with ``loom plugin``."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import loom
from loom.app import create_app
from loom.plugins.settings import PluginSettingsError

SCHEMA = {
    "type": "object",
    "properties": {
        "endpoint": {"type": "string", "format": "uri", "description": "Where the ERP listens"},
        "api_key": {"type": "string", "minLength": 8, "secret": True},
        "password": {"type": "string", "writeOnly": True},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
        "enabled": {"type": "boolean"},
    },
    "required": ["endpoint"],
    "additionalProperties": False,
}


class ErpPlugin:
    @loom.hookimpl
    def plugin_settings_schema(self):
        return ("erp", SCHEMA)


@pytest.fixture
def loom_plugins():
    return [ErpPlugin()]


def stored_row(engine) -> dict:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT * FROM loom_plugin_settings WHERE plugin = 'erp'")).mappings().one()


def test_plugin_settings_schema_values_come_back_with_defaults(loom_app, set_plugin_settings):
    set_plugin_settings("erp", endpoint="https://erp.example.com", api_key="k-12345678", enabled=True)
    with loom_app.app_context():
        assert loom.plugin_settings("erp") == {"endpoint": "https://erp.example.com", "api_key": "k-12345678",
                                               "enabled": True, "batch_size": 50}


def test_secrets_are_sealed_in_the_table_and_masked_everywhere_else(loom_app, set_plugin_settings, loom_engine):
    set_plugin_settings("erp", endpoint="https://erp.example.com", api_key="k-12345678", password="hunter22")
    row = stored_row(loom_engine)
    values = row["values"] if isinstance(row["values"], dict) else __import__("json").loads(row["values"])
    assert values["endpoint"] == "https://erp.example.com"
    assert "k-12345678" not in str(values) and "hunter22" not in str(values)
    assert values["api_key"].startswith("fernet:") and values["password"].startswith("fernet:")
    settings = loom_app.extensions["loom"].settings
    assert settings.masked("erp") == {"api_key": "***", "endpoint": "https://erp.example.com", "password": "***"}
    with loom_engine.connect() as conn:
        audit = conn.execute(sa.text("SELECT changes FROM loom_audit WHERE action = 'plugin.settings'")).scalar()
    assert "k-12345678" not in str(audit) and "***" in str(audit) and "erp.example.com" in str(audit)


def test_invalid_settings_are_refused_whole_with_what_to_fix(loom_app, set_plugin_settings):
    settings = loom_app.extensions["loom"].settings
    with pytest.raises(loom.ValidationError) as refused:
        settings.update("erp", {"api_key": "short", "batch_size": 900}, actor="test")
    fields = {e["field"]: e["message"] for e in refused.value.errors}
    assert set(fields) == {"endpoint", "api_key", "batch_size"}
    assert fields["endpoint"] == "is required"
    assert "short" not in fields["api_key"]  # a secret's value is not quoted back
    assert "900" in fields["batch_size"]
    with pytest.raises(loom.ValidationError, match="no setting named colour"):
        settings.update("erp", {"colour": "red"}, actor="test")
    assert settings.masked("erp") == {}  # nothing was saved


def test_a_secret_sealed_under_another_key_asks_to_be_set_again(loom_app, set_plugin_settings, loom_engine, tmp_path):
    set_plugin_settings("erp", endpoint="https://erp.example.com", api_key="k-12345678")
    other = create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "other"), "SECRET_KEY": "rotated",
                        "PLUGINS": [ErpPlugin()], "DISCOVER_PLUGINS": False})
    with pytest.raises(PluginSettingsError, match="loom plugin set erp api_key="):
        other.extensions["loom"].settings.values("erp")


def test_a_bad_schema_or_a_second_plugin_of_the_same_name_stops_the_app(loom_engine, tmp_path):
    class Broken:
        @loom.hookimpl
        def plugin_settings_schema(self):
            return ("broken", {"type": "object", "properties": {"x": {"type": "nonsense"}}})

    with pytest.raises(PluginSettingsError, match="broken.*not a valid JSON Schema"):
        create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                    "PLUGINS": [Broken()], "DISCOVER_PLUGINS": False})
    with pytest.raises(PluginSettingsError, match="two plugins declare settings named 'erp'"):
        create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                    "PLUGINS": [ErpPlugin(), ErpPlugin()], "DISCOVER_PLUGINS": False})


@pytest.fixture
def plugin_cli(loom_engine, loom_database_url, tmp_path, monkeypatch):
    from loom.cli import main

    monkeypatch.setattr(main, "create_app", lambda: create_app({
        "ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "cli"), "SECRET_KEY": "cli",
        "PLUGINS": [ErpPlugin()], "DISCOVER_PLUGINS": False}))

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    return run


def test_loom_plugin_set_and_settings(plugin_cli):
    out = plugin_cli("plugin", "set", "erp", "batch_size=many", "enabled=maybe", code=1)
    assert "error: batch_size: expected a whole number" in out
    out = plugin_cli("plugin", "set", "erp", "batch_size=900", code=1)
    assert "error: endpoint: is required" in out and "error: batch_size: 900 is greater than" in out
    assert "saved 3 setting(s) of erp" in plugin_cli("plugin", "set", "erp", "endpoint=https://erp.example.com",
                                                      "api_key=k-12345678", "enabled=yes")
    shown = plugin_cli("plugin", "settings", "erp")
    assert "endpoint = https://erp.example.com  # Where the ERP listens" in shown
    assert "api_key = ***" in shown and "k-12345678" not in shown
    assert "batch_size = 50 (default)" in shown and "password = (not set)" in shown
    assert "enabled = true" in shown
    plugin_cli("plugin", "set", "erp", "--unset", "enabled")
    assert "enabled = (not set)" in plugin_cli("plugin", "settings", "erp")
    assert "no plugin declares settings named 'nope'" in plugin_cli("plugin", "settings", "nope", code=1)
    assert "erp" in plugin_cli("plugin", "list")
