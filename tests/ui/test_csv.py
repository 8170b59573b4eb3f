"""Every CSV Loom writes guards cells a spreadsheet would run as a formula: text starting
with =, +, -, @, TAB or CR, also when it is a linked record's title or a rendered JSON value."""

from __future__ import annotations

import csv
import io

import pytest

from loom.csvfile import safe_cell
from loom.principal import Principal
from loom.records.door import record_context
from loom.records.service import RecordService

from .conftest import PASSWORD, sign_in

HOSTILE = ["=HYPERLINK(\"http://evil\",\"x\")", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)",
           "\t=1+1", "\r=1+1"]


@pytest.fixture
def hostile(loom_app, apply_metadata, make_entity, make_user):
    """Accounts named with hostile text, and deals linking to them and naming them."""
    apply_metadata(
        make_entity("account", [{"name": "name", "type": "string", "required": True}], title_field="name"),
        make_entity("deal", [{"name": "title", "type": "string"}, {"name": "note", "type": "string"},
                             {"name": "amount", "type": "decimal"}, {"name": "tags", "type": "json"},
                             {"name": "account", "type": "link", "target": "account"}], title_field="title"),
    )
    make_user("admin", superuser=True, password=PASSWORD)
    with loom_app.app_context():
        context = record_context(Principal.system("test"))
        accounts = RecordService(context, "account").bulk_create([{"name": text} for text in HOSTILE])
        RecordService(context, "deal").bulk_create([
            {"title": f"deal {i}", "note": text, "amount": "-12.50", "tags": [text], "account": account}
            for i, (text, account) in enumerate(zip(HOSTILE, accounts, strict=True))])


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def _assert_guarded(cells: list[str]) -> None:
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), repr(cell)


def test_the_api_export_guards_strings_link_titles_and_json(loom_app, hostile, client_for):
    response = client_for("admin").get("/api/v1/deal/_export?format=csv&sort=id")
    assert response.status_code == 200
    rows = _rows(response.get_data(as_text=True))
    assert len(rows) == len(HOSTILE)
    _assert_guarded([row["note"] for row in rows])
    _assert_guarded([row["account"] for row in rows])
    assert [row["account"] for row in rows] == ["'" + text for text in HOSTILE]
    assert rows[0]["amount"] == "-12.5000"  # a number keeps its sign


def test_the_screens_export_guards_strings_and_link_titles(loom_app, hostile):
    admin = sign_in(loom_app, "admin")
    response = admin.get("/r/deal/_export?format=csv&sort=id")
    assert response.status_code == 200
    rows = _rows(response.get_data(as_text=True))
    assert len(rows) == len(HOSTILE)
    columns = rows[0].keys()
    note = next(c for c in columns if c.lower() == "note")
    account = next(c for c in columns if c.lower() == "account")
    _assert_guarded([row[note] for row in rows])
    assert [row[account] for row in rows] == ["'" + text for text in HOSTILE]


def test_the_guard():
    assert [safe_cell(v) for v in ("-12.5", "+3", "1e5", "-", "- 1", "\t5", "=1", "a=b", 7, None)] == [
        "-12.5", "+3", "1e5", "'-", "'- 1", "'\t5", "'=1", "a=b", 7, None]
