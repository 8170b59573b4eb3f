"""The plugin settings screen and API: a form generated from each plugin's JSON Schema,
checked on save, secrets never shown back (page, API, audit log); the plugin's connection
test (``plugin_test_connection``); who may use them; and rotating the sealing key."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import loom
from loom.app import create_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"
API_KEY = "sk-live-4f9a8b7c6d5e"
SIGNING = "partner-signing-secret-0001"

SCHEMA = {
    "type": "object",
    "title": {"en": "Ledger ERP", "zh": "总账 ERP"},
    "description": {"en": "Sends approved orders to the ledger.", "zh": "把已批准的订单发送到总账。"},
    "properties": {
        "endpoint": {"type": "string", "format": "uri", "title": {"en": "Endpoint", "zh": "接口地址"},
                     "description": {"en": "Where the ledger listens", "zh": "总账监听的地址"}},
        "contact": {"type": "string", "format": "email"},
        "mode": {"type": "string", "enum": ["test", "live"], "title": "Mode"},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "enabled": {"type": "boolean"},
        "api_key": {"type": "string", "minLength": 8, "secret": True, "title": {"en": "API key", "zh": "接口密钥"}},
        "keys": {"type": "object", "propertyNames": {"pattern": "^[a-z]{1,20}$"},
                 "additionalProperties": {"type": "string", "minLength": 16, "secret": True}},
        "regions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["endpoint"],
    "additionalProperties": False,
}


class LedgerPlugin:
    """A plugin with settings of every kind and a connection test that does what its
    settings say: ``mode`` test answers, live raises quoting the key, and an endpoint
    with ``slow`` in it hangs."""

    calls: list[dict] = []

    @loom.hookimpl
    def plugin_settings_schema(self):
        return ("ledger", SCHEMA)

    @loom.hookimpl
    def plugin_test_connection(self, settings):
        self.calls.append(dict(settings))
        if "slow" in settings["endpoint"]:
            time.sleep(3)
        if settings.get("mode") == "live":
            raise ConnectionError(f"the ledger refused key {settings.get('api_key')}")
        return f"ledger at {settings['endpoint']} answered"


class Plain:
    """Settings without a connection test."""

    @loom.hookimpl
    def plugin_settings_schema(self):
        return ("plain", {"type": "object", "properties": {"colour": {"type": "string"}}})


@pytest.fixture
def loom_plugins():
    LedgerPlugin.calls = []
    return [LedgerPlugin(), Plain()]


class Page:
    """A browser-like client signed in with the form; posts carry the CSRF token."""

    def __init__(self, client):
        self.client = client
        self.token = ""

    def get(self, url, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url, data=None, **kwargs):
        return self.client.post(url, data={**(data or {}), "csrf_token": self.token}, **kwargs)


@pytest.fixture
def page_as(loom_app, make_user):
    def sign_in(username: str, *, superuser: bool = False, roles=()) -> Page:
        make_user(username, password=PASSWORD, superuser=superuser, roles=roles)
        page = Page(loom_app.test_client())
        page.token = CSRF.search(page.get("/sign-in").get_data(as_text=True)).group(1)
        assert page.post("/sign-in", {"username": username, "password": PASSWORD}).status_code == 303
        page.token = CSRF.search(page.get("/").get_data(as_text=True)).group(1)
        return page
    return sign_in


@pytest.fixture
def boss(page_as):
    return page_as("boss", superuser=True)


def settings_of(loom_app):
    return loom_app.extensions["loom"].settings


def audit_rows(engine, action: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT actor, changes, detail FROM loom_audit WHERE action = :a ORDER BY seq"), {"a": action}).mappings()]


def stored_text(engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text('SELECT "values" FROM loom_plugin_settings')).scalars().all())


def everything_logged(engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT * FROM loom_audit")).all())


def form(**values) -> dict:
    """The form as a browser sends it: every setting's input, empty unless given."""
    data = {f"v.{name}": "" for name in ("endpoint", "contact", "mode", "batch_size", "ratio", "api_key", "regions")}
    data.update({"m.keys.row": "n1", "m.keys.n1.name": "", "m.keys.n1.secret": ""})
    data.update(values)
    return data


# -- the list and the form ---------------------------------------------------------------------

def test_the_list_shows_every_plugin_with_settings_and_links_to_its_form(boss):
    page = boss.get("/settings/plugins").get_data(as_text=True)
    assert "Ledger ERP" in page and "Sends approved orders to the ledger." in page
    assert 'href="/settings/plugins/ledger"' in page and 'href="/settings/plugins/plain"' in page
    assert 'href="/settings/plugins/http"' in page  # the built-in http.request's signing keys
    assert 'href="/settings/plugins"' in boss.get("/").get_data(as_text=True)  # in the navigation


def test_the_form_has_an_input_of_the_right_kind_for_every_setting(boss):
    reply = boss.get("/settings/plugins/ledger")
    assert reply.status_code == 200
    page = reply.get_data(as_text=True)
    assert re.search(r'<input id="s-endpoint" name="v.endpoint" value=""\s+type="url"', page)
    assert re.search(r'name="v.contact"[^>]*\s+type="email"', page)
    assert re.search(r'<select id="s-mode" name="v.mode".*?<option value="test"\s*>test</option>', page, re.S)
    batch = re.search(r'<input id="s-batch_size"[^>]*>', page).group(0)
    assert 'type="number"' in batch and 'min="1"' in batch and 'max="500"' in batch and 'placeholder="50"' in batch
    assert 'step="any"' in re.search(r'<input id="s-ratio"[^>]*>', page).group(0)
    assert re.search(r'<input id="s-enabled" type="checkbox" name="v.enabled"', page)
    assert re.search(r'<input id="s-api_key" type="password" name="v.api_key" value=""', page)
    assert "Not set." in page
    assert re.search(r'<textarea id="s-regions" name="v.regions"', page) and "One per line." in page
    assert 'name="m.keys.row"' in page and "Add a row" in page
    assert ">Endpoint<" in page and "Where the ledger listens" in page and ">API key<" in page
    assert 'name="csrf_token"' in page
    assert "Test connection" in page and "as saved, not as typed" in page
    assert "Test connection" not in boss.get("/settings/plugins/plain").get_data(as_text=True)


def test_the_screens_speak_chinese(boss):
    boss.post("/language", {"locale": "zh_CN", "next": "/"})
    listing = boss.get("/settings/plugins").get_data(as_text=True)
    assert "插件设置" in listing and "总账 ERP" in listing and "把已批准的订单发送到总账。" in listing
    page = boss.get("/settings/plugins/ledger").get_data(as_text=True)
    assert "接口地址" in page and "总账监听的地址" in page and "接口密钥" in page
    assert "未设置" in page and "测试连接" in page and "保存" in page
    reply = boss.post("/settings/plugins/ledger", form(**{"v.batch_size": "many"}))
    assert reply.status_code == 422
    assert "请输入整数。" in reply.get_data(as_text=True)
    reply = boss.post("/settings/plugins/ledger", form(**{"v.contact": "a@b.example"}))
    assert "此设置为必填项。" in reply.get_data(as_text=True)


# -- saving ----------------------------------------------------------------------------------

def test_saving_types_every_setting_and_audits_the_change(boss, loom_app, loom_engine):
    reply = boss.post("/settings/plugins/ledger", form(**{
        "v.endpoint": " https://ledger.example.com/api ", "v.contact": "ops@example.com", "v.mode": "test",
        "v.batch_size": "20", "v.ratio": "0.25", "v.enabled": "on", "v.api_key": API_KEY,
        "v.regions": "east\n\n north \n", "m.keys.n1.name": "partner", "m.keys.n1.secret": SIGNING}))
    assert reply.status_code == 303 and reply.headers["Location"].endswith("/settings/plugins/ledger")
    with loom_app.app_context():
        assert loom.plugin_settings("ledger") == {
            "endpoint": "https://ledger.example.com/api", "contact": "ops@example.com", "mode": "test",
            "batch_size": 20, "ratio": 0.25, "enabled": True, "api_key": API_KEY,
            "keys": {"partner": SIGNING}, "regions": ["east", "north"]}
    page = boss.get("/settings/plugins/ledger").get_data(as_text=True)
    assert "were saved" in page and "Last saved" in page and "by boss" in page
    assert 'value="https://ledger.example.com/api"' in page and 'value="20"' in page
    assert re.search(r'id="s-enabled" type="checkbox" name="v.enabled" checked', page)
    [entry] = audit_rows(loom_engine, "plugin.settings")
    assert entry["actor"] == "boss"
    changes = entry["changes"] if isinstance(entry["changes"], dict) else json.loads(entry["changes"])
    assert changes["api_key"] == [None, "***"] and changes["keys"] == [None, {"partner": "***"}]
    assert changes["batch_size"] == [None, 20]


def test_a_refused_form_keeps_what_was_typed_but_no_secret_and_saves_nothing(boss, loom_app, loom_engine):
    reply = boss.post("/settings/plugins/ledger", form(**{
        "v.endpoint": "not a url at all", "v.batch_size": "900", "v.ratio": "lots", "v.api_key": "short-secret-7",
        "m.keys.n1.name": "partner", "m.keys.n1.secret": ""}))
    assert reply.status_code == 422
    page = reply.get_data(as_text=True)
    assert "Enter a number." in page                       # the types first: nothing reached the schema
    assert "Enter the secret for this name." in page
    assert 'value="not a url at all"' in page and 'value="900"' in page and 'value="partner"' in page
    assert "short-secret-7" not in page
    reply = boss.post("/settings/plugins/ledger", form(**{
        "v.batch_size": "900", "v.api_key": "short", "v.contact": "ops@example.com"}))
    assert reply.status_code == 422
    page = reply.get_data(as_text=True)
    errors = dict(re.findall(r'<p class="error" id="s-(\w+)-error">([^<]*)</p>', page))
    assert errors["endpoint"] == "This setting is required."
    assert "900 is greater than the maximum of 500" in errors["batch_size"]
    assert "short" not in errors["api_key"]                 # a secret is not quoted back
    assert 'value="ops@example.com"' in page and 'value="short"' not in page
    assert settings_of(loom_app).masked("ledger") == {}
    assert audit_rows(loom_engine, "plugin.settings") == []


def test_an_empty_secret_keeps_the_saved_one_and_remove_clears_it(boss, loom_app, set_plugin_settings):
    set_plugin_settings("ledger", endpoint="https://ledger.example.com", api_key=API_KEY)
    page = boss.get("/settings/plugins/ledger").get_data(as_text=True)
    assert "Set. Leave empty to keep the saved value." in page and API_KEY not in page
    assert boss.post("/settings/plugins/ledger", form(**{"v.endpoint": "https://two.example.com"})).status_code == 303
    with loom_app.app_context():
        assert loom.plugin_settings("ledger")["api_key"] == API_KEY
        assert loom.plugin_settings("ledger")["endpoint"] == "https://two.example.com"
    boss.post("/settings/plugins/ledger", form(**{"v.endpoint": "https://two.example.com", "clear.api_key": "on"}))
    with loom_app.app_context():
        assert "api_key" not in loom.plugin_settings("ledger")
    assert "Not set." in boss.get("/settings/plugins/ledger").get_data(as_text=True)


def test_the_named_secrets_table_adds_keeps_replaces_and_removes(boss, loom_app, set_plugin_settings):
    set_plugin_settings("ledger", endpoint="https://ledger.example.com",
                        keys={"alpha": "alpha-secret-000001", "beta": "beta-secret-0000002"})
    page = boss.get("/settings/plugins/ledger").get_data(as_text=True)
    assert ">alpha<" in page and ">beta<" in page and "alpha-secret" not in page
    rows = re.findall(r'name="m.keys.row" value="(\w+)"', page)
    assert len(rows) == 3  # two saved, one empty to add
    data = form(**{"v.endpoint": "https://ledger.example.com"})
    data["m.keys.row"] = rows + ["nextra"]
    data.update({f"m.keys.{rows[0]}.saved": "1", f"m.keys.{rows[0]}.name": "alpha", f"m.keys.{rows[0]}.secret": "",
                 f"m.keys.{rows[1]}.saved": "1", f"m.keys.{rows[1]}.name": "beta", f"m.keys.{rows[1]}.remove": "on",
                 f"m.keys.{rows[2]}.name": "gamma", f"m.keys.{rows[2]}.secret": "gamma-secret-000003",
                 "m.keys.nextra.name": "", "m.keys.nextra.secret": ""})
    assert boss.post("/settings/plugins/ledger", data).status_code == 303
    with loom_app.app_context():
        assert loom.plugin_settings("ledger")["keys"] == {"alpha": "alpha-secret-000001",
                                                         "gamma": "gamma-secret-000003"}
    # a name the schema refuses, and a secret too short: refused, nothing changes
    data = form(**{"v.endpoint": "https://ledger.example.com", "m.keys.n1.name": "Bad Name!",
                   "m.keys.n1.secret": "another-secret-0004"})
    reply = boss.post("/settings/plugins/ledger", data)
    assert reply.status_code == 422 and "another-secret-0004" not in reply.get_data(as_text=True)
    assert 'value="Bad Name!"' in reply.get_data(as_text=True)
    # an added row, fetched by the form's "Add a row"
    row = boss.get("/settings/plugins/ledger/rows/keys").get_data(as_text=True)
    assert 'type="password"' in row and "data-remove-row" in row
    assert boss.get("/settings/plugins/ledger/rows/endpoint").status_code == 404


def test_the_http_plugins_signing_keys_are_set_on_the_screen(boss, loom_app):
    page = boss.get("/settings/plugins/http").get_data(as_text=True)
    assert 'name="m.signing_keys.row"' in page and "Test connection" not in page
    reply = boss.post("/settings/plugins/http", {"m.signing_keys.row": "n1", "m.signing_keys.n1.name": "erp",
                                                 "m.signing_keys.n1.secret": SIGNING})
    assert reply.status_code == 303
    with loom_app.app_context():
        assert loom.plugin_settings("http") == {"signing_keys": {"erp": SIGNING}}


def test_a_form_without_its_csrf_token_changes_nothing(boss, loom_app):
    reply = boss.client.post("/settings/plugins/ledger", data=form(**{"v.endpoint": "https://x.example.com"}))
    assert reply.status_code == 400
    assert settings_of(loom_app).masked("ledger") == {}


# -- secrets never come back -------------------------------------------------------------------

def test_secrets_appear_in_no_page_api_reply_audit_entry_or_listing(boss, loom_app, loom_engine, loom_client):
    boss.post("/settings/plugins/ledger", form(**{"v.endpoint": "https://ledger.example.com", "v.api_key": API_KEY,
                                                  "v.mode": "live", "m.keys.n1.name": "partner",
                                                  "m.keys.n1.secret": SIGNING}))
    boss.post("/settings/plugins/ledger/test")
    seen = [boss.get(url).get_data(as_text=True) for url in ("/settings/plugins", "/settings/plugins/ledger")]
    seen += [loom_client.get(url).get_data(as_text=True) for url in (
        "/api/v1/_plugins/settings", "/api/v1/_plugins/settings/ledger")]
    seen.append(loom_client.get("/api/v1/_audit?limit=100").get_data(as_text=True))
    seen.append(everything_logged(loom_engine))
    seen.append(stored_text(loom_engine))
    for text in seen:
        assert API_KEY not in text and SIGNING not in text
    # the failing test quoted the key: the message shows *** in its place
    [test_entry] = audit_rows(loom_engine, "plugin.settings.test")
    assert "refused key ***" in str(test_entry["detail"])
    assert "refused key ***" in seen[0]  # the message, shown on the next page


# -- the connection test -----------------------------------------------------------------------

def test_plugin_test_connection_runs_with_the_saved_values_and_is_audited(boss, loom_engine, set_plugin_settings):
    set_plugin_settings("ledger", endpoint="https://ledger.example.com", mode="test", api_key=API_KEY)
    reply = boss.post("/settings/plugins/ledger/test")
    assert reply.status_code == 303
    page = boss.get("/settings/plugins/ledger").get_data(as_text=True)
    assert "Connection test passed: ledger at https://ledger.example.com answered" in page
    assert LedgerPlugin.calls[-1]["api_key"] == API_KEY and LedgerPlugin.calls[-1]["batch_size"] == 50
    set_plugin_settings("ledger", mode="live")
    boss.post("/settings/plugins/ledger/test")
    page = boss.get("/settings/plugins/ledger").get_data(as_text=True)
    assert "Connection test failed: the ledger refused key ***" in page
    entries = audit_rows(loom_engine, "plugin.settings.test")
    details = [e["detail"] if isinstance(e["detail"], dict) else json.loads(e["detail"]) for e in entries]
    assert [(d["plugin"], d["ok"]) for d in details] == [("ledger", True), ("ledger", False)]
    assert all(e["actor"] == "boss" for e in entries)
    assert boss.post("/settings/plugins/plain/test").status_code == 404


def test_a_connection_test_that_hangs_is_reported_after_the_time_limit(loom_app, set_plugin_settings):
    set_plugin_settings("ledger", endpoint="https://slow.example.com")
    started = time.monotonic()
    with loom_app.app_context():
        result = settings_of(loom_app).test_connection("ledger", actor="test", timeout=0.5)
    assert time.monotonic() - started < 2
    assert not result.ok and result.timed_out and "no answer within 0.5 seconds" in result.message


def test_a_connection_test_of_a_plugin_without_settings_stops_the_app(loom_engine, tmp_path):
    class Lonely:
        @loom.hookimpl
        def plugin_test_connection(self, settings):
            return "fine"

    with pytest.raises(loom.LoomError, match="implements plugin_test_connection but declares no settings"):
        create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                    "PLUGINS": [Lonely()], "DISCOVER_PLUGINS": False})


# -- the API ---------------------------------------------------------------------------------

def test_the_api_lists_reads_changes_and_tests(loom_client, loom_app, loom_engine):
    listing = loom_client.get("/api/v1/_plugins/settings").get_json()["data"]
    ledger = next(p for p in listing if p["plugin"] == "ledger")
    assert ledger["has_connection_test"] is True and ledger["updated_at"] is None
    assert ledger["title"] == {"en": "Ledger ERP", "zh": "总账 ERP"}
    reply = loom_client.patch("/api/v1/_plugins/settings/ledger", json={"batch_size": 900})
    assert reply.status_code == 422
    fields = {e["field"]: e["code"] for e in reply.get_json()["errors"]}
    assert fields == {"endpoint": "required", "batch_size": "invalid"}
    reply = loom_client.patch("/api/v1/_plugins/settings/ledger", json={
        "endpoint": "https://ledger.example.com", "api_key": API_KEY, "keys": {"partner": SIGNING}})
    assert reply.status_code == 200
    data = reply.get_json()["data"]
    assert data["values"] == {"endpoint": "https://ledger.example.com", "api_key": "***", "keys": {"partner": "***"}}
    assert data["schema"]["properties"]["api_key"]["secret"] is True and data["updated_by"] == "admin"
    reply = loom_client.patch("/api/v1/_plugins/settings/ledger", json={"api_key": None, "keys": {"partner": None}})
    assert reply.get_json()["data"]["values"] == {"endpoint": "https://ledger.example.com", "keys": {}}
    result = loom_client.post("/api/v1/_plugins/settings/ledger/test").get_json()["data"]
    assert result["ok"] is True and result["message"] == "ledger at https://ledger.example.com answered"
    assert loom_client.post("/api/v1/_plugins/settings/plain/test").status_code == 404
    assert loom_client.get("/api/v1/_plugins/settings/nope").status_code == 404
    assert loom_client.patch("/api/v1/_plugins/settings/ledger", json=[1]).status_code == 400


# -- who may ---------------------------------------------------------------------------------

@pytest.fixture
def rights(apply_metadata, make_entity):
    apply_metadata(make_entity("order", [{"name": "name", "type": "string"}]),
                   {"kind": "role", "name": "plugin_admin", "admin": ["plugins"]},
                   {"kind": "role", "name": "integrator", "admin": ["integrations"]},
                   {"kind": "role", "name": "manager", "admin": ["users", "teams", "roles", "metadata", "audit"],
                    "permissions": {"order": {"actions": ["read", "create", "update", "delete"]}}})


def test_only_superusers_and_the_plugins_admin_right_reach_the_settings(rights, page_as, make_user, client_for,
                                                                       loom_app, loom_engine):
    for who, roles in (("plain", ()), ("manager", ["manager"]), ("integrator", ["integrator"])):
        page = page_as(who, roles=roles)
        assert 'href="/settings/plugins"' not in page.get("/").get_data(as_text=True)
        for url in ("/settings/plugins", "/settings/plugins/ledger", "/settings/plugins/ledger/rows/keys"):
            assert page.get(url).status_code == 403, (who, url)
        assert page.post("/settings/plugins/ledger", form(**{"v.endpoint": "https://x.example.com"})).status_code == 403
        assert page.post("/settings/plugins/ledger/test").status_code == 403
        api = client_for(who)
        assert api.get("/api/v1/_plugins/settings").status_code == 403
        reply = api.patch("/api/v1/_plugins/settings/ledger", json={"endpoint": "https://x.example.com"})
        assert reply.status_code == 403 and reply.get_json()["code"] == "needs_admin"
    assert settings_of(loom_app).masked("ledger") == {} and LedgerPlugin.calls == []
    admin = page_as("keeper", roles=["plugin_admin"])
    assert 'href="/settings/plugins"' in admin.get("/").get_data(as_text=True)
    assert admin.post("/settings/plugins/ledger", form(**{"v.endpoint": "https://x.example.com"})).status_code == 303
    make_user("root", superuser=True)
    read_only = client_for("root", read_only=True)
    assert read_only.get("/api/v1/_plugins/settings/ledger").status_code == 200
    assert read_only.patch("/api/v1/_plugins/settings/ledger", json={"mode": "live"}).status_code == 403
    assert settings_of(loom_app).masked("ledger") == {"endpoint": "https://x.example.com"}


def test_the_integrations_admin_right_reaches_the_deliveries(rights, page_as, client_for):
    integrator = page_as("integrator", roles=["integrator"])
    assert integrator.get("/deliveries").status_code == 200
    assert 'href="/deliveries"' in integrator.get("/").get_data(as_text=True)
    assert client_for("integrator").get("/api/v1/_deliveries").status_code == 200
    for who, roles in (("keeper", ["plugin_admin"]), ("manager", ["manager"])):
        page = page_as(who, roles=roles)
        assert page.get("/deliveries").status_code == 403
        assert 'href="/deliveries"' not in page.get("/").get_data(as_text=True)
        reply = client_for(who).get("/api/v1/_deliveries")
        assert reply.status_code == 403 and reply.get_json()["params"] == {"right": "integrations"}


def test_the_demo_administrator_role_has_both_rights():
    from importlib.resources import files

    import yaml

    roles = {d["name"]: d for d in yaml.safe_load_all(files("loom.seed").joinpath("crm/roles.yaml").read_text())
             if d}
    assert {"plugins", "integrations"} <= set(roles["admin"]["admin"])


# -- rotating the sealing key ------------------------------------------------------------------

def app_with(loom_engine, tmp_path, name: str, **config):
    return create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / name), "SECRET_KEY": "test-secret",
                       "PLUGINS": [LedgerPlugin(), Plain()], "DISCOVER_PLUGINS": False, **config})


def test_secrets_sealed_with_key_a_open_with_b_while_a_is_previous_and_rotate_to_b_alone(loom_engine, tmp_path):
    from cryptography.fernet import Fernet

    from loom.plugins.settings import PluginSettingsError

    key_a, key_b = Fernet.generate_key().decode(), "a passphrase to derive key b from"
    first = app_with(loom_engine, tmp_path, "a", SETTINGS_KEY=key_a)
    first.extensions["loom"].settings.update("ledger", {"endpoint": "https://l.example.com", "api_key": API_KEY,
                                                        "keys": {"partner": SIGNING}}, actor="test")
    sealed_before = stored_text(loom_engine)
    with pytest.raises(PluginSettingsError, match="LOOM_SETTINGS_PREVIOUS_KEYS"):
        app_with(loom_engine, tmp_path, "b0", SETTINGS_KEY=key_b).extensions["loom"].settings.values("ledger")
    both = app_with(loom_engine, tmp_path, "b", SETTINGS_KEY=key_b, SETTINGS_PREVIOUS_KEYS=f" other-key , {key_a}")
    assert both.extensions["loom"].settings.values("ledger")["api_key"] == API_KEY
    assert both.extensions["loom"].settings.rotate(actor="test") == 2
    assert stored_text(loom_engine) != sealed_before and API_KEY not in stored_text(loom_engine)
    alone = app_with(loom_engine, tmp_path, "b1", SETTINGS_KEY=key_b)
    assert alone.extensions["loom"].settings.values("ledger")["keys"] == {"partner": SIGNING}
    with pytest.raises(PluginSettingsError):
        app_with(loom_engine, tmp_path, "a1", SETTINGS_KEY=key_a).extensions["loom"].settings.values("ledger")
    [entry] = audit_rows(loom_engine, "plugin.settings.rotate")
    detail = entry["detail"] if isinstance(entry["detail"], dict) else json.loads(entry["detail"])
    assert detail == {"secrets": 2, "plugins": ["ledger"]}


def test_a_secret_no_key_opens_is_set_again_on_the_form_and_the_test_says_why(loom_engine, tmp_path, make_user):
    old = app_with(loom_engine, tmp_path, "old", SETTINGS_KEY="key a")
    old.extensions["loom"].settings.update("ledger", {"endpoint": "https://l.example.com", "api_key": API_KEY,
                                                      "keys": {"partner": SIGNING}}, actor="test")
    new = app_with(loom_engine, tmp_path, "new", SETTINGS_KEY="key b")
    new.extensions["loom"].identity.create_user("boss", password=PASSWORD, is_superuser=True)
    page = Page(new.test_client())
    page.token = CSRF.search(page.get("/sign-in").get_data(as_text=True)).group(1)
    page.post("/sign-in", {"username": "boss", "password": PASSWORD})
    page.token = CSRF.search(page.get("/").get_data(as_text=True)).group(1)
    assert page.post("/settings/plugins/ledger/test").status_code == 303
    shown = page.get("/settings/plugins/ledger").get_data(as_text=True)
    assert "Connection test failed: the secret setting ledger.api_key was sealed with a key Loom no longer" in shown
    # a form that leaves the unreadable secret alone cannot be saved; one that sets it again can
    rows = re.findall(r'name="m.keys.row" value="(\w+)"', shown)
    reply = page.post("/settings/plugins/ledger", form(**{"v.endpoint": "https://l.example.com"}))
    assert reply.status_code == 422 and "list the old one in LOOM_SETTINGS_PREVIOUS_KEYS" in reply.get_data(as_text=True)
    data = form(**{"v.endpoint": "https://l.example.com", "v.api_key": "a-new-api-key-1"})
    data["m.keys.row"] = rows
    data.update({f"m.keys.{rows[0]}.saved": "1", f"m.keys.{rows[0]}.name": "partner",
                 f"m.keys.{rows[0]}.secret": "a-new-partner-secret-01"})
    assert page.post("/settings/plugins/ledger", data).status_code == 303
    assert new.extensions["loom"].settings.values("ledger")["keys"] == {"partner": "a-new-partner-secret-01"}
    assert new.extensions["loom"].settings.values("ledger")["api_key"] == "a-new-api-key-1"
    # through the API, the same: a change that leaves an unreadable secret is a 409 saying why
    third = app_with(loom_engine, tmp_path, "third", SETTINGS_KEY="key c")
    token = third.extensions["loom"].identity.create_token("boss").token
    reply = third.test_client().patch("/api/v1/_plugins/settings/ledger", json={"mode": "test"},
                                      headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 409 and "LOOM_SETTINGS_PREVIOUS_KEYS" in reply.get_json()["detail"]
    reply = third.test_client().patch("/api/v1/_plugins/settings/ledger", headers={"Authorization": f"Bearer {token}"},
                                      json={"api_key": "a-third-api-key", "keys": {"partner": None}})
    assert reply.status_code == 200


def test_the_old_secret_key_as_a_previous_key_reads_what_it_sealed(loom_engine, tmp_path):
    old = app_with(loom_engine, tmp_path, "old")  # sealed under a key derived from SECRET_KEY
    old.extensions["loom"].settings.update("ledger", {"endpoint": "https://l.example.com", "api_key": API_KEY},
                                           actor="test")
    moved = app_with(loom_engine, tmp_path, "new", SECRET_KEY="a new secret key",
                     SETTINGS_PREVIOUS_KEYS="test-secret")
    assert moved.extensions["loom"].settings.values("ledger")["api_key"] == API_KEY


def test_loom_settings_rotate(loom_engine, tmp_path, monkeypatch):
    from loom.cli import main

    app_with(loom_engine, tmp_path, "a", SETTINGS_KEY="key a").extensions["loom"].settings.update(
        "ledger", {"endpoint": "https://l.example.com", "api_key": API_KEY}, actor="test")
    monkeypatch.setattr(main, "create_app", lambda: app_with(loom_engine, tmp_path, "cli", SETTINGS_KEY="key b"))
    result = CliRunner().invoke(main, ["settings", "rotate"])
    assert result.exit_code == 1 and "ledger.api_key opens with none of the keys" in result.output
    assert "nothing was rotated" in result.output
    monkeypatch.setattr(main, "create_app", lambda: app_with(loom_engine, tmp_path, "cli2", SETTINGS_KEY="key b",
                                                             SETTINGS_PREVIOUS_KEYS="key a"))
    result = CliRunner().invoke(main, ["settings", "rotate"])
    assert result.exit_code == 0 and "sealed 1 secret(s) again under the current key" in result.output
    assert app_with(loom_engine, tmp_path, "b", SETTINGS_KEY="key b").extensions["loom"].settings.values(
        "ledger")["api_key"] == API_KEY
    assert [e["actor"] for e in audit_rows(loom_engine, "plugin.settings.rotate")][0].startswith("cli")


# -- the example plugin's connection test ------------------------------------------------------

@pytest.fixture
def answering():
    """A local HTTP server answering 204 on /ok and 503 elsewhere."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(204 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def example_app(loom_engine, tmp_path):
    import loom_example
    from loom.integrations.actions import unregister_action
    from loom.metadata import unregister_field_type

    yield create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                      "PLUGINS": [loom_example], "DISCOVER_PLUGINS": False})
    # the example's field type and action are the process's: they must not outlive this test
    for field_type in loom_example.field_types():
        unregister_field_type(field_type.name)
    for declared in loom_example.rule_actions():
        unregister_action(declared.name)


def test_the_example_plugins_connection_test(example_app, answering):
    app = example_app
    settings = app.extensions["loom"].settings
    with app.app_context():
        result = settings.test_connection("example", actor="test")
        assert not result.ok and "webhook_secret is not set" in result.message
        settings.update("example", {"webhook_secret": "example-secret-0123456789"}, actor="test")
        assert settings.test_connection("example", actor="test").message == \
            "webhook secret set; no address to try (ping_url)"
        settings.update("example", {"ping_url": f"{answering}/ok"}, actor="test")
        result = settings.test_connection("example", actor="test")
        assert result.ok and result.message.endswith("answered HTTP 204")
        settings.update("example", {"ping_url": f"{answering}/down"}, actor="test")
        result = settings.test_connection("example", actor="test")
        assert not result.ok and result.message.endswith("answered HTTP 503")
