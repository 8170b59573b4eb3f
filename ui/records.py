"""The record page: a record's values, the records that link to it, and its timeline of
changes and comments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import flash, render_template, request, url_for

from loom.errors import LoomError, ValidationError
from loom.metadata.model import Entity, Field
from loom.records.service import form_version
from loom.ui.audit import record_history
from loom.ui.forms import section_label
from loom.ui.i18n import gettext, label
from loom.ui.messages import message_text
from loom.ui.pages import pages, redirect_to, render_page, wants_fragment
from loom.ui.panels import record_panels
from loom.ui.screens import default_columns, display_names, readable_fields, record_title, service

RELATED_ROWS = 10


@dataclass
class RelatedList:
    """Records of ``entity`` whose ``field`` links to the record on the page; with ``via``,
    records one of whose rows (of the table field ``via``) links to it."""

    entity: Entity
    field: Field
    columns: list[Field]
    records: list[dict[str, Any]]
    count: int
    url: str
    via: Field | None = None
    #: the new form of ``entity`` with the link filled in, where the user may create one
    new_url: str | None = None

    @property
    def key(self) -> str:
        return f"{self.via.name}.{self.field.name}" if self.via else self.field.name


def related_lists(entity: Entity, record_id: int) -> list[RelatedList]:
    """Every list of records linking here that the user may read, through a link field
    they may read (else even the count would tell them something). A link from child rows
    (an order line's product) lists the parents (the orders)."""
    from loom.ui.screens import context

    model = context().live.model
    result = []
    for source, f in model.links_to(entity.name):
        via = None
        if source.child:
            source, via = model.parents[source.name]
        svc = service(source.name)
        if not svc.allowed("read"):
            continue
        if via is None and f.name not in svc.readable():
            continue
        if via is not None and (via.name not in svc.readable()
                                or f.name not in svc.readable(model.entity(via.target))):
            continue
        columns = [c for c in readable_fields(svc, default_columns(source))
                   if c.name != f.name and c.type != "table"]
        wanted = ",".join(dict.fromkeys(["id", *(c.name for c in columns)]))
        key = f"filter[{via.name}.{f.name}][eq]" if via else f"filter[{f.name}][eq]"
        try:
            page = svc.list({key: str(record_id), "limit": str(RELATED_ROWS), "fields": wanted, "count": "exact"})
        except LoomError:
            continue
        url = url_for("pages.list_view", entity=source.name, **{key: record_id})
        new_url = (url_for("pages.new_record", entity=source.name, **{f.name: record_id})
                   if via is None and svc.allowed("create") and f.name in svc.writable("create")
                   else None)
        result.append(RelatedList(source, f, columns, page.data, page.count or 0, url, via, new_url))
    return result


def timeline(entity: Entity, record_id: int) -> list[dict[str, Any]]:
    """The record's changes (as far as the user may read them) and its comments, newest
    first; called once the user's access to the record is established (read or commented on)."""
    svc = service(entity.name)
    items = [{**item, "kind": "change"} for item in record_history(entity, record_id)]
    items += [{"kind": "comment", "at": c["created_at"], "actor": c["author"], "actor_id": c["author_id"],
               "body": c["body"], "id": c["id"]} for c in svc.comments(record_id, checked=True)]
    names = display_names({item["actor_id"] for item in items if item["actor_id"] is not None})
    for item in items:
        item["actor"] = names.get(item["actor_id"]) or item["actor"]
    return sorted(items, key=lambda item: item["at"], reverse=True)


@pages.get("/r/<entity>/<int:record_id>")
def record_view(entity: str, record_id: int):
    svc = service(entity)
    record = svc.get(record_id)
    readable = svc.readable()
    sections = []
    for section in svc.entity.layout:
        fields = [svc.entity.all_fields[n] for n in section.fields if n in readable and n in svc.entity.all_fields]
        if fields:
            # the trailing section needs no heading when it is the only one shown
            sections.append(("" if section.trailing and not sections else section_label(section), fields))
    tables = {}
    for f in svc.entity.table_fields:
        child = svc.model.entity(f.target)
        child_readable = svc.readable(child)
        tables[f.name] = [c for c in child.fields if c.name in child_readable]
    system = [f for f in svc.entity.standard_fields if f.name in readable and f.name not in ("id", "version")]
    return render_page("record.html", entity=svc.entity, record=record, sections=sections, system=system,
                       title=record_title(svc.entity, record), related=related_lists(svc.entity, record_id),
                       timeline=timeline(svc.entity, record_id), access=svc, tables=tables,
                       panels=record_panels(svc.entity, record))


@pages.post("/r/<entity>/<int:record_id>/comments")
def comment_on_record(entity: str, record_id: int):
    """Add a comment; htmx gets the timeline back (with the error beside the box, 422),
    a plain form post goes back to the record page."""
    svc = service(entity)
    body, errors, status = request.form.get("body", ""), [], 200
    try:
        svc.add_comment(record_id, body)
        body = ""
    except ValidationError as exc:
        if not wants_fragment():
            raise
        errors, status = [message_text(e) for e in exc.errors], exc.status
    if wants_fragment():
        return render_template("_record_timeline.html", entity=svc.entity, record={"id": record_id},
                               timeline=timeline(svc.entity, record_id), comment=body, comment_errors=errors), status
    flash(gettext("Comment added."), "success")
    return redirect_to(url_for("pages.record_view", entity=entity, record_id=record_id) + "#record-timeline")


@pages.post("/r/<entity>/<int:record_id>/delete")
def delete_record(entity: str, record_id: int):
    svc = service(entity)
    version = request.form.get("version", "")
    svc.delete(record_id, expected_version=form_version(version))
    flash(gettext("%(entity)s deleted.", entity=label(svc.entity)), "success")
    return redirect_to(url_for("pages.list_view", entity=entity))
