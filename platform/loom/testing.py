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
    apply_plugin_metadata  publishes the documents the plugins ship, as ``loom init`` does
    fake_clock         the "now" run_deliveries gives the worker: fake_clock.advance(minutes=5)
    run_deliveries     runs what is due now with a worker, synchronously -> its Report
    deliveries         lists deliveries as dicts: deliveries(rule="push_orders", status="dead")
    outbox             lists outbox events as dicts: outbox(topic="record.*")

The plugins under test are named in the ini option ``loom_plugins`` (module names, one a
line, in ``[tool.pytest.ini_options]``), or given by overriding the ``loom_plugins``
fixture.

And ``sign_webhook(secret, body)``: the ``X-Loom-Signature`` header value a sender puts on
a webhook call.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import importlib
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


def pytest_addoption(parser) -> None:
    parser.addini("loom_plugins", type="linelist", default=[],
                  help="Modules the loom_plugins fixture registers as plugins (a plugin's own tests name it).")


@pytest.fixture
def loom_plugins(request) -> list[object]:
    """The plugin objects or modules the app registers: by default the modules the ini
    option ``loom_plugins`` names (none in Loom's own tests). Installed plugins are never
    discovered in tests."""
    return [importlib.import_module(name) for name in request.config.getini("loom_plugins")]


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


@pytest.fixture
def apply_plugin_metadata(loom_app):
    """Publish the documents the plugins of ``loom_plugins`` ship (``metadata_folders``) that
    the live metadata lacks, with the live ones, as ``loom init`` does; returns the plan, or
    None when none was missing. A rule among them needs its ``run_as`` user made first."""
    from loom.plugins.metadata import publish_shipped, shipped_folders

    def apply(author: str = "test"):
        loom = loom_app.extensions["loom"]
        return publish_shipped(loom.metadata, shipped_folders(loom.plugins), author=author)
    return apply


class FakeClock:
    """The time the worker is told it is: the real time moved by an offset that tests
    change. ``now`` starts as the real time and goes on with it; ``advance`` jumps ahead
    (a retry's wait, a schedule's next run) and ``set`` jumps to a given time."""

    def __init__(self) -> None:
        self.offset = dt.timedelta()

    @property
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset

    def advance(self, delta: dt.timedelta | None = None, **units: float) -> dt.datetime:
        """Move on by ``delta`` or by ``timedelta``'s units (``advance(minutes=5)``); returns the new now."""
        self.offset += (delta or dt.timedelta()) + dt.timedelta(**units)
        return self.now

    def set(self, when: dt.datetime) -> dt.datetime:
        """Make it ``when`` now (a naive time is taken as UTC)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        self.offset = when - dt.datetime.now(dt.UTC)
        return self.now


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def run_deliveries(loom_app, fake_clock):
    """Run what is due at ``fake_clock.now`` with one worker, in this thread: scheduled rules
    that are due fire, due deliveries run (retries included) and are recorded, due outbox
    events reach the plugins' consumers and due scheduled jobs run. Returns the worker's
    ``Report`` (``claimed``, ``succeeded``, ``retried``, ``dead``, ``events``, ``jobs``,
    ``rules``). With ``until_settled=True``, the clock is moved on to each retry's due time
    and the worker runs again, until no delivery is pending (every one succeeded or is dead)."""
    from loom.integrations.models import deliveries as table
    from loom.integrations.worker import Report, Worker

    def pending_due_at() -> dt.datetime | None:
        with loom_app.extensions["loom"].engine.connect() as conn:
            due = conn.execute(sa.select(table.c.available_at).where(table.c.status == "pending")
                               .order_by(table.c.available_at).limit(1)).scalar()
        if due is not None and due.tzinfo is None:
            due = due.replace(tzinfo=dt.UTC)
        return due

    def run(*, until_settled: bool = False, max_rounds: int = 100) -> Report:
        worker = Worker(loom_app)
        report = worker.run_due(now=fake_clock.now)
        for _ in range(max_rounds if until_settled else 0):
            due = pending_due_at()
            if due is None:
                break
            if due > fake_clock.now:
                fake_clock.set(due)
            report.add(worker.run_due(now=fake_clock.now))
        else:
            if until_settled and pending_due_at() is not None:
                raise AssertionError(f"deliveries still pending after {max_rounds} rounds of the worker")
        return report
    return run


def _as_dicts(engine: sa.Engine, query: sa.Select) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


@pytest.fixture
def deliveries(loom_app):
    """The deliveries rules made, oldest first, as dicts of their columns (``rule``,
    ``action``, ``plugin``, ``status``, ``attempts``, ``last_error``, ``result``,
    ``idempotency_key``, ``context``, ...), each with its ``attempt_rows`` (``attempt``,
    ``outcome``, ``error``). Filter by any of ``rule``, ``action``, ``plugin``, ``status``,
    ``entity``, ``record_id``."""
    from loom.integrations.models import attempts
    from loom.integrations.models import deliveries as table

    def listing(**filters: Any) -> list[dict[str, Any]]:
        unknown = set(filters) - {"rule", "action", "plugin", "status", "entity", "record_id"}
        if unknown:
            raise TypeError(f"deliveries() filters by rule, action, plugin, status, entity or record_id, "
                            f"not {', '.join(sorted(unknown))}")
        engine = loom_app.extensions["loom"].engine
        query = sa.select(table).order_by(table.c.id)
        for name, value in filters.items():
            query = query.where(table.c[name] == value)
        rows = _as_dicts(engine, query)
        tries = _as_dicts(engine, sa.select(attempts).order_by(attempts.c.delivery_id, attempts.c.attempt))
        for row in rows:
            row["attempt_rows"] = [t for t in tries if t["delivery_id"] == row["id"]]
        return rows
    return listing


@pytest.fixture
def outbox(loom_app):
    """The outbox's events, oldest first, as dicts of their columns (``topic``, ``entity``,
    ``record_id``, ``payload``, ``status``, ``attempts``, ...). ``topic`` filters with a
    pattern (``record.*``, as consumers do); ``entity``, ``record_id`` and ``status`` by
    equality."""
    from loom.events import outbox as table

    def listing(topic: str | None = None, **filters: Any) -> list[dict[str, Any]]:
        unknown = set(filters) - {"entity", "record_id", "status"}
        if unknown:
            raise TypeError(f"outbox() filters by topic, entity, record_id or status, not {', '.join(sorted(unknown))}")
        query = sa.select(table).order_by(table.c.id)
        for name, value in filters.items():
            query = query.where(table.c[name] == value)
        rows = _as_dicts(loom_app.extensions["loom"].engine, query)
        return [row for row in rows if topic is None or fnmatch.fnmatchcase(row["topic"], topic)]
    return listing
