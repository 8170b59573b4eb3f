"""Fixtures for the screens: the demo app's metadata with a few people and records, and
test clients signed in through the sign-in page (session cookie and CSRF token, as a
browser would)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path

import pytest

from loom.principal import Principal
from loom.records.door import record_context
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


# -- browser tests -------------------------------------------------------------------------------

#: Debian's Chromium; LOOM_CHROMIUM points elsewhere
CHROMIUM = os.environ.get("LOOM_CHROMIUM") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _no_browser(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the browser tests (.ci/run installs chromium)")
    pytest.skip(reason)


@dataclass
class LiveServer:
    url: str
    app: object
    users: dict[str, str]


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        _no_browser(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("the browser tests need Playwright for Python (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _live_server_class():
    """A threaded test server that ends every connection and request thread on close.

    werkzeug's threaded server runs each connection in a daemon thread it does not track:
    a browser's kept-alive connection outlives ``shutdown()``, and its socket, collected
    later, raises a ResourceWarning in whatever test then runs. This one tracks its
    connections, shuts them down on close and joins their threads, so nothing is left."""
    import socket

    from werkzeug.serving import ThreadedWSGIServer

    class LiveWSGIServer(ThreadedWSGIServer):
        daemon_threads = False  # socketserver tracks the threads and joins them in server_close()
        block_on_close = True

        def __init__(self, *args, **kwargs):
            self.connections: set[socket.socket] = set()
            self.connections_lock = threading.Lock()
            super().__init__(*args, **kwargs)

        def process_request(self, request, client_address):
            with self.connections_lock:
                self.connections.add(request)
            super().process_request(request, client_address)

        def shutdown_request(self, request):
            with self.connections_lock:
                self.connections.discard(request)
            super().shutdown_request(request)

        def server_close(self):
            with self.connections_lock:
                open_connections = list(self.connections)
            for connection in open_connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)  # its thread's read returns; the thread ends
                except OSError:
                    pass
            super().server_close()

    return LiveWSGIServer


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """The demo app (SQLite) served over HTTP on a free port, with an English-speaking
    sales rep (``rep``) and a superuser (``boss``) besides the demo users."""
    app, engine = demo_app(tmp_path_factory.mktemp("live"))
    loom = app.extensions["loom"]
    loom.identity.create_user("rep", password=PASSWORD, display_name="Rep", roles=["sales_rep"], team="shanghai")
    loom.identity.create_user("boss", password=PASSWORD, display_name="Boss", is_superuser=True)
    try:
        with serving(app, {"rep": PASSWORD, "boss": PASSWORD}, "loom-live-server") as server:
            yield server
    finally:
        engine.dispose()


def demo_app(instance: Path):
    """An app with the demo installed on a SQLite file in ``instance``, for a live server;
    returns (app, engine)."""
    from loom.app import create_app
    from loom.db import create_engine, upgrade
    from loom.seed.setup import install_demo

    url = f"sqlite:///{instance / 'loom.db'}"
    engine = create_engine(url)
    upgrade(engine)
    app = create_app({"ENGINE": engine, "DATABASE_URL": url, "INSTANCE_PATH": str(instance),
                      "SECRET_KEY": "browser-tests", "DISCOVER_PLUGINS": False})
    install_demo(app.extensions["loom"])
    return app, engine


@contextmanager
def serving(app, logins: dict, name: str) -> Iterator[LiveServer]:
    """``app`` served on a free local port in a thread, for as long as the block runs;
    stopping it ends its connections and joins its threads."""
    server = _live_server_class()("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}", app, logins)
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def screenshots(request) -> Path:
    """The folder CI keeps screenshots in (``LOOM_SCREENSHOTS``)."""
    folder = Path(os.environ.get("LOOM_SCREENSHOTS") or request.config.rootpath / ".ci" / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class BrowserWatch:
    """What a page did that it should not: dialogs opened (a script ran) and console errors."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    expect_dialogs: bool = False


@pytest.fixture
def page(chromium, live_server):
    """A fresh browser tab on the live server. Fails the test on any unexpected dialog or
    console error (a blocked inline script shows up as one)."""
    context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900},
                                   accept_downloads=True, locale="en-US")
    context.set_default_timeout(10_000)
    tab = context.new_page()
    watch = BrowserWatch()

    def on_dialog(dialog):
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        if watch.expect_dialogs and dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    def on_console(message):
        text = message.text
        if message.type == "error" and "Failed to load resource" not in text:
            watch.errors.append(f"{tab.url}: {text}")

    tab.on("dialog", on_dialog)
    tab.on("console", on_console)
    tab.on("pageerror", lambda error: watch.errors.append(str(error)))
    tab.watch = watch
    yield tab
    context.close()
    assert not watch.errors, f"console errors: {watch.errors}"
    unexpected = [d for d in watch.dialogs if not (watch.expect_dialogs and d.startswith("confirm"))]
    assert not unexpected, f"dialogs opened: {unexpected}"


def browser_sign_in(tab, username: str, password: str = PASSWORD, *, language: str = "English") -> None:
    tab.goto("/sign-in")
    tab.get_by_role("button", name=language).click()
    tab.locator("#username").fill(username)
    tab.locator("#password").fill(password)
    tab.locator("form.stacked button[type=submit]").click()
    tab.wait_for_url("**/")
    if tab.get_by_role("button", name=language).get_attribute("aria-pressed") != "true":
        tab.get_by_role("button", name=language).click()
        tab.wait_for_load_state()
