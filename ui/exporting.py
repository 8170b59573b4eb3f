"""Export of a list: the current view's filters, search and sort, as CSV or Excel,
streamed, with only the fields the user may read (the record service's export)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

from flask import request, stream_with_context

from loom.csvfile import csv_chunks
from loom.downloads import download
from loom.errors import BadRequest
from loom.metadata.model import Field
from loom.ui.i18n import gettext, label
from loom.ui.lists import local_times, service_args
from loom.ui.pages import pages
from loom.ui.screens import format_context, readable_fields, service
from loom.ui.widgets import form_id

FORMATS = ("csv", "xlsx")
CHUNK = 64 * 1024


def export_value(f: Field, value: Any) -> Any:
    """A value as a spreadsheet cell, as its field type exports it: numbers stay numbers,
    choices show their labels, links the linked record's title, so the file reads well and
    imports back."""
    if value is None or value == []:
        return None
    return f.kind.export(f, value, format_context())


def _csv(header: list[str], rows: Iterator[list[Any]]) -> Iterator[bytes]:
    for chunk in csv_chunks(header, rows, bom=True):
        yield chunk.encode("utf-8")


def _xlsx(header: list[str], rows: Iterator[list[Any]], title: str) -> Iterator[bytes]:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=title[:31] or "export")
    sheet.append(header)
    for row in rows:
        cells = []
        for value in row:
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # text is text, never a formula
            cells.append(cell)
        sheet.append(cells)
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as file:
        workbook.save(file)
        file.seek(0)
        while chunk := file.read(CHUNK):
            yield chunk


@pages.get("/r/<entity>/_export")
def export_view(entity: str):
    """The list as a file: the view's filters, search and sort; the selected rows only when
    rows were ticked; the view's columns when it names them, else every readable field."""
    svc = service(entity)
    fmt = request.args.get("format", "csv")
    if fmt not in FORMATS:
        raise BadRequest(gettext("Choose CSV or Excel (xlsx)."))
    args = local_times(svc.entity, service_args(request.args))
    for key in ("limit", "cursor"):
        args.poplist(key)
    ids = [str(i) for raw in request.args.getlist("ids") if (i := form_id(raw)) is not None]
    if ids:
        args.add("filter[id][in]", ",".join(ids))
    query = svc.parse_query(args, action="export")
    wanted = [n.strip() for raw in request.args.getlist("columns") for n in raw.split(",") if n.strip()]
    columns = [f for f in readable_fields(svc, wanted or list(svc.entity.all_fields))
               if f.stored and f.name != "version"]
    if not any(f.name == "id" for f in columns):
        columns.insert(0, svc.entity.field("id"))
    query.fields = [f.name for f in columns]
    records = svc.export(query)
    first = next(records, None)  # permission and query errors surface before streaming starts

    def rows() -> Iterator[list[Any]]:
        if first is None:
            return
        for record in (first, *()):
            yield [export_value(f, record.get(f.name)) for f in columns]
        for record in records:
            yield [export_value(f, record.get(f.name)) for f in columns]

    header = [label(f) for f in columns]
    body = _csv(header, rows()) if fmt == "csv" else _xlsx(header, rows(), label(svc.entity))
    return download(stream_with_context(body), f"{entity}.{fmt}", fmt)
