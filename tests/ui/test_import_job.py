"""The import is a background job: it runs in the app's context only, with who acts and
the language of its report passed in, never a request's; the job runner logs a failure
instead of letting it end the thread silently."""

from __future__ import annotations

import io
import logging
import secrets
import threading
import tracemalloc
from dataclasses import replace

import pytest
import sqlalchemy as sa
from flask import g, has_app_context, has_request_context
from openpyxl import Workbook

from loom.jobs import run_job, submit
from loom.ui.importing import run_import, store_job
from loom.ui.models import import_jobs

ZH = lambda en, cn: {"en": en, "zh": cn}  # noqa: E731
CSV = "名称,数量\nLamp,2\nA far too long name,3\nDesk,many\n".encode()


@pytest.fixture
def items(apply_metadata, make_entity, make_user, loom_app):
    apply_metadata(
        make_entity("item", [
            {"name": "name", "type": "string", "label": ZH("Name", "名称"), "required": True, "max_length": 8},
            {"name": "qty", "type": "integer", "label": ZH("Quantity", "数量")},
        ], title_field="name"),
        {"kind": "role", "name": "stocker", "permissions": {"item": {"actions": ["read", "create", "import"]}}},
    )
    make_user("sam", roles=["stocker"])
    return loom_app


def queued_job(app, user_id: int) -> int:
    with app.extensions["loom"].engine.begin() as conn:
        return store_job(conn, user_id=user_id, entity="item", filename="items.csv", file=io.BytesIO(CSV),
                         mapping=["name", "qty"], total=3, status="running")


def job_row(app, job_id: int):
    with app.extensions["loom"].engine.connect() as conn:
        return conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id)).mappings().one()


def names(app):
    with app.extensions["loom"].engine.connect() as conn:
        return conn.execute(sa.text("SELECT name, qty FROM e_item ORDER BY id")).all()


def test_run_import_needs_no_request_and_reports_in_the_users_language(items):
    principal = items.extensions["loom"].identity.principal_for("sam")
    job_id = queued_job(items, principal.user_id)
    assert not has_request_context() and not has_app_context()
    run_import(items, job_id, principal, "zh_CN")
    job = job_row(items, job_id)
    assert (job["status"], job["imported"], job["processed"]) == ("done", 1, 3), job["message"]
    assert names(items) == [("Lamp", 2)]
    reasons = {row["line"]: row["reason"] for row in job["rejected"]}
    assert reasons == {3: "名称: 最多 8 个字符。", 4: "数量: 请输入整数。"}


def test_a_job_is_done_only_once_its_audit_entry_and_statistics_are_written(items, monkeypatch):
    from loom.ui import importing

    principal = items.extensions["loom"].identity.principal_for("sam")
    job_id = queued_job(items, principal.user_id)
    seen = []
    log_import, analyze = importing._log_import, importing.analyze
    monkeypatch.setattr(importing, "_log_import", lambda app, *args: (
        seen.append(("audit entry", job_row(app, job_id)["status"])), log_import(app, *args)))
    monkeypatch.setattr(importing, "analyze", lambda engine, tables: (
        seen.append(("statistics", job_row(items, job_id)["status"])), analyze(engine, tables)))
    run_import(items, job_id, principal, "en")
    # a page that shows the job finished finds its audit entry; a stop before leaves it unfinished
    assert seen == [("audit entry", "running"), ("statistics", "running")]
    assert job_row(items, job_id)["status"] == "done"


def test_an_import_refused_as_a_whole_says_why_in_the_users_language(items):
    principal = items.extensions["loom"].identity.principal_for("sam")
    job_id = queued_job(items, principal.user_id)
    # the job checks again as it runs, as the principal it was given (here one without the role)
    run_import(items, job_id, replace(principal, roles=()), "en")
    job = job_row(items, job_id)
    assert job["status"] == "failed" and job["message"] == "You may not import Item records."
    assert names(items) == []


def test_a_submitted_job_runs_in_the_apps_context_only(items):
    seen = {}

    def job(app, *, number):
        seen.update(app=app, number=number, request=has_request_context(), context=has_app_context(),
                    user=g.get("principal"), thread=threading.current_thread().name)

    with items.test_request_context():
        g.principal = "the request's user"
        submitted = submit(items, "probe", job, number=7)
    assert submitted.wait(10)
    assert seen == {"app": items, "number": 7, "request": False, "context": True, "user": None,
                    "thread": "loom-job-probe"}


def test_a_failing_job_is_logged_not_raised(items, caplog):
    def broken(app):
        raise RuntimeError("the disk is full")

    with caplog.at_level(logging.ERROR, logger="loom.jobs"):
        run_job(items, "broken", broken)
    assert "background job broken failed" in caplog.text and "the disk is full" in caplog.text


# -- files of several parts --------------------------------------------------------------------------

@pytest.fixture
def notes(apply_metadata, make_entity, make_user, loom_app):
    apply_metadata(
        make_entity("note", [
            {"name": "title", "type": "string", "label": ZH("Title", "名称"), "required": True},
            {"name": "body", "type": "text", "label": ZH("Body", "正文")},
        ], title_field="title"),
        {"kind": "role", "name": "writer", "permissions": {"note": {"actions": ["read", "create", "import"]}}},
    )
    make_user("wen", roles=["writer"])
    return loom_app


def _import_file(app, filename: str, content: bytes, mapping: list[str], total: int):
    principal = app.extensions["loom"].identity.principal_for("wen")
    with app.extensions["loom"].engine.begin() as conn:
        job_id = store_job(conn, user_id=principal.user_id, entity="note", filename=filename,
                           file=io.BytesIO(content), mapping=mapping, total=total, status="running")
    run_import(app, job_id, principal, "en")
    job = job_row(app, job_id)
    with app.extensions["loom"].engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT title, body FROM e_note ORDER BY id")).all()
    return job, stored


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_a_file_of_several_parts_is_read_whole_across_their_seams(notes, encoding):
    """The file is kept and read in parts of 1 MiB; characters cut in two by a seam come out whole."""
    from loom.ui.spreadsheets import PART

    rows = [(f"第{i}条", "汉字" * 259 + str(i)) for i in range(2000)]
    content = "".join(f"{title},{body}\n" for title, body in [("名称", "正文"), *rows]).encode(encoding)
    seams = range(PART, len(content), PART)
    assert len(seams) >= 2
    for seam in seams:  # every seam cuts a character in two
        with pytest.raises(UnicodeDecodeError):
            content[:seam].decode(encoding)
    job, stored = _import_file(notes, "notes.csv", content, ["title", "body"], len(rows))
    assert (job["status"], job["imported"], job["rejected"]) == ("done", 2000, []), job["message"]
    assert stored == rows


def test_a_workbook_of_several_parts_is_read_whole(notes):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Title", "Body"])
    rows = [(f"Note {i}", secrets.token_urlsafe(450)) for i in range(3000)]  # hardly compressible
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    assert len(buffer.getvalue()) > 1 << 20
    job, stored = _import_file(notes, "notes.xlsx", buffer.getvalue(), ["title", "body"], len(rows))
    assert (job["status"], job["imported"]) == ("done", 3000), job["message"]
    assert stored == rows


def test_reading_a_stored_file_holds_a_part_of_it_at_a_time(notes):
    """Checking the file's encoding and reading every row of a 24 MiB file never holds
    more than a few MiB of it: a file of a million rows costs no more memory than this."""
    from loom.ui.spreadsheets import read_table, stored_file

    principal = notes.extensions["loom"].identity.principal_for("wen")
    line = "名称 %d,%s\n"
    content = ("title,body\n" + "".join(line % (i, "x" * 100) for i in range(230_000))).encode()
    assert len(content) > 24 << 20
    engine = notes.extensions["loom"].engine
    with engine.begin() as conn:
        job_id = store_job(conn, user_id=principal.user_id, entity="note", filename="big.csv",
                           file=io.BytesIO(content), mapping=["title", "body"], total=230_000)
    del content
    tracemalloc.start()
    try:
        header, rows = read_table("big.csv", stored_file(engine, job_id))
        count = sum(1 for _ in rows)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (header, count) == (["title", "body"], 230_000)
    assert peak < 4 << 20, f"{peak / (1 << 20):.1f} MiB held at once"
