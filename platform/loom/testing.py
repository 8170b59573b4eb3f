"""Loom's pytest plugin: fixtures for testing Loom itself and plugins written for it.

Installed with Loom (entry point ``pytest11``). Every test gets a fresh database: a
SQLite file by default, and also PostgreSQL when ``LOOM_TEST_DATABASE_URL`` is set (each
test then runs once per database, in a schema of its own that is dropped afterwards).

Fixtures:
    loom_database_url  the URL of the test's database
    loom_engine        an engine on it, with Loom's own tables and those of ``loom_plugins`` created
    loom_app           a Loom app on that engine (plugins: only ``loom_plugins``)
    loom_client        a test client signed in as a superuser (``admin``)
    anonymous_client   a test client with no credentials
    make_user          creates a user: make_user("wang", roles=["sales_rep"], team="east")
    client_for         a test client signed in (bearer token) as a user: client_for("wang")
    loom_plugins       plugin objects to register (override to add yours)
    make_entity        builds an entity document: make_entity("thing", [{"name": ..., "type": ...}])
    apply_metadata     publishes documents: apply_metadata(doc, ...) -> Plan
    set_plugin_settings  saves a plugin's settings: set_plugin_settings("my_plugin", api_key="...")

And ``sign_webhook(secret, body)``: the ``X-Loom-Signature`` header value a sender puts on
a webhook call.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from loom.app import create_app
from loom.db import create_engine
from loom.plugins import plugin_manager
from loom.plugins.migrations import upgrade
from loom.plugins.webhooks import sign
from loom.schema.service import model_from_documents

TEST_DATABASE_ENV = "LOOM_TEST_DATABASE_URL"


def _databases() -> list[str]:
    databases = ["sqlite"]
    if os.environ.get(TEST_DATABASE_ENV):
        databases.append("postgresql")
    return databases


def scratch_database_url(database: str, folder) -> Iterator[str]:
    """A database of its own for tests: a SQLite file in ``folder``, or (``database`` is
    "postgresql") a schema of its own in LOOM_TEST_DATABASE_URL's database, dropped when the
    generator is closed."""
    if database == "sqlite":
        yield f"sqlite:///{folder / 'loom-test.db'}"
        return
    base = os.environ[TEST_DATABASE_ENV]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture(params=_databases())
def loom_database_url(request, tmp_path) -> Iterator[str]:
    yield from scratch_database_url(request.param, tmp_path)


def sign_webhook(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Loom-Signature`` header for a webhook call with ``body``, signed now (or at
    ``timestamp``, to test a stale call)."""
    import time

    return sign(secret, body, int(time.time()) if timestamp is None else timestamp)


@pytest.fixture
def loom_engine(loom_database_url, loom_plugins) -> Iterator[sa.Engine]:
    engine = create_engine(loom_database_url)
    upgrade(engine, plugin_manager(loom_plugins, discover=False))
    yield engine
    engine.dispose()


@pytest.fixture
def loom_plugins() -> list[object]:
    return []


@pytest.fixture
def loom_app(loom_engine, loom_plugins, tmp_path):
    app = create_app({
        "ENGINE": loom_engine,
        "DATABASE_URL": str(loom_engine.url),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "test-secret",
        "PLUGINS": loom_plugins,
        "DISCOVER_PLUGINS": False,
    })
    app.config["TESTING"] = True
    return app


@pytest.fixture
def make_user(loom_app):
    """Create a user (and the team, if it does not exist yet); returns the user's id."""
    identity = loom_app.extensions["loom"].identity

    def make(username: str, *, roles=(), team: str | None = None, parent_team: str | None = None,
             password: str | None = None, superuser: bool = False) -> int:
        if team is not None and team not in {t["name"] for t in identity.list_teams()}:
            identity.create_team(team, parent=parent_team)
        return identity.create_user(username, password=password, roles=roles, team=team, is_superuser=superuser)
    return make


@pytest.fixture
def client_for(loom_app):
    """A test client that sends a fresh API token of ``username`` with every request."""
    identity = loom_app.extensions["loom"].identity

    def client(username: str, *, read_only: bool = False):
        token = identity.create_token(username, read_only=read_only).token
        test_client = loom_app.test_client()
        test_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return test_client
    return client


@pytest.fixture
def loom_client(make_user, client_for):
    make_user("admin", superuser=True)
    return client_for("admin")


@pytest.fixture
def anonymous_client(loom_app):
    return loom_app.test_client()


@pytest.fixture
def set_plugin_settings(loom_app):
    """Save settings of a plugin (checked against its schema, secrets sealed)."""
    def set_settings(plugin: str, **values: Any) -> None:
        loom_app.extensions["loom"].settings.update(plugin, values, actor="test")
    return set_settings


@pytest.fixture
def make_entity():
    def make(name: str, fields: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"kind": "entity", "name": name, "fields": fields, **extra}
    return make


@pytest.fixture
def apply_metadata(loom_app):
    """Publish documents as the live metadata; returns the plan that was carried out."""
    def apply(*documents: dict[str, Any], author: str = "test"):
        model = model_from_documents(documents)
        return loom_app.extensions["loom"].metadata.apply(model, author=author)
    return apply
