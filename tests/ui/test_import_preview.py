"""The import preview refuses what the import refuses: it tries the rows through the
record service, uniqueness included (against stored records and within the file), and
undoes the attempt."""

from __future__ import annotations

import io
import re
import time

import pytest

from .conftest import PASSWORD, sign_in


@pytest.fixture
def gadgets(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("gadget", [
            {"name": "code", "type": "string", "required": True, "unique": True},
            {"name": "title", "type": "string", "required": True},
        ], title_field="title", label={"en": "Gadget", "zh": "小工具"}),
        {"kind": "role", "name": "clerk", "permissions": {
            "gadget": {"actions": ["read", "create", "import"], "scope": "own"}}},
    )
    make_user("admin", superuser=True, password=PASSWORD)
    make_user("clerk", roles=["clerk"], password=PASSWORD)


def _wait_for(client, job: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        html = client.hx(f"/r/gadget/_import/{job}/progress", target="import-progress").get_data(as_text=True)
        if "every 1s" not in html:
            return html
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def _refusals(html: str) -> dict[int, str]:
    table = re.search(r'<table id="import-refusals">(.*?)</table>', html, re.S)
    rows = re.findall(r"<tr><td>(\d+)</td><td[^>]*>(.*?)</td></tr>", table.group(1)) if table else []
    return {int(line): reason for line, reason in rows}


def test_the_preview_refuses_the_duplicates_the_import_refuses(loom_app, gadgets):
    admin, clerk = sign_in(loom_app, "admin"), sign_in(loom_app, "clerk")
    # stored by someone else: the clerk (scope "own") may not read it, the import still refuses its code
    assert admin.post("/r/gadget/new", {"code": "G-1", "title": "Stored"}, htmx="record-form").status_code == 204
    lines = ["code,title", "G-1,Clashes with a stored one", *(f"N-{i},New {i}" for i in range(2, 20)),
             "N-2,Repeats line 3 of the file", "N-3,"]
    upload = clerk.post("/r/gadget/_import", {"file": (io.BytesIO("\n".join(lines).encode()), "gadgets.csv")},
                        content_type="multipart/form-data")
    job_url = upload.headers["Location"]
    job = int(job_url.rsplit("/", 1)[1])
    page = clerk.get(job_url).get_data(as_text=True)
    previewed = _refusals(page)
    assert sorted(previewed) == [2, 21, 22], page
    assert "3 rows will be refused" in page and "already has this value" in previewed[2]
    assert "already has this value" in previewed[21] and "Title" in previewed[22]
    assert "tried the import of 21 of 21 rows" in page
    # the preview undid its attempt: nothing was stored, the import still has every row to do
    assert "N-5" not in admin.get("/r/gadget").get_data(as_text=True)
    assert clerk.get(job_url).get_data(as_text=True).count("<tr><td>") == page.count("<tr><td>")
    clerk.post(job_url, {"column-0": "code", "column-1": "title"})
    done = _wait_for(clerk, job)
    assert "18 imported" in done and "3 rejected" in done
    reported = re.findall(r"<tr><td>(\d+)</td><td>", done)
    assert [int(line) for line in reported] == sorted(previewed)


def test_a_clean_file_is_previewed_as_clean(loom_app, gadgets):
    clerk = sign_in(loom_app, "clerk")
    upload = clerk.post("/r/gadget/_import", {"file": (io.BytesIO(b"code,title\nA-1,One\nA-2,Two\n"), "ok.csv")},
                        content_type="multipart/form-data")
    page = clerk.get(upload.headers["Location"]).get_data(as_text=True)
    assert "No row will be refused." in page and 'id="import-refusals"' not in page
