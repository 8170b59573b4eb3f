"""The plugin settings API, ``/api/v1/_plugins/settings``: the plugins that declare
settings, one plugin's schema and saved values (secrets as ``***``), a change to them, and
the plugin's connection test. For superusers and roles with ``admin: [plugins]``
(``loom.plugins.settings.may_manage_plugins``); anyone else gets 403 on every route."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from loom.errors import BadRequest, error_entry
from loom.plugins.settings import PluginSettings, require_plugin_admin

settings_api = Blueprint("plugin_settings", __name__, url_prefix="/api/v1/_plugins/settings")


def _settings() -> PluginSettings:
    return current_app.extensions["loom"].settings


def _summary(settings: PluginSettings, plugin: str) -> dict[str, Any]:
    schema = settings.schemas[plugin]
    saved = settings.stored(plugin)
    return {"plugin": plugin, "title": schema.get("title"), "description": schema.get("description"),
            "has_connection_test": plugin in settings.checks,
            "updated_at": saved["updated_at"].isoformat() if saved else None,
            "updated_by": saved["updated_by"] if saved else None}


@settings_api.get("")
def list_settings():
    """The plugins that declare settings, by name: title, description, whether they offer
    a connection test, and when their settings were last saved."""
    require_plugin_admin(g.get("principal"))
    settings = _settings()
    return jsonify({"data": [_summary(settings, name) for name in sorted(settings.schemas)]})


def _one(plugin: str) -> dict[str, Any]:
    settings = _settings()
    schema = settings.schema(plugin)
    return {**_summary(settings, plugin), "schema": schema, "values": settings.masked(plugin)}


@settings_api.get("/<plugin>")
def get_settings(plugin: str):
    """One plugin's settings schema and saved values; a secret that is set reads ``***``."""
    require_plugin_admin(g.get("principal"))
    return jsonify({"data": _one(plugin)})


@settings_api.patch("/<plugin>")
def change_settings(plugin: str):
    """Change some of the plugin's settings: a JSON object of the settings to set, null
    removing one. In a map of named secrets, the names given are set (null removes one)
    and the others kept. The result must satisfy the plugin's schema (422 otherwise,
    nothing saved). Answers as GET does."""
    require_plugin_admin(g.get("principal"))
    settings = _settings()
    settings.schema(plugin)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object of the settings to change",
                         errors=[error_entry("", "not_an_object", "expected a JSON object")])
    changes = {k: v for k, v in body.items() if v is not None}
    unset = [k for k, v in body.items() if v is None]
    settings.update(plugin, changes, unset=unset, principal=g.principal)
    return jsonify({"data": _one(plugin)})


@settings_api.post("/<plugin>/test")
def test_connection(plugin: str):
    """Run the plugin's connection test with its saved settings: ``ok``, ``message`` and
    ``seconds``; 404 when the plugin offers none. A failed test is still a 200: the
    request worked, the connection did not."""
    require_plugin_admin(g.get("principal"))
    result = _settings().test_connection(plugin, principal=g.principal)
    return jsonify({"data": {"plugin": plugin, "ok": result.ok, "message": result.message,
                             "seconds": result.seconds, "timed_out": result.timed_out}})

