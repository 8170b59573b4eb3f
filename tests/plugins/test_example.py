"""The example plugin (plugins/loom_example), through its entry point and every hook it
implements: what the plugin guide walks through works."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import loom
import loom_example
from loom.integrations.actions import action, unregister_action
from loom.metadata import unregister_field_type
from loom.plugins import plugin_manager
from loom.plugins.outbox import deliver_pending
from loom.testing import sign_webhook

SECRET = "example-secret-0123456789"


@pytest.fixture
def loom_plugins():
    yield [loom_example]
    # the field types registry is the process's: the example's "rating" must not outlive
    # its tests, or a later test in this process that adds a "rating" of its own meets it
    for field_type in loom_example.field_types():
        unregister_field_type(field_type.name)
    for declared in loom_example.rule_actions():
        unregister_action(declared.name)


def test_the_example_is_discovered_through_its_entry_point_and_on_only_when_enabled():
    """Needs the editable install to be current (``pip install -e .``)."""
    [entry] = [e for e in entry_points(group="loom.plugins") if e.name == "example"]
    assert entry.load() is loom_example
    assert plugin_manager(enabled="example").get_plugin("example") is loom_example
    # installed with Loom, an example stays off unless named; any plugin can be turned off
    assert plugin_manager(enabled="", disabled="").get_plugin("example") is None
    assert plugin_manager(enabled="example", disabled="example").get_plugin("example") is None


def test_its_migration_made_its_table(loom_engine):
    assert {c["name"] for c in sa.inspect(loom_engine).get_columns("loom_example_events")} == {
        "id", "topic", "entity", "record_id", "outbox_id"}
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version_example")).scalar() == "example_0001"


@pytest.fixture
def thing(apply_metadata, make_entity, loom_client):
    apply_metadata(make_entity("thing", [{"name": "name", "type": "string"}]),
                   make_entity("other", [{"name": "name", "type": "string"}]))
    return loom_client.post("/api/v1/thing", json={"name": "widget"}).get_json()["data"]


def test_record_events_reach_it_once_and_show_on_the_chosen_record_pages(thing, loom_app, loom_engine, loom_client,
                                                                         set_plugin_settings, page_for):
    other = loom_client.post("/api/v1/other", json={"name": "x"}).get_json()["data"]
    loom_client.patch(f"/api/v1/thing/{thing['id']}", json={"name": "gadget"})
    manager = loom_app.extensions["loom"].plugins
    with loom_app.app_context():
        assert len(deliver_pending(loom_engine, manager).delivered) >= 3
        assert deliver_pending(loom_engine, manager).claimed == 0
    set_plugin_settings("example", panel_entities=["thing"])
    admin = page_for("boss", superuser=True)
    page = admin.get(f"/r/thing/{thing['id']}").get_data(as_text=True)
    assert 'id="panel-example"' in page and "2 event(s) of this record delivered" in page
    assert 'id="panel-example"' not in admin.get(f"/r/other/{other['id']}").get_data(as_text=True)


def test_its_route_and_navigation_link_are_for_admins(thing, page_for, make_user, client_for, loom_client):
    assert "Example events" in page_for("boss", superuser=True).get("/").get_data(as_text=True)
    assert "Example events" not in page_for("clerk").get("/").get_data(as_text=True)
    assert loom_client.get("/example/events").get_json() == {"events": []}
    make_user("someone")
    assert client_for("someone").get("/example/events").status_code == 403


def test_its_webhook_needs_a_signature(set_plugin_settings, anonymous_client, loom_client):
    body = b"{}"
    assert anonymous_client.post("/hooks/example/ping", data=body).status_code == 401
    set_plugin_settings("example", webhook_secret=SECRET)
    reply = anonymous_client.post("/hooks/example/ping", data=body,
                                  headers={"X-Loom-Signature": sign_webhook(SECRET, body)})
    assert reply.status_code == 200 and "pong" in reply.get_json()
    assert [e["topic"] for e in loom_client.get("/example/events").get_json()["events"]] == ["webhook.ping"]


def test_its_settings_are_checked(loom_app):
    with pytest.raises(Exception, match="webhook_secret"):
        loom_app.extensions["loom"].settings.update("example", {"webhook_secret": "short"}, actor="test")


def test_its_command(loom_engine, tmp_path, monkeypatch, set_plugin_settings, anonymous_client):
    from loom.app import create_app
    from loom.cli import main

    monkeypatch.setattr(main, "create_app", lambda: create_app({
        "ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "cli"), "SECRET_KEY": "test-secret",
        "PLUGINS": [loom_example], "DISCOVER_PLUGINS": False}))
    result = CliRunner().invoke(main, ["example-events"], catch_exceptions=False)
    assert result.output == "no events yet; 'loom outbox deliver' hands them over\n"
    set_plugin_settings("example", webhook_secret=SECRET)
    anonymous_client.post("/hooks/example/ping", data=b"{}", headers={"X-Loom-Signature": sign_webhook(SECRET, b"{}")})
    assert CliRunner().invoke(main, ["example-events"], catch_exceptions=False).output == "webhook.ping: 1\n"


def test_field_types_its_rating_is_checked_stored_and_shown_as_stars(apply_metadata, make_entity, loom_client,
                                                                    page_for):
    apply_metadata(make_entity("review", [{"name": "title", "type": "string"}, {"name": "stars", "type": "rating"}]))
    created = loom_client.post("/api/v1/review", json={"title": "good", "stars": 4})
    assert created.status_code == 201 and created.get_json()["data"]["stars"] == 4
    refused = loom_client.post("/api/v1/review", json={"title": "too good", "stars": 7})
    assert refused.status_code == 422
    assert "a rating is a whole number from 1 to 5" in str(refused.get_json()["errors"])
    loom_client.post("/api/v1/review", json={"title": "poor", "stars": 1})
    best = loom_client.get("/api/v1/review?filter[stars][gte]=3").get_json()["data"]
    assert [r["title"] for r in best] == ["good"]
    page = page_for("boss", superuser=True).get(f"/r/review/{created.get_json()['data']['id']}")
    assert "★★★★☆" in page.get_data(as_text=True)


def test_rule_actions_its_rate_action_gives_stars_as_the_rule_s_principal(apply_metadata, make_entity, make_user,
                                                                          loom_app):
    apply_metadata(make_entity("review", [{"name": "title", "type": "string"}, {"name": "stars", "type": "rating"}]),
                   {"kind": "role", "name": "critic", "permissions": {"review": {"actions": ["read", "update"]}}},
                   {"kind": "role", "name": "reader", "permissions": {"review": {"actions": ["read"]}}})
    make_user("critic", roles=["critic"])
    make_user("reader", roles=["reader"])
    identity = loom_app.extensions["loom"].identity
    critic, reader = identity.principal_for("critic"), identity.principal_for("reader")
    made = loom.record_service("review", loom.Principal.system("test"), app=loom_app).create({"title": "fine"})
    # registered when the app's plugins were loaded, under the name of the plugin's settings
    rate = action("example.rate")
    assert rate.plugin == "example" and rate.function() is loom_example.rate

    def attempt(principal, stars):
        return rate.function()(loom.ActionCall(
            arguments={"entity": "review", "id": str(made["id"]), "field": "stars", "stars": stars},
            idempotency_key="k-1", delivery_id=1, attempt=1, rule="rate_reviews", principal=principal, app=loom_app))

    assert attempt(critic, 4) == {"id": made["id"], "stars": 4}
    with pytest.raises(loom.PermanentFailure, match="from 1 to 5"):
        attempt(critic, 7)
    with pytest.raises(loom.PermanentFailure, match="example.rate"):
        attempt(reader, 2)
    assert loom.record_service("review", critic, app=loom_app).get(made["id"])["stars"] == 4
