"""SQL statements per request: what one API write, one form save and one read cost the
database, counted exactly, so a change to the write path can show what it saved.

It builds a small generated app on a fresh SQLite database (and on PostgreSQL with
``--pg-url``): customers, products, and sales orders with a link to a customer and a
child table of lines (each line links a product), like the demo's sales order. Then it
makes each request in process (Flask's test client, no HTTP), once to warm every cache
and ``--repeat`` times counted, and prints one table per database.

What is counted, on the app's one engine:

- **statements**: every ``before_cursor_execute`` event, i.e. every SQL string
  SQLAlchemy hands to the driver, split by its first word. On SQLite that includes the
  ``BEGIN`` / ``BEGIN IMMEDIATE`` Loom issues itself and every ``SAVEPOINT`` /
  ``RELEASE`` / ``ROLLBACK TO``. On PostgreSQL psycopg sends ``BEGIN`` on its own before
  a transaction's first statement; that one is not visible and not counted.
- **commits** and **rollbacks**: SQLAlchemy's connection-level ``commit`` / ``rollback``
  events (each is a round trip where a transaction was open; not the pool's reset).
- **checkouts**: connections taken from the pool.

The requests, as the API user (bearer token, like ``api_bench.py``) or as a user signed in
through the sign-in page (session cookie and CSRF token, like a browser):

- API create: ``POST /api/v1/sales_order`` with a customer link and two lines;
- API update: ``PATCH`` of one field (``total``) with ``If-Match``;
- API get by id, and an API list page of 10 orders (there are always more than 10);
- form create: the htmx ``POST /r/sales_order/new`` a browser sends after filling the new
  form and adding two lines; the form, rows and fields are read from the rendered pages,
  so the post holds exactly what the page holds (titles of the picked links included);
- form update: the htmx ``POST /r/sales_order/<id>/edit`` of the rendered edit form with
  one field (``total``) changed; its two lines are sent back unchanged, as a browser does;
- screen list page and record page (``GET``, whole page).

Only the counted request itself is counted: the page GETs that come before a form save
and the page the browser loads after it are not.

    python bench/statements.py
    python bench/statements.py --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test --repeat 5

Everything it creates (a temporary SQLite file, the PostgreSQL schema
``bench_statements``) is removed at the end. It exits 1 if a count differs between the
counted repeats (the number would not be reproducible).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import sqlalchemy as sa
from benchlib import loom_revision, machine, scratch_database
from werkzeug.datastructures import MultiDict

SCHEMA = "bench_statements"
USER = "counter"
PASSWORD = "correct horse battery"
ROLE = "order_desk"
ORDERS = "/api/v1/sales_order"
#: orders made before counting, so the list page is always full
ORDERS_BEFORE = 12
LIST_LIMIT = 10
#: statement kinds shown as their own columns, in this order; the rest is "other"
KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "SAVEPOINT")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- the app --------------------------------------------------------------------------------

def documents() -> list[dict[str, Any]]:
    """Customer, product, sales order with a lines table, and a role that may do all of it."""
    def entity(name: str, title: str, fields: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
        return {"kind": "entity", "name": name, "title_field": title, "fields": fields, **more}

    entities = [
        entity("customer", "name", [
            {"name": "name", "type": "string", "required": True, "max_length": 200},
            {"name": "city", "type": "string", "max_length": 100}]),
        entity("product", "name", [
            {"name": "sku", "type": "string", "required": True, "unique": True, "max_length": 40},
            {"name": "name", "type": "string", "required": True, "max_length": 200},
            {"name": "price", "type": "money", "currency": "CNY", "min": 0}]),
        entity("sales_order_line", "product", [
            {"name": "product", "type": "link", "target": "product", "required": True},
            {"name": "quantity", "type": "decimal", "precision": 12, "scale": 2},
            {"name": "unit_price", "type": "money", "currency": "CNY", "min": 0}], child=True),
        entity("sales_order", "number", [
            {"name": "number", "type": "string", "required": True, "unique": True, "max_length": 20},
            {"name": "customer", "type": "link", "target": "customer", "required": True},
            {"name": "order_date", "type": "date"},
            {"name": "status", "type": "select", "default": "draft",
             "options": [{"value": v} for v in ("draft", "submitted", "approved")]},
            {"name": "total", "type": "money", "currency": "CNY", "min": 0},
            {"name": "lines", "type": "table", "target": "sales_order_line"}],
            list={"sort": "-id"}),
    ]
    everything = {"actions": ["read", "create", "update", "delete"], "scope": "all"}
    role = {"kind": "role", "name": ROLE,
            "permissions": {name: everything for name in ("customer", "product", "sales_order")}}
    return [*entities, role]


class StatementCounter:
    """Counts what one engine sends: statements by kind, commits, rollbacks, checkouts."""

    def __init__(self, engine: sa.Engine):
        self.kinds: Counter[str] = Counter()
        self.texts: list[str] = []
        self.commits = self.rollbacks = self.checkouts = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "rollback", self._rollback)
        sa.event.listen(engine.pool, "checkout", self._checkout)

    def _statement(self, conn, cursor, statement: str, *_: Any) -> None:
        words = statement.lstrip().split(None, 2)
        kind = words[0].upper() if words else ""
        if kind in ("RELEASE", "ROLLBACK"):  # RELEASE SAVEPOINT, ROLLBACK TO SAVEPOINT
            kind = "SAVEPOINT"
        self.kinds[kind if kind in KINDS else "other"] += 1
        self.texts.append(" ".join(statement.split())[:160])

    def _commit(self, *_: Any) -> None:
        self.commits += 1

    def _rollback(self, *_: Any) -> None:
        self.rollbacks += 1

    def _checkout(self, *_: Any) -> None:
        self.checkouts += 1

    def take(self) -> dict[str, Any]:
        """What was counted since the last call, and start again from zero."""
        counted = {"statements": sum(self.kinds.values()), **{k: self.kinds[k] for k in (*KINDS, "other")},
                   "commits": self.commits, "rollbacks": self.rollbacks, "checkouts": self.checkouts,
                   "texts": self.texts}
        self.kinds, self.texts = Counter(), []
        self.commits = self.rollbacks = self.checkouts = 0
        return counted


def build(url: str, workdir: str) -> tuple[Any, sa.Engine, str, dict[str, list[int]]]:
    """Loom's tables, the documents published, the user (password, role, API token) and a
    few customers, products and orders; returns (app, engine, token, ids)."""
    from loom.app import create_app
    from loom.db import create_engine, upgrade
    from loom.schema.service import model_from_documents

    engine = create_engine(url)
    upgrade(engine)
    app = create_app({"DATABASE_URL": url, "ENGINE": engine, "INSTANCE_PATH": os.path.join(workdir, "instance"),
                      "SECRET_KEY": "statements", "DISCOVER_PLUGINS": False})
    loom = app.extensions["loom"]
    loom.metadata.apply(model_from_documents(documents()), author="bench")
    loom.identity.create_user(USER, password=PASSWORD, display_name="Order Desk", roles=[ROLE])
    token = loom.identity.create_token(USER, name="statements").token
    api = app.test_client()
    auth = {"Authorization": f"Bearer {token}"}

    def post(path: str, body: dict[str, Any]) -> int:
        response = api.post(path, json=body, headers=auth)
        if response.status_code != 201:
            raise RuntimeError(f"setting up, POST {path}: {response.status_code} {response.get_data(as_text=True)}")
        return response.get_json()["data"]["id"]

    ids = {"customer": [post("/api/v1/customer", {"name": f"Customer {i}", "city": "Shanghai"}) for i in (1, 2)],
           "product": [post("/api/v1/product", {"sku": f"P-{i}", "name": f"Product {i}", "price": "99.00"})
                       for i in (1, 2)]}
    ids["sales_order"] = [post(ORDERS, order_body(ids, f"SO-SETUP-{i}")) for i in range(ORDERS_BEFORE)]
    return app, engine, token, ids


def order_body(ids: dict[str, list[int]], number: str) -> dict[str, Any]:
    """An order for the first customer with one line of each product."""
    return {"number": number, "customer": ids["customer"][0], "order_date": "2026-01-15", "status": "draft",
            "total": "396.00",
            "lines": [{"product": ids["product"][0], "quantity": "2", "unit_price": "99.00"},
                      {"product": ids["product"][1], "quantity": "2", "unit_price": "99.00"}]}


# -- forms as a browser sends them ----------------------------------------------------------------

class FormFields(HTMLParser):
    """The (name, value) pairs a browser would submit from an HTML page or fragment:
    inputs (checkboxes and radios only when checked, no files or buttons), the selected
    option of each select, textareas; inside ``form_id`` when given."""

    def __init__(self, form_id: str | None = None):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = form_id is None
        self.fields: list[tuple[str, str]] = []
        self._select: tuple[str, list[tuple[str, bool]]] | None = None
        self._option: list[str] | None = None
        self._textarea: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form_id is not None:
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("file", "submit", "button", "reset", "image"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields.append((name, a.get("value", "on" if kind in ("checkbox", "radio") else "")))
        elif tag == "select" and name:
            self._select = (name, [])
        elif tag == "option" and self._select is not None:
            self._option = [a["value"] if "value" in a else None, "selected" in a]
        elif tag == "textarea" and name:
            self._textarea = (name, [])

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea[1].append(data)
        elif self._option is not None and self._option[0] is None:
            self._option[0] = data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.form_id is not None:
            self.inside = False
        elif tag == "option" and self._option is not None and self._select is not None:
            self._select[1].append((self._option[0] or "", self._option[1]))
            self._option = None
        elif tag == "select" and self._select is not None:
            name, options = self._select
            chosen = [v for v, selected in options if selected] or [v for v, _ in options[:1]]
            self.fields += [(name, v) for v in chosen]
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea[0], "".join(self._textarea[1]).removeprefix("\n")))
            self._textarea = None


def form_fields(html: str, form_id: str | None = None) -> list[tuple[str, str]]:
    parser = FormFields(form_id)
    parser.feed(html)
    parser.close()
    return parser.fields


def replace(fields: list[tuple[str, str]], values: dict[str, str]) -> list[tuple[str, str]]:
    """``fields`` with the named ones set to ``values`` (each name must be on the page)."""
    missing = set(values) - {name for name, _ in fields}
    if missing:
        raise RuntimeError(f"the form has no field {sorted(missing)}")
    return [(name, values.get(name, value)) for name, value in fields]


class Browser:
    """A signed-in test client that posts forms the way htmx does (``HX-Request``,
    ``HX-Target: record-form``, the CSRF token in the form and the header)."""

    def __init__(self, app: Any):
        self.client = app.test_client()
        token = CSRF.search(self.page("/sign-in")).group(1)
        response = self.client.post("/sign-in", data={"username": USER, "password": PASSWORD, "csrf_token": token})
        if response.status_code != 303:
            raise RuntimeError(f"signing in: {response.status_code}")
        self.token = CSRF.search(self.page("/")).group(1)

    def page(self, path: str) -> str:
        response = self.client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code}")
        return response.get_data(as_text=True)

    def save(self, path: str, fields: list[tuple[str, str]]) -> int:
        """Post the form; returns the id of the record the browser is sent to."""
        headers = {"HX-Request": "true", "HX-Target": "record-form", "X-CSRFToken": self.token}
        response = self.client.post(path, data=MultiDict(fields), headers=headers, content_type="multipart/form-data")
        location = response.headers.get("HX-Location", "")
        found = re.search(r"/r/sales_order/(\d+)", location)
        if response.status_code >= 300 or not found:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.get_data(as_text=True)[:2000]}")
        return int(found.group(1))


# -- the requests -------------------------------------------------------------------------------

class Requests:
    """Each counted request, with the unmeasured preparation it needs beside it."""

    def __init__(self, app: Any, token: str, ids: dict[str, list[int]], counter: StatementCounter):
        self.api = app.test_client()
        self.auth = {"Authorization": f"Bearer {token}"}
        self.browser = Browser(app)
        self.ids, self.counter = ids, counter
        self.serial = 0

    def counted(self, call: Callable[[], Any]) -> tuple[dict[str, Any], Any]:
        self.counter.take()
        result = call()
        return self.counter.take(), result

    def _api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             expect: int = 200) -> Any:
        response = self.api.open(path, method=method, json=body, headers={**self.auth, **(headers or {})})
        if response.status_code != expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.get_data(as_text=True)[:2000]}")
        return response.get_json()

    def _number(self) -> str:
        self.serial += 1
        return f"SO-{self.serial:05d}"

    def api_create(self) -> dict[str, Any]:
        counts, reply = self.counted(lambda: self._api("POST", ORDERS, order_body(self.ids, self._number()),
                                                       expect=201))
        self.last_api = reply["data"]
        return counts

    def api_update(self) -> dict[str, Any]:
        record = self.last_api
        counts, _ = self.counted(lambda: self._api("PATCH", f"{ORDERS}/{record['id']}", {"total": "400.00"},
                                                   {"If-Match": f'"{record["version"]}"'}))
        return counts

    def api_get(self) -> dict[str, Any]:
        return self.counted(lambda: self._api("GET", f"{ORDERS}/{self.ids['sales_order'][0]}"))[0]

    def api_list(self) -> dict[str, Any]:
        reply_counts, reply = self.counted(lambda: self._api("GET", f"{ORDERS}?limit={LIST_LIMIT}"))
        if len(reply["data"]) != LIST_LIMIT:
            raise RuntimeError(f"the list page held {len(reply['data'])} orders, not {LIST_LIMIT}")
        return reply_counts

    def form_create(self) -> dict[str, Any]:
        customer, products = self.ids["customer"][0], self.ids["product"]
        fields = form_fields(self.browser.page("/r/sales_order/new"), "record-form")
        fields = replace(fields, {"number": self._number(), "customer": str(customer),
                                  "_title.customer": "Customer 1", "order_date": "2026-01-15",
                                  "total": "396.00"})
        for i, product in enumerate(products, 1):
            row = form_fields(self.browser.page("/r/sales_order/_row/lines"))
            key = next(value for name, value in row if name == "lines.row")
            fields += replace(row, {f"lines.{key}.product": str(product), f"_title.lines.{key}.product": f"Product {i}",
                                    f"lines.{key}.quantity": "2", f"lines.{key}.unit_price": "99.00"})
        counts, self.last_form = self.counted(lambda: self.browser.save("/r/sales_order/new", fields))
        return counts

    def form_update(self) -> dict[str, Any]:
        path = f"/r/sales_order/{self.last_form}/edit"
        fields = replace(form_fields(self.browser.page(path), "record-form"), {"total": "400.00"})
        if sum(1 for name, _ in fields if name == "lines.row") != 2:
            raise RuntimeError("the edit form does not hold the order's two lines")
        counts, _ = self.counted(lambda: self.browser.save(path, fields))
        return counts

    def screen_list(self) -> dict[str, Any]:
        return self.counted(lambda: self.browser.page("/r/sales_order"))[0]

    def screen_record(self) -> dict[str, Any]:
        return self.counted(lambda: self.browser.page(f"/r/sales_order/{self.ids['sales_order'][0]}"))[0]


#: (label, method of Requests); writes come in pairs (create, then update of that record)
OPERATIONS = (
    ("API create (link + 2 lines)", "api_create"),
    ("API update (1 field)", "api_update"),
    ("API get by id", "api_get"),
    (f"API list ({LIST_LIMIT} orders)", "api_list"),
    ("form save: create (2 lines)", "form_create"),
    ("form save: update (1 field)", "form_update"),
    ("screen: list page", "screen_list"),
    ("screen: record page", "screen_record"),
)
COLUMNS = ("statements", *(k for k in KINDS), "other", "commits", "rollbacks", "checkouts")


def measure(url: str, workdir: str, repeat: int) -> dict[str, list[dict[str, Any]]]:
    """Every operation once to warm caches, then ``repeat`` times counted."""
    app, engine, token, ids = build(url, workdir)
    try:
        requests = Requests(app, token, ids, StatementCounter(engine))
        for _, method in OPERATIONS:
            getattr(requests, method)()
        runs: dict[str, list[dict[str, Any]]] = {method: [] for _, method in OPERATIONS}
        for _ in range(repeat):
            for _, method in OPERATIONS:
                runs[method].append(getattr(requests, method)())
        return runs
    finally:
        engine.dispose()


def table(runs: dict[str, list[dict[str, Any]]]) -> tuple[list[str], bool]:
    """A Markdown table of the counts; a count that differed between repeats is shown as
    ``min–max`` and makes the second value False."""
    heads = ["statements", "SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "SAVEPOINT*", "other", "commits",
             "rollbacks", "checkouts"]
    lines = ["| request | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    steady = True
    for title, method in OPERATIONS:
        cells = []
        for column in COLUMNS:
            values = [run[column] for run in runs[method]]
            if min(values) == max(values):
                cells.append(str(values[0]))
            else:
                steady = False
                cells.append(f"{min(values)}–{max(values)}")
        cells[0] = f"**{cells[0]}**"
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines, steady


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", help="also count on this PostgreSQL server (schema bench_statements)")
    parser.add_argument("--repeat", type=int, default=3, help="counted repeats of every request (default 3)")
    parser.add_argument("--show", action="append", default=[], metavar="REQUEST",
                        help="also print the statements of one request (e.g. api_create); repeatable")
    parser.add_argument("--json", help="also write the counts to this JSON file")
    args = parser.parse_args(argv)
    known = {method for _, method in OPERATIONS}
    if set(args.show) - known or args.repeat < 1:
        parser.error(f"--show takes one of {', '.join(sorted(known))}; --repeat at least 1")

    print("# SQL statements per request (in process, warm caches)")
    print(f"machine: {machine()}")
    print(f"loom: {loom_revision()}")
    print("SAVEPOINT* counts SAVEPOINT, RELEASE SAVEPOINT and ROLLBACK TO SAVEPOINT; "
          "on PostgreSQL the driver's own BEGIN is not visible")
    report: dict[str, Any] = {"loom": loom_revision(), "repeat": args.repeat, "databases": {}}
    steady_everywhere = True
    for kind in ("sqlite", "postgresql") if args.pg_url else ("sqlite",):
        with scratch_database(kind, args.pg_url or "", SCHEMA) as database:
            runs = measure(database.url, database.workdir, args.repeat)
        lines, steady = table(runs)
        steady_everywhere &= steady
        print(f"\n## {kind} ({args.repeat} counted repeats{'' if steady else '; SOME COUNTS VARIED'})\n")
        print("\n".join(lines))
        for method in args.show:
            print(f"\n{kind} {method}, last repeat:", *runs[method][-1]["texts"], sep="\n    ")
        report["databases"][kind] = {method: [{k: v for k, v in run.items() if k != "texts"} for run in done]
                                     for method, done in runs.items()}
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    if not steady_everywhere:
        print("\nsome counts differed between repeats: not reproducible as they stand", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
