"""Fixtures for the permission tests: a database and app shared by the tests of one module
(for the permission matrix, whose hundreds of cases read one world of records), and
signing in to the screens as a browser does."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from loom.app import create_app
from loom.db import create_engine, upgrade
from loom.testing import TEST_DATABASE_ENV, scratch_database_url

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _databases() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(TEST_DATABASE_ENV) else ["sqlite"]


@pytest.fixture(scope="module", params=_databases())
def module_database_url(request, tmp_path_factory) -> Iterator[str]:
    """Like ``loom_database_url``, once per test module."""
    yield from scratch_database_url(request.param, tmp_path_factory.mktemp("shared"))


@pytest.fixture(scope="module")
def module_app(module_database_url, tmp_path_factory):
    """A Loom app on the module's database (no plugins)."""
    engine = create_engine(module_database_url)
    upgrade(engine)
    app = create_app({"ENGINE": engine, "DATABASE_URL": module_database_url,
                      "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")), "SECRET_KEY": "test-secret",
                      "PLUGINS": [], "DISCOVER_PLUGINS": False})
    app.config["TESTING"] = True
    yield app
    engine.dispose()


class ScreenClient:
    """A test client signed in through the sign-in page, sending the CSRF token with every post."""

    def __init__(self, app, username: str, password: str):
        self.client = app.test_client()
        self.token = CSRF.search(self.client.get("/sign-in").get_data(as_text=True)).group(1)
        signed_in = self.post("/sign-in", {"username": username, "password": password})
        assert signed_in.status_code == 303, signed_in.get_data(as_text=True)
        self.token = CSRF.search(self.client.get("/").get_data(as_text=True)).group(1)

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict | None = None, **kwargs):
        return self.client.post(url, data={**(data or {}), "csrf_token": self.token},
                                headers={"X-CSRFToken": self.token}, **kwargs)
