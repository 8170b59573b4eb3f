"""The hooks that shape the app: startup, routes, public and read-only endpoints, commands,
navigation links and record-page panels."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner
from flask import Blueprint, current_app, g, jsonify
from markupsafe import Markup

import loom
from loom.app import create_app


class AppPlugin:
    """A plugin using every app hook, as a third party would."""

    def __init__(self):
        self.started = []
        blueprint = Blueprint("hello", __name__)

        @blueprint.get("/hello/private")
        def private():
            return jsonify(user=g.principal.name)

        @blueprint.get("/hello/public")
        def public():
            return jsonify(greeting="hi", signed_in=g.principal is not None)

        @blueprint.post("/hello/lookup")
        def lookup():
            return jsonify(found=True)

        @blueprint.post("/hello/change")
        def change():
            return jsonify(changed=True)

        self.blueprint = blueprint

    @loom.hookimpl
    def startup(self, app):
        self.started.append((app, "hello" in app.blueprints))

    @loom.hookimpl
    def register_blueprints(self):
        return [self.blueprint]

    @loom.hookimpl
    def public_endpoints(self):
        return ["hello.public"]

    @loom.hookimpl
    def read_only_endpoints(self):
        return ["hello.lookup"]

    @loom.hookimpl
    def register_commands(self, cli):
        @cli.command("hello")
        @click.argument("name")
        def hello(name):
            """Greet NAME."""
            click.echo(f"hello {name} from {current_app.name}")

    @loom.hookimpl
    def navigation_links(self, principal):
        links = [loom.NavLink("Plugin <home>", url="/hello/public")]
        if principal.is_superuser:
            links.append(loom.NavLink("Admins only", endpoint="hello.private"))
        return links

    @loom.hookimpl
    def record_panels(self, entity, record, principal):
        return [loom.Panel(f"About {entity.name}", f"<b>{record['name']}</b> seen by {principal.name}"),
                loom.Panel("Trusted", Markup("<em>{}</em>").format(record["name"]), key="trusted")]


class BrokenPlugin:
    """Fails in every hook that decorates a page."""

    @loom.hookimpl
    def navigation_links(self, principal):
        raise RuntimeError("navigation bug")

    @loom.hookimpl
    def record_panels(self, entity, record, principal):
        raise RuntimeError("panel bug")


@pytest.fixture
def plugin():
    return AppPlugin()


@pytest.fixture
def loom_plugins(plugin):
    return [plugin, BrokenPlugin()]


def test_startup_runs_once_with_the_built_app(loom_app, plugin):
    assert plugin.started == [(loom_app, True)]  # the blueprints are registered by then


def test_register_blueprints_routes_need_a_credential_unless_public(loom_client, anonymous_client):
    assert anonymous_client.get("/hello/private").status_code == 401
    assert loom_client.get("/hello/private").get_json() == {"user": "admin"}
    assert anonymous_client.get("/hello/public").get_json() == {"greeting": "hi", "signed_in": False}


def test_public_endpoints_open_only_what_a_plugin_names(loom_app, anonymous_client):
    public = loom_app.extensions["loom"].public_endpoints
    assert "hello.public" in public and "hello.private" not in public
    assert anonymous_client.post("/hello/lookup").status_code == 401
    assert "pages.sign_in" in public  # the screens open theirs through the same hook


def test_read_only_endpoints_let_a_read_only_token_write_there_only(loom_app, make_user, client_for):
    make_user("reader", superuser=True)
    reader = client_for("reader", read_only=True)
    assert reader.post("/hello/lookup").get_json() == {"found": True}
    assert reader.post("/hello/change").status_code == 403
    assert client_for("reader").post("/hello/change").get_json() == {"changed": True}


def test_a_session_write_to_a_plugin_route_needs_the_csrf_token(page_for):
    client = page_for("boss", superuser=True)
    assert client.post("/hello/change").status_code == 400


def test_register_commands_adds_a_loom_command(monkeypatch, tmp_path):
    from loom.cli import main

    plugin = AppPlugin()
    monkeypatch.setattr(main, "create_app", lambda: create_app({
        "INSTANCE_PATH": str(tmp_path / "cli"), "SECRET_KEY": "x", "PLUGINS": [plugin], "DISCOVER_PLUGINS": False}))
    result = CliRunner().invoke(main, ["hello", "wang"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output == "hello wang from loom\n"
    listing = CliRunner().invoke(main, ["--help"], catch_exceptions=False).output
    assert re.search(r"hello\s+Greet NAME\.", listing)


def test_navigation_links_show_escaped_and_per_principal(page_for):
    admin_page = page_for("boss", superuser=True).get("/").get_data(as_text=True)
    clerk_page = page_for("clerk").get("/").get_data(as_text=True)
    assert '<a href="/hello/public">Plugin &lt;home&gt;</a>' in admin_page
    assert '<a href="/hello/private">Admins only</a>' in admin_page
    assert "Plugin &lt;home&gt;" in clerk_page and "Admins only" not in clerk_page
    assert "Audit log" in admin_page and "Audit log" not in clerk_page  # the screens' own link


def test_record_panels_are_escaped_unless_markup(apply_metadata, make_entity, loom_client, page_for):
    apply_metadata(make_entity("thing", [{"name": "name", "type": "string"}]))
    record = loom_client.post("/api/v1/thing", json={"name": "<script>x</script>"}).get_json()["data"]
    response = page_for("boss", superuser=True).get(f"/r/thing/{record['id']}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200  # the broken plugin's panel is left out, not a 500
    assert "<h2>About thing</h2>" in page
    assert "&lt;b&gt;&lt;script&gt;x&lt;/script&gt;&lt;/b&gt; seen by boss" in page
    assert '<section class="card plugin-panel" id="panel-trusted">' in page
    assert "<em>&lt;script&gt;x&lt;/script&gt;</em>" in page
    assert "<script>x</script>" not in page


def test_record_panels_get_only_the_fields_the_user_may_read(apply_metadata, make_entity, loom_client,
                                                            page_for, plugin):
    seen = []

    @loom.hookimpl
    def record_panels(record):
        seen.append(dict(record))

    apply_metadata(make_entity("secretive", [{"name": "name", "type": "string"},
                                             {"name": "salary", "type": "integer"}]),
                   {"kind": "role", "name": "viewer",
                    "permissions": {"secretive": {"actions": ["read"], "fields": {"salary": "none"}}}})
    record = loom_client.post("/api/v1/secretive", json={"name": "x", "salary": 9}).get_json()["data"]
    manager = loom_client.application.extensions["loom"].plugins
    probe = type("Probe", (), {"record_panels": staticmethod(record_panels)})
    manager.register(probe)
    try:
        assert page_for("viewer_user", roles=["viewer"]).get(f"/r/secretive/{record['id']}").status_code == 200
    finally:
        manager.unregister(probe)
    assert seen and seen[-1]["name"] == "x" and "salary" not in seen[-1]
