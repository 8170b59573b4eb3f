"""Fixtures for the screens: the demo app's metadata with a few people and records, and
test clients signed in through the sign-in page (session cookie and CSRF token, as a
browser would)."""

from __future__ import annotations

import re
from importlib.resources import as_file, files

import pytest

from loom.identity.principal import Principal
from loom.records.api import record_context
from loom.records.service import RecordService

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse battery"


class PageClient:
    """A browser-like client: signed in by the form, sends the CSRF token with every post."""

    def __init__(self, client):
        self.client = client
        self.token = ""

    def get(self, url, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url, data=None, htmx: str | None = None, **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        headers["X-CSRFToken"] = self.token
        if htmx is not None:
            headers.update({"HX-Request": "true", "HX-Target": htmx})
        return self.client.post(url, data={**(data or {}), "csrf_token": self.token}, headers=headers, **kwargs)

    def hx(self, url, target: str = "main"):
        return self.client.get(url, headers={"HX-Request": "true", "HX-Target": target})


def sign_in(app, username: str, password: str = PASSWORD) -> PageClient:
    client = PageClient(app.test_client())
    page = client.get("/sign-in").get_data(as_text=True)
    client.token = CSRF.search(page).group(1)
    response = client.post("/sign-in", {"username": username, "password": password})
    assert response.status_code == 303, response.get_data(as_text=True)
    client.token = CSRF.search(client.get("/").get_data(as_text=True)).group(1)
    return client


@pytest.fixture
def demo(loom_app, make_user):
    """The demo app's metadata and roles, one user per role and a few records; returns
    ``{"customers": [ids], "products": [ids], "users": {name: id}}``."""
    loom = loom_app.extensions["loom"]
    with as_file(files("loom.seed").joinpath("crm")) as folder:
        loom.metadata.apply(loom.metadata.load_directory(folder), author="test")
    users = {
        "admin": make_user("admin", password=PASSWORD, superuser=True),
        "wang": make_user("wang", roles=["sales_rep"], team="east", password=PASSWORD),
        "zhao": make_user("zhao", roles=["sales_rep"], team="east", password=PASSWORD),
        "zhang": make_user("zhang", roles=["finance"], password=PASSWORD),
        "liu": make_user("liu", roles=["service_agent"], password=PASSWORD),
    }
    with loom_app.app_context():
        context = record_context(Principal.system("test"))
        customers = RecordService(context, "customer").bulk_create([
            {"name": "Acme Trading", "level": "A", "region": "east", "credit_limit": "500000.00",
             "owner": users["wang"], "industry": "retail"},
            {"name": "Beta Logistics", "level": "B", "region": "north", "credit_limit": "120000.00",
             "owner": users["wang"], "industry": "logistics"},
            {"name": "Gamma Hotels", "level": "C", "region": "east", "credit_limit": "80000.00",
             "owner": users["zhao"], "industry": "hospitality"},
        ])
        products = RecordService(context, "product").bulk_create([
            {"sku": "AC-1", "name": "Air conditioner", "price": "2999.00", "cost": "2100.00"},
            {"sku": "WM-2", "name": "Washing machine", "price": "1999.00", "cost": "1500.00"},
        ])
    return {"customers": customers, "products": products, "users": users}


@pytest.fixture
def page_client(loom_app, demo):
    """``page_client("wang")``: a signed-in page client for a demo user."""
    return lambda username: sign_in(loom_app, username)
