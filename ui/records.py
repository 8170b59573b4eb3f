"""The record page: a record's values, the records that link to it, and its history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, request, url_for

from loom.errors import LoomError
from loom.metadata.model import Entity, Field
from loom.ui.audit import record_history
from loom.ui.forms import child_access
from loom.ui.i18n import gettext, label
from loom.ui.pages import pages, redirect_to, render_page
from loom.ui.screens import default_columns, readable_fields, record_title, service

RELATED_ROWS = 10


@dataclass
class RelatedList:
    """Records of ``entity`` whose ``field`` links to the record on the page."""

    entity: Entity
    field: Field
    columns: list[Field]
    records: list[dict[str, Any]]
    count: int
    url: str


def related_lists(entity: Entity, record_id: int) -> list[RelatedList]:
    """Every list of records linking here that the user may read, through a link field
    they may read (else even the count would tell them something)."""
    from loom.ui.screens import context

    result = []
    for source, f in context().live.model.links_to(entity.name):
        if source.child:
            continue
        svc = service(source.name)
        if not svc.access.allowed("read") or f.name not in svc.access.readable():
            continue
        columns = [c for c in readable_fields(svc, default_columns(source)) if c.name != f.name and c.type != "table"]
        wanted = ",".join(dict.fromkeys(["id", *(c.name for c in columns)]))
        key = f"filter[{f.name}][eq]"
        try:
            page = svc.list({key: str(record_id), "limit": str(RELATED_ROWS), "fields": wanted, "count": "exact"})
        except LoomError:
            continue
        url = url_for("pages.list_view", entity=source.name, **{key: record_id})
        result.append(RelatedList(source, f, columns, page.data, page.count or 0, url))
    return result


@pages.get("/r/<entity>/<int:record_id>")
def record_view(entity: str, record_id: int):
    svc = service(entity)
    record = svc.get(record_id)
    readable = svc.access.readable()
    sections = []
    for section in svc.entity.form or ():
        fields = [svc.entity.all_fields[n] for n in section.fields if n in readable and n in svc.entity.all_fields]
        if fields:
            sections.append((label(section) if section.label else "", fields))
    placed = {f.name for _label, fields in sections for f in fields}
    rest = [f for f in svc.entity.fields if f.name in readable and f.name not in placed]
    if rest:
        sections.append(("" if not sections else gettext("More"), rest))
    tables = {}
    for f in svc.entity.table_fields:
        child = svc.model.entity(f.target)
        child_readable = child_access(svc, child).readable()
        tables[f.name] = [c for c in child.fields if c.name in child_readable]
    system = [f for f in svc.entity.standard_fields if f.name in readable and f.name not in ("id", "version")]
    return render_page("record.html", entity=svc.entity, record=record, sections=sections, system=system,
                       title=record_title(svc.entity, record), related=related_lists(svc.entity, record_id),
                       history=record_history(svc.entity, record_id), access=svc.access, tables=tables)


@pages.post("/r/<entity>/<int:record_id>/delete")
def delete_record(entity: str, record_id: int):
    svc = service(entity)
    version = request.form.get("version", "")
    svc.delete(record_id, expected_version=int(version) if version.isdigit() else None)
    flash(gettext("%(entity)s deleted.", entity=label(svc.entity)), "success")
    return redirect_to(url_for("pages.list_view", entity=entity))
