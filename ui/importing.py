"""Import of a spreadsheet (CSV or Excel): upload, map columns to fields, preview, then
import in the background in chunks through the record service, with a progress bar that
survives a reload and a report of every rejected row with the reason.

The job lives in the database (``loom_import_jobs``: the mapping, the counts and the
rejected rows; ``loom_import_files``: the file), so any app process can show its progress.
Every row ends up either imported or in the report; nothing is half-imported without
saying so.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import PurePath
from typing import IO, Any

import sqlalchemy as sa
from flask import Flask, current_app, g, render_template, request, url_for
from flask_babel import force_locale

from loom.csvfile import csv_chunks
from loom.db import reading, utcnow, write_transaction
from loom.downloads import download
from loom.errors import BadRequest, Conflict, LoomError, NotFound, ValidationError
from loom.jobs import submit
from loom.metadata.formatting import FormatContext, TextProblem
from loom.metadata.model import Field
from loom.principal import Principal
from loom.records.door import record_service
from loom.records.service import RecordService
from loom.schema.statistics import analyze
from loom.ui.i18n import current_locale, gettext, label, lazy_gettext
from loom.ui.messages import detail_text, message_text
from loom.ui.models import import_jobs
from loom.ui.pages import htmx, pages, redirect_to, render_page
from loom.ui.screens import context, format_context, service
from loom.ui.spreadsheets import read_table, store_file, stored_file

EXTENSIONS = (".csv", ".xlsx")
#: rows created per transaction (one bulk create); progress is saved after each
CHUNK_ROWS = 1000
#: linked records found by title that an import remembers (the most recently used)
LINKS_REMEMBERED = 10_000
PREVIEW_ROWS = 5
#: rows the preview tries to import (and rolls back) to say which will be refused
PREVIEW_CHECK_ROWS = 500
#: a running job not heard from for this long was cut off (its process stopped)
STALE_AFTER = dt.timedelta(minutes=2)
_ROW_INDEX = re.compile(r"^\[(\d+)\]\.?(.*)$")


# -- mapping ------------------------------------------------------------------------------------

def importable_fields(svc: RecordService) -> list[Field]:
    writable = svc.writable("create")
    fields = [f for f in svc.entity.fields
              if f.name in writable and not f.read_only and f.kind.typed]
    # an owner column (username or id) where the standard owner says whose record it is;
    # a row given to someone out of the importer's scope needs transfer (loom.records.ownership)
    if svc.entity.owner_field == "owner" and "owner" in writable:
        fields.append(svc.entity.field("owner"))
    return fields


def _normal(text: str) -> str:
    return re.sub(r"[\s_\-:：()（）*]", "", text).casefold()


def auto_mapping(header: list[str], fields: list[Field]) -> list[str]:
    """For each column, the field whose name or label (in any language) it matches."""
    names: dict[str, str] = {}
    for f in fields:
        for text in (f.name, *f.label.values()):
            names.setdefault(_normal(text), f.name)
    mapping, used = [], set()
    for column in header:
        name = names.get(_normal(column), "")
        if name in used:
            name = ""
        used.add(name)
        mapping.append(name)
    return mapping


# -- converting cells ---------------------------------------------------------------------------

class RowProblem(Exception):
    pass


#: what an imported cell's field type refused, in the interface language
_TEXT_PROBLEMS: dict[str, Callable[[str], str]] = {
    "not_yes_no": lambda value: gettext("“%(value)s” is not yes or no", value=value),
    "not_a_choice": lambda value: gettext("“%(value)s” is not one of the choices", value=value),
    "no_record_named": lambda value: gettext("no record named “%(value)s”", value=value),
}


class Converter:
    """Turns a row of text cells into field values, as each field's type reads text
    (``parse_text``): choices by value or label, yes/no in either language, links by id or
    by the linked record's title (as far as the importing user may read it)."""

    def __init__(self, svc: RecordService, fields: list[Field | None]):
        self.svc = svc
        self.fields = fields
        self._links: OrderedDict[tuple[str, str], int | None] = OrderedDict()
        self._context: FormatContext | None = None

    def row(self, cells: list[str]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        problems = []
        for f, cell in zip(self.fields, cells, strict=False):
            if f is None or cell == "":
                continue
            try:
                data[f.name] = self.value(f, cell)
            except RowProblem as exc:
                problems.append(f"{label(f)}: {exc}")
        if problems:
            raise RowProblem("; ".join(problems))
        return data

    @property
    def context(self) -> FormatContext:
        """The screens' formatting, and a way to find a linked record by its title."""
        if self._context is None:
            self._context = replace(format_context(), find_record=self._record_named)
        return self._context

    def value(self, f: Field, cell: str) -> Any:
        """The cell as its field's type reads imported text."""
        try:
            return f.kind.parse_text(f, cell, self.context)
        except TextProblem as exc:
            said = _TEXT_PROBLEMS.get(exc.code)
            raise RowProblem(said(exc.value) if said is not None else exc.message) from None

    def _record_named(self, target: str, text: str) -> int | None:
        key = (target, text)
        if key in self._links:
            self._links.move_to_end(key)
            return self._links[key]
        found = self._links[key] = self._find(target, text)
        if len(self._links) > LINKS_REMEMBERED:
            self._links.popitem(last=False)
        return found

    def _find(self, target: str, text: str) -> int | None:
        if target == "user":
            for user in current_app.extensions["loom"].identity.list_users():
                if text in (user["username"], user["display_name"]):
                    return user["id"]
            return None
        other = self.svc.other(target)
        title = other.entity.title_field
        if not other.allowed("read") or title not in other.readable():
            return None
        page = other.list({f"filter[{title}][eq]": text, "limit": "2", "fields": "id"})
        return page.data[0]["id"] if len(page.data) == 1 else None


# -- running a job ------------------------------------------------------------------------------

def store_job(conn: sa.Connection, *, user_id: int, entity: str, filename: str, file: IO[bytes],
              mapping: list[str], total: int, status: str = "mapping") -> int:
    """Keep a new import job and its file (``file``, a binary file read from its start, a
    part at a time); returns the job's id."""
    now = utcnow()
    job_id = conn.execute(import_jobs.insert().values(
        user_id=user_id, entity=entity, filename=filename, status=status, mapping=mapping, total=total,
        processed=0, imported=0, rejected=[], created_at=now, updated_at=now).returning(import_jobs.c.id)).scalar_one()
    store_file(conn, job_id, file)
    return job_id


def _save(engine: sa.Engine, job_id: int, **values: Any) -> None:
    with write_transaction(engine) as conn:
        conn.execute(import_jobs.update().where(import_jobs.c.id == job_id).values(**values, updated_at=utcnow()))


def _reasons(errors: list[dict[str, Any]], count: int, svc: RecordService) -> dict[int, str]:
    """Row index -> why it was refused, from a bulk create's ``[i].field`` errors."""
    reasons: dict[int, list[str]] = {}
    for error in errors:
        match = _ROW_INDEX.match(error.get("field", ""))
        if not match or int(match.group(1)) >= count:
            continue
        name = match.group(2).split("[")[0].split(".")[0]
        f = svc.entity.all_fields.get(name)
        prefix = f"{label(f)}: " if f is not None else ""
        reasons.setdefault(int(match.group(1)), []).append(prefix + message_text(error))
    return {i: "; ".join(texts) for i, texts in reasons.items()}


def import_chunk(svc: RecordService, rows: list[tuple[int, list[str], dict[str, Any]]]
                 ) -> tuple[int, list[dict[str, Any]]]:
    """Create the rows that are valid, all in one transaction when possible; returns how
    many were imported and the rejected ones with the reason."""
    rejected: list[dict[str, Any]] = []
    pending = rows
    for _attempt in range(4):
        if not pending:
            return 0, rejected
        try:
            svc.bulk_create([data for _line, _cells, data in pending])
            return len(pending), rejected
        except ValidationError as exc:
            reasons = _reasons(exc.errors, len(pending), svc)
            if not reasons:
                break
            rejected += [{"line": line, "cells": cells, "reason": reasons[i]}
                         for i, (line, cells, _data) in enumerate(pending) if i in reasons]
            pending = [row for i, row in enumerate(pending) if i not in reasons]
        except Conflict:
            break
    # a conflict no row index explains (a duplicate unique value): one row at a time
    imported = 0
    for line, cells, data in pending:
        try:
            svc.create(data)
            imported += 1
        except LoomError as exc:
            reason = _reasons([{**e, "field": f"[0].{e.get('field', '')}"} for e in exc.errors], 1, svc).get(0)
            rejected.append({"line": line, "cells": cells, "reason": reason or detail_text(exc)})
    return imported, rejected


@dataclass
class Tally:
    """Where an import (or its preview) stands: rows read, imported, rejected with the
    reason, and the last line of the last chunk carried out (each row of it and of every
    chunk before it imported or rejected: chunks are carried out in line order, so one
    number says it, however many rows the file has)."""

    processed: int = 0
    imported: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    finished_through: int = 0


def import_rows(svc: RecordService, converter: Converter, rows: Iterable[tuple[int, list[str]]], tally: Tally,
                after_chunk: Callable[[Tally], None] = lambda tally: None) -> None:
    """Convert and create ``(line, cells)`` rows chunk by chunk through the record service,
    counting in ``tally``; the one way rows are imported, shared by the import and its preview."""
    chunk: list[tuple[int, list[str], dict[str, Any]]] = []

    def carry_out() -> None:
        done, refused = import_chunk(svc, chunk)
        tally.imported += done
        tally.rejected += refused
        if chunk:
            tally.finished_through = chunk[-1][0]
        chunk.clear()

    for line, cells in rows:
        try:
            chunk.append((line, cells, converter.row(cells)))
        except RowProblem as exc:
            tally.rejected.append({"line": line, "cells": cells, "reason": str(exc)})
        tally.processed += 1
        if tally.processed % CHUNK_ROWS == 0:
            carry_out()
            after_chunk(tally)
    carry_out()
    tally.rejected.sort(key=lambda r: r["line"])


class _TriedOnly(Exception):
    """Ends a preview's transaction so that it rolls back."""


def preview_import(svc: RecordService, job: Mapping[str, Any]) -> Tally:
    """Import the file's first ``PREVIEW_CHECK_ROWS`` rows exactly as the import will, in a
    transaction that is then rolled back: the same conversion and the record service's own
    checks (required values, formats, links, the row scope, uniqueness against stored
    records and the file's earlier rows), so the preview refuses what the import would."""
    _header, rows = read_table(job["filename"], stored_file(svc.context.engine, job["id"]))
    by_name = {f.name: f for f in importable_fields(svc)}
    converter = Converter(svc, [by_name.get(name) for name in job["mapping"]])
    tally = Tally()
    try:
        # every write of the service joins this transaction (as a savepoint) and goes with it
        with write_transaction(svc.context.engine):
            import_rows(svc, converter, islice(enumerate(rows, start=2), PREVIEW_CHECK_ROWS), tally)
            raise _TriedOnly
    except _TriedOnly:
        pass
    return tally


def run_import(app: Flask, job_id: int, principal: Principal, locale: str) -> None:
    """Import a mapped job as ``principal``: chunk by chunk, saving progress after each,
    the report in ``locale``. A background job (``loom.jobs``): it needs the app and
    nothing of a request, so who acts and the report's language are its arguments."""
    engine = app.extensions["loom"].engine
    with app.app_context(), force_locale(locale):
        with reading(engine) as conn:
            job = conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id)).mappings().one()
        tally = Tally()
        try:
            svc = record_service(job["entity"], principal, app=app)
            svc.require("import")
            header, rows = read_table(job["filename"], stored_file(engine, job_id))
            by_name = {f.name: f for f in importable_fields(svc)}
            converter = Converter(svc, [by_name.get(name) for name in job["mapping"]])
            import_rows(svc, converter, enumerate(rows, start=2), tally,
                        lambda t: _save(engine, job_id, processed=t.processed, imported=t.imported,
                                        rejected=t.rejected))
            _log_import(app, principal, job, tally.imported, len(tally.rejected), "ok")
            if tally.imported:
                # the table may have grown many times over: plan its queries for what it holds now
                analyze(engine, [svc.table.name])
            # "done" comes last: whoever sees it finds the import's audit entry, and a server
            # stopped in between leaves a job shown as interrupted, not one missing its entry
            _save(engine, job_id, status="done", processed=tally.processed, imported=tally.imported,
                  rejected=tally.rejected)
        except Exception as exc:  # the job must end with a state and a reason, whatever failed
            app.logger.exception("import job %s failed", job_id)
            message = detail_text(exc) if isinstance(exc, LoomError) else \
                gettext("The import stopped on an unexpected error.")
            rejected = _with_unfinished(engine, job, tally.rejected, tally.finished_through)
            _save(engine, job_id, status="failed", message=message, imported=tally.imported, rejected=rejected)
            why = exc.detail if isinstance(exc, LoomError) else message  # the audit log keeps Loom's own words
            _log_import(app, principal, job, tally.imported, len(rejected), "error", str(why))


def _with_unfinished(engine: sa.Engine, job: Any, rejected: list[dict[str, Any]], finished_through: int
                     ) -> list[dict[str, Any]]:
    """After a failure, every row not carried out joins the report, so the report and the
    imported rows together account for the whole file."""
    reported = {row["line"] for row in rejected}
    try:
        _header, rows = read_table(job["filename"], stored_file(engine, job["id"]))
        rest = [{"line": line, "cells": cells, "reason": gettext("Not imported: the import stopped before this row.")}
                for line, cells in enumerate(rows, start=2) if line > finished_through and line not in reported]
    except LoomError:
        rest = []
    return sorted(rejected + rest, key=lambda row: row["line"])


def _log_import(app: Flask, principal: Principal, job: Any, accepted: int, rejected: int, outcome: str,
                message: str | None = None) -> None:
    """The import's audit entry: the file, rows accepted and rejected (each accepted row
    also has its own create entry)."""
    detail = {"file": job["filename"], "job": job["id"], "accepted": accepted, "rejected": rejected}
    if message:
        detail["message"] = message
    app.extensions["loom"].audit.add_alone("record.import", principal=principal, entity=job["entity"],
                                           rows=accepted, outcome=outcome, detail=detail)


STATUS_LABELS = {"mapping": lazy_gettext("Waiting for the column mapping"), "queued": lazy_gettext("Waiting to start"),
                 "running": lazy_gettext("Importing…"), "done": lazy_gettext("Import finished"),
                 "failed": lazy_gettext("Import failed"), "interrupted": lazy_gettext("Import interrupted")}


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


# -- pages --------------------------------------------------------------------------------------

def _job(entity: str, job_id: int) -> dict[str, Any]:
    with reading(context().engine) as conn:
        job = conn.execute(sa.select(import_jobs).where(import_jobs.c.id == job_id, import_jobs.c.entity == entity,
                                                        import_jobs.c.user_id == g.principal.user_id)).mappings().first()
    if job is None:
        raise NotFound(gettext("There is no such import."))
    job = dict(job)
    updated = job["updated_at"] if job["updated_at"].tzinfo else job["updated_at"].replace(tzinfo=dt.UTC)
    job["stale"] = job["status"] in ("queued", "running") and utcnow() - updated > STALE_AFTER
    job["rejected_count"] = len(job["rejected"] or [])
    return job


def _importer(entity: str) -> RecordService:
    svc = service(entity)
    svc.require("import")
    svc.require("create")
    return svc


@pages.get("/r/<entity>/_import")
def import_start(entity: str):
    svc = _importer(entity)
    with reading(context().engine) as conn:
        recent = conn.execute(sa.select(import_jobs.c.id, import_jobs.c.filename, import_jobs.c.status,
                                        import_jobs.c.imported, import_jobs.c.created_at)
                              .where(import_jobs.c.entity == entity, import_jobs.c.user_id == g.principal.user_id)
                              .order_by(import_jobs.c.id.desc()).limit(10)).mappings().all()
    return render_page("import_start.html", entity=svc.entity, recent=recent, fields=importable_fields(svc),
                       max_mb=current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024))


@pages.post("/r/<entity>/_import")
def import_upload(entity: str):
    svc = _importer(entity)
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise BadRequest(gettext("Choose a CSV or Excel file to import."))
    # the name is only ever shown (escaped), never used as a path
    filename = PurePath(upload.filename.replace("\\", "/")).name[:200] or "upload"
    if not filename.lower().endswith(EXTENSIONS):
        raise BadRequest(gettext("Only CSV (.csv) and Excel (.xlsx) files can be imported."))
    # werkzeug has spooled the file to disk: it is read from there, a piece at a time
    header, rows = read_table(filename, upload.stream)
    total = sum(1 for _ in rows)
    if total == 0:
        raise BadRequest(gettext("The file has a header row but no data rows."))
    mapping = auto_mapping(header, importable_fields(svc))
    with write_transaction(context().engine) as conn:
        job_id = store_job(conn, user_id=g.principal.user_id, entity=entity, filename=filename, file=upload.stream,
                           mapping=mapping, total=total)
    return redirect_to(url_for("pages.import_job", entity=entity, job_id=job_id))


@pages.get("/r/<entity>/_import/<int:job_id>")
def import_job(entity: str, job_id: int):
    svc = _importer(entity)
    job = _job(entity, job_id)
    preview, header, tried = [], [], None
    if job["status"] == "mapping":
        header, rows = read_table(job["filename"], stored_file(context().engine, job_id))
        tried = preview_import(svc, job)
        reasons = {row["line"]: row["reason"] for row in tried.rejected}
        preview = [(cells, reasons.get(line, "")) for line, cells in islice(enumerate(rows, start=2), PREVIEW_ROWS)]
    return render_page("import_job.html", entity=svc.entity, job=job, header=header, preview=preview, tried=tried,
                       fields=importable_fields(svc))


@pages.post("/r/<entity>/_import/<int:job_id>")
def import_run(entity: str, job_id: int):
    svc = _importer(entity)
    job = _job(entity, job_id)
    if job["status"] != "mapping":
        raise Conflict(gettext("This import has already started."))
    allowed = {f.name for f in importable_fields(svc)}
    mapping = []
    for i in range(len(job["mapping"])):
        name = request.form.get(f"column-{i}", "")
        mapping.append(name if name in allowed else "")
    chosen = [m for m in mapping if m]
    if not chosen:
        raise BadRequest(gettext("Map at least one column to a field."))
    if len(chosen) != len(set(chosen)):
        raise BadRequest(gettext("Each field can take only one column."))
    with write_transaction(context().engine) as conn:
        started = conn.execute(import_jobs.update().where(import_jobs.c.id == job_id, import_jobs.c.status == "mapping")
                               .values(status="running", mapping=mapping, updated_at=utcnow())).rowcount
    if started:
        submit(current_app._get_current_object(), f"import-{job_id}", run_import,
               job_id=job_id, principal=g.principal, locale=current_locale())
    return redirect_to(url_for("pages.import_job", entity=entity, job_id=job_id))


@pages.get("/r/<entity>/_import/<int:job_id>/progress")
def import_progress(entity: str, job_id: int):
    _importer(entity)
    job = _job(entity, job_id)
    html = render_template("_import_progress.html", entity=service(entity).entity, job=job)
    if htmx and job["status"] not in ("queued", "running"):
        # the finished state replaces the polling element, which ends the polling
        return html, 200
    return html


@pages.get("/r/<entity>/_import/<int:job_id>/rejected.csv")
def import_rejected(entity: str, job_id: int):
    _importer(entity)
    job = _job(entity, job_id)
    header, _rows = read_table(job["filename"], stored_file(context().engine, job_id))
    rows = ([row["line"], row["reason"], *row["cells"]] for row in job["rejected"] or [])
    body = "".join(csv_chunks([gettext("Line"), gettext("Reason"), *header], rows, bom=True))
    return download(body.encode("utf-8"), f"{entity}-import-{job_id}-rejected.csv", "csv")
