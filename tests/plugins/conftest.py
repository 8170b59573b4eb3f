"""Fixtures for the plugin host's tests: a browser-like client signed in through the
sign-in page, for the hooks that show on the screens."""

from __future__ import annotations

import re

import pytest

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


@pytest.fixture
def page_for(loom_app, make_user):
    """``page_for("wang", superuser=True)``: a test client of a new user, signed in with the
    sign-in form (a session cookie, as a browser)."""
    def sign_in(username: str, *, superuser: bool = False, roles=()):
        make_user(username, password=PASSWORD, superuser=superuser, roles=roles)
        client = loom_app.test_client()
        token = CSRF.search(client.get("/sign-in").get_data(as_text=True)).group(1)
        response = client.post("/sign-in", data={"username": username, "password": PASSWORD, "csrf_token": token})
        assert response.status_code == 303, response.get_data(as_text=True)
        return client
    return sign_in
