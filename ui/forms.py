"""The record form: sections and columns from metadata, a widget per field type, server
validation shown beside each field, and edit conflicts shown instead of overwritten.

A form never holds a field the user may not read; fields they may read but not change
(or that nobody changes, like ``created_at``) are shown as text and never sent back. The
form is live (``loom.ui.live``): as the user types it shows what the save would compute,
which fields are shown and required, and the rules the record breaks.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, flash, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from loom.errors import LoomError, NotFound, PreconditionFailed
from loom.metadata.model import USER_ENTITY, Entity, Field, FormSection
from loom.records.service import RecordService, form_version
from loom.ui.attachments import store
from loom.ui.i18n import gettext, label
from loom.ui.links import LinkReader, shown_link
from loom.ui.live import Slot, derived, left_to_loom, preview_form
from loom.ui.messages import message_text
from loom.ui.pages import htmx, pages, redirect_to, render_page
from loom.ui.screens import display, format_context, record_title, service
from loom.ui.widgets import ROW_KEY, form_id, read_rows, read_value

LINK_OPTIONS = 10


@dataclass
class FormRow:
    key: str
    id: int | None
    values: dict[str, Any]
    errors: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class FormField:
    field: Field
    name: str
    value: Any
    read_only: bool
    errors: list[str] = field(default_factory=list)
    #: read-only because of the record's current state (``read_only_when``)
    locked: bool = False
    child_fields: list[Field] = field(default_factory=list)
    child_read_only: set[str] = field(default_factory=set)
    rows: list[FormRow] = field(default_factory=list)
    #: shown (``visible_when``) and required (``required``, ``required_when``) for the
    #: record as the form holds it
    visible: bool = True
    required: bool = False

    @property
    def input_id(self) -> str:
        return f"f-{self.name}"

    @property
    def wide(self) -> bool:
        return self.field.kind.wide


@dataclass
class FormView:
    entity: Entity
    sections: list[tuple[str, int, list[FormField]]]
    record_id: int | None = None
    version: int | None = None
    base: str = "{}"
    other_errors: list[str] = field(default_factory=list)
    conflict: list[dict[str, Any]] | None = None
    #: each input place as the last preview of the save saw it, by input id (``loom.ui.live``)
    slots: dict[str, Slot] = field(default_factory=dict)
    #: the preview's messages about the record as a whole
    live_messages: list[str] = field(default_factory=list)
    #: the entity (or a child entity) has business logic: the form previews its save as the
    #: user types; without any, a preview could change nothing on the form
    live: bool = False

    @property
    def fields(self) -> list[FormField]:
        return [ff for _label, _columns, fields in self.sections for ff in fields]


def section_label(section: FormSection) -> str:
    """A section's heading: its label, "More" for the fields the layout leaves out."""
    if section.trailing:
        return gettext("More")
    return label(section) if section.label else ""


def _read_only(svc: RecordService, f: Field, writable: set[str]) -> bool:
    return f.read_only or (f.system and f.name != "owner") or f.name not in writable or not f.kind.editable


def submitted_value(f: Field, form: MultiDict, name: str) -> Any:
    """What the user typed, for showing it again: links keep the title they picked."""
    if f.kind.widget == "link":
        return shown_link(f, form, name)
    return read_value(f, form, name)


def build_form(svc: RecordService, *, record: dict[str, Any] | None = None, form: MultiDict | None = None,
               errors: list[dict[str, Any]] | None = None, initial: dict[str, Any] | None = None,
               live: bool = True) -> FormView:
    """The form of a new record, or of ``record``; with ``form``, showing what the user
    sent (and ``errors``). ``live``: with the state of each field worked out by a preview
    of the save (which fields are shown, required, computed values), as the page shows it."""
    entity = svc.entity
    action = "update" if record is not None else "create"
    readable, writable = svc.readable(), svc.writable(action)
    locked = svc.locked_fields(record["id"]) if record is not None else set()
    writable = writable - locked
    by_field: dict[str, list[str]] = {}
    for error in errors or []:
        by_field.setdefault(error.get("field", ""), []).append(message_text(error))
    placed: set[str] = set()
    sections = []
    for section in entity.layout:
        fields = []
        for name in section.fields:
            f = entity.all_fields.get(name)
            if f is None or name not in readable:
                continue
            read_only = _read_only(svc, f, writable)
            widget = f.kind.widget
            if form is not None and not read_only and widget != "file":
                value = None if widget == "table" else submitted_value(f, form, name)
            elif record is not None:
                value = record.get(name)
            elif initial and name in initial and not read_only:
                value = initial[name]
            else:
                value = f.default
            ff = FormField(f, name, value, read_only, by_field.get(name, []), locked=name in locked,
                           required=f.required)
            placed.add(name)
            if widget == "table":
                _table_rows(svc, ff, record, form, by_field, action, placed)
            fields.append(ff)
        if fields:
            sections.append((section_label(section), section.columns, fields))
    other = [message for name, messages in by_field.items() if name not in placed for message in messages]
    view = FormView(entity, sections, other_errors=other)
    if record is not None:
        view.record_id, view.version = record["id"], record.get("version")
        view.base = json.dumps(editable_values(view, record), ensure_ascii=False, default=str)
    view.live = entity.has_logic or any(svc.model.entity(f.target).has_logic for f in entity.table_fields)
    if live and view.live:
        _live_state(svc, view, record, form, initial)
    return view


def _live_state(svc: RecordService, view: FormView, record: dict[str, Any] | None, form: MultiDict | None,
                initial: dict[str, Any] | None) -> None:
    """Each field's state from a preview of the save of what the form holds; a new form
    shows what Loom would compute and read from linked records for its first values."""
    if form is not None:
        data = collect(view, form, strict=False)
    elif record is None:
        data = {name: value["id"] for name, value in (initial or {}).items() if isinstance(value, dict)}
    else:
        data = {}
    answer = preview_form(svc, view, data, form, None if record is None else record["id"])
    if answer is None:
        return
    found, view.live_messages = answer
    view.slots = {slot.input_id: slot for slot in found}
    for ff in view.fields:
        slot = view.slots.get(ff.input_id)
        if slot is None:
            continue
        ff.visible, ff.required = slot.visible, slot.required
        fresh = record is None and form is None
        if fresh and (derived(ff.field) or (ff.field.default_from and ff.value is None)):
            ff.value = slot.value


def _table_rows(svc, ff: FormField, record, form, by_field, action, placed) -> None:
    child = svc.model.entity(ff.field.target)
    readable, writable = svc.readable(child), svc.writable(action, child)
    ff.child_fields = [c for c in child.fields if c.name in readable]
    ff.child_read_only = {c.name for c in ff.child_fields if _read_only(svc, c, writable)}
    if form is not None and not ff.read_only:
        keys = [k for k in form.getlist(f"{ff.name}.row")]
        rows = read_rows(ff.field, [c for c in ff.child_fields if c.name not in ff.child_read_only], form)
        for key, row in zip(keys, rows, strict=False):
            values = {c.name: submitted_value(c, form, f"{ff.name}.{key}.{c.name}") for c in ff.child_fields
                      if c.name not in ff.child_read_only}
            ff.rows.append(FormRow(key, row.get("id"), values))
    elif record is not None:
        for i, row in enumerate(record.get(ff.name) or []):
            ff.rows.append(FormRow(f"r{i}", row.get("id"), row))
    for i, row in enumerate(ff.rows):
        for c in ff.child_fields:
            path = f"{ff.name}[{i}].{c.name}"
            if path in by_field:
                row.errors[c.name] = by_field[path]
                placed.add(path)
        if f"{ff.name}[{i}]" in by_field:
            ff.errors += by_field[f"{ff.name}[{i}]"]
            placed.add(f"{ff.name}[{i}]")


def _collect_file(view: FormView, ff: FormField, form: MultiDict, files: MultiDict | None,
                  links: LinkReader) -> tuple[bool, Any]:
    """A file changes only when one was chosen or its removal ticked."""
    upload = (files or {}).get(ff.name)
    if upload is not None and upload.filename:
        return True, store(view.entity, ff.field, upload, ff.name)
    return form.get(f"_remove.{ff.name}") == "true", None


def _collect_table(view: FormView, ff: FormField, form: MultiDict, files: MultiDict | None,
                   links: LinkReader) -> tuple[bool, Any]:
    editable = [c for c in ff.child_fields if c.name not in ff.child_read_only]
    rows = links.rows(ff.field, editable, read_rows(ff.field, editable, form))
    keys = [key for key in form.getlist(f"{ff.name}.row") if ROW_KEY.match(key)]
    for key, row in zip(keys, rows, strict=False):
        for c in editable:
            if left_to_loom(c, form, f"{ff.name}.{key}.{c.name}"):
                del row[c.name]
    return True, rows


def _collect_link(view: FormView, ff: FormField, form: MultiDict, files: MultiDict | None,
                  links: LinkReader) -> tuple[bool, Any]:
    return True, links.value(ff.field, ff.name)


#: widgets whose values are more than the form's text: uploads, rows, picked records
_COLLECTORS = {"file": _collect_file, "table": _collect_table, "link": _collect_link}


def collect(view: FormView, form: MultiDict, files: MultiDict | None = None, *,
            strict: bool = True) -> dict[str, Any]:
    """The values to send to the record service: every field the form lets the user edit,
    but for a default read from a linked record that the user has not typed over (Loom
    reads it again). An attachment changes only when a file was chosen or its removal
    ticked; a link whose text names no record refuses the whole save (422). Not ``strict``
    (for a preview): no files, and such a link is left empty."""
    data: dict[str, Any] = {}
    links = LinkReader(form)
    for ff in view.fields:
        if ff.read_only or left_to_loom(ff.field, form, ff.name):
            continue
        if not strict and ff.field.kind.widget == "file":
            continue
        collector = _COLLECTORS.get(ff.field.kind.widget)
        if collector is None:
            data[ff.name] = read_value(ff.field, form, ff.name)
            continue
        sent, value = collector(view, ff, form, files, links)
        if sent:
            data[ff.name] = value
    if strict:
        links.check()
    return data


# -- conflicts ------------------------------------------------------------------------------

def comparable(f: Field, value: Any) -> Any:
    """A value in a form that compares equal however it arrived (record or form): as the
    field's type reads it, then as its input shows it (a time to the minute, in the
    interface's zone); choices in any order. Text the type refuses compares as typed."""
    if value is None or value == "" or value == []:
        return None
    kind = f.kind
    try:
        value = kind.coerce(value, f)
    except ValueError:
        return str(value)
    if isinstance(value, list | tuple):
        return tuple(sorted(map(str, value)))
    if isinstance(value, bool):
        return value
    return kind.edit_text(f, kind.to_json(value), format_context())


def editable_values(view: FormView, record: dict[str, Any]) -> dict[str, Any]:
    result = {}
    for ff in view.fields:
        if ff.read_only:
            continue
        value = record.get(ff.name)
        if ff.field.kind.widget == "table":
            result[ff.name] = [{c.name: _plain(c, row.get(c.name)) for c in ff.child_fields} for row in value or []]
        else:
            result[ff.name] = _plain(ff.field, value)
    return result


def _plain(f: Field, value: Any) -> Any:
    value = comparable(f, value)
    return list(value) if isinstance(value, tuple) else (str(value) if value is not None and not isinstance(value, bool) else value)


def merge_conflict(view: FormView, base: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """Three-way merge of a stale edit: a field only the other person changed takes their
    value; a field only this user changed keeps theirs; a field both changed keeps this
    user's value and is listed for them to check. Returns what the user should see."""
    changes = []
    theirs_all = editable_values(view, current)
    for ff in view.fields:
        if ff.read_only:
            continue
        is_table = ff.field.kind.widget == "table"
        if is_table:
            mine = [{c.name: _plain(c, r.values.get(c.name)) for c in ff.child_fields} for r in ff.rows]
        else:
            mine = _plain(ff.field, ff.value)
        theirs, before = theirs_all.get(ff.name), base.get(ff.name)
        if theirs == before or theirs == mine:
            continue
        # what this user's form held, before a field they left alone takes the other value
        yours = ff.value
        if mine == before:
            outcome = "theirs"
            if is_table:
                ff.rows = [FormRow(f"c{i}", row.get("id"), row) for i, row in enumerate(current.get(ff.name) or [])]
            else:
                ff.value = current.get(ff.name)
        else:
            outcome = "both"
        changes.append({"field": ff.field, "theirs": current.get(ff.name), "outcome": outcome,
                        "mine": None if is_table else yours})
    return changes


# -- pages ----------------------------------------------------------------------------------

def _render_form(view: FormView, status: int = 200, record: dict[str, Any] | None = None):
    context = {"view": view, "entity": view.entity, "record": record,
               "title": record_title(view.entity, record) if record else label(view.entity)}
    if htmx and htmx.target == "record-form":
        return render_template("_form.html", **context), status
    return render_page("form.html", status, **context)


def prefilled_links(svc: RecordService, args: MultiDict) -> dict[str, Any]:
    """Links given in the new form's address (``/new?customer=7``, from a related list on
    the customer's page), with the linked record's title; a record the user may not read
    is left out, the field then stays empty."""
    values: dict[str, Any] = {}
    for name, raw in args.items():
        f, record_id = svc.entity.all_fields.get(name), form_id(raw)
        if f is None or f.kind.widget != "link" or f.system or f.target == USER_ENTITY or record_id is None:
            continue
        target = service(f.target)
        try:
            linked = target.get(record_id)
        except LoomError:
            continue
        values[name] = {"id": linked["id"], "title": record_title(target.entity, linked)}
    return values


@pages.get("/r/<entity>/new")
def new_record(entity: str):
    svc = service(entity)
    svc.require("create")
    return _render_form(build_form(svc, initial=prefilled_links(svc, request.args)))


@pages.post("/r/<entity>/new")
def create_record(entity: str):
    svc = service(entity)
    svc.require("create")
    view = build_form(svc, live=False)
    try:
        record = svc.create(collect(view, request.form, request.files))
    except LoomError as exc:
        if not exc.errors and exc.status not in (409, 422):
            raise
        view = build_form(svc, form=request.form, errors=exc.errors or [exc.as_entry()])
        return _render_form(view, exc.status)
    flash(gettext("%(entity)s saved.", entity=label(svc.entity)), "success")
    return redirect_to(url_for("pages.record_view", entity=entity, record_id=record["id"]))


@pages.get("/r/<entity>/<int:record_id>/edit")
def edit_record(entity: str, record_id: int):
    svc = service(entity)
    svc.require("update", record_id)
    record = svc.get(record_id)
    return _render_form(build_form(svc, record=record), record=record)


@pages.post("/r/<entity>/<int:record_id>/edit")
def update_record(entity: str, record_id: int):
    svc = service(entity)
    svc.require("update", record_id)
    record = svc.get(record_id)
    version = request.form.get("version", "")
    expected = form_version(version)
    try:
        base = json.loads(request.form.get("_base") or "{}")
    except ValueError:
        base = {}
    try:
        view = build_form(svc, record=record, live=False)
        svc.update(record_id, collect(view, request.form, request.files), expected_version=expected)
    except PreconditionFailed:
        current = svc.get(record_id)
        view = build_form(svc, record=current, form=request.form)
        view.conflict = merge_conflict(view, base if isinstance(base, dict) else {}, current)
        return _render_form(view, 409, record=current)
    except LoomError as exc:
        if not exc.errors and exc.status not in (409, 422):
            raise
        view = build_form(svc, record=record, form=request.form,
                          errors=exc.errors or [exc.as_entry()])
        view.version = expected if expected is not None else view.version
        view.base = request.form.get("_base") or view.base
        return _render_form(view, exc.status, record=record)
    flash(gettext("%(entity)s saved.", entity=label(svc.entity)), "success")
    return redirect_to(url_for("pages.record_view", entity=entity, record_id=record_id))


@pages.post("/r/<entity>/form/preview")
def preview_new_record(entity: str):
    """What saving the new form would make of it, as out-of-band swaps (``loom.ui.live``)."""
    svc = service(entity)
    svc.require("create")
    return _live_answer(svc, build_form(svc, live=False), None)


@pages.post("/r/<entity>/<int:record_id>/form/preview")
def preview_record_edit(entity: str, record_id: int):
    """What saving the edit form would make of the record; refused where the save is."""
    svc = service(entity)
    svc.require("update", record_id)
    view = build_form(svc, record=svc.get(record_id), live=False)
    return _live_answer(svc, view, record_id)


def _live_answer(svc: RecordService, view: FormView, record_id: int | None):
    form = request.form
    answer = preview_form(svc, view, collect(view, form, strict=False), form, record_id)
    if answer is None:
        return "", 204
    found, messages = answer
    return render_template("_form_live.html", slots=found, messages=messages, entity=svc.entity,
                           view=view, new=record_id is None)


@pages.get("/r/<entity>/_row/<field_name>")
def new_row(entity: str, field_name: str):
    """One empty row of a table field, added to the form in place."""
    svc = service(entity)
    f = svc.entity.all_fields.get(field_name)
    if f is None or f.kind.widget != "table" or field_name not in svc.readable():
        raise NotFound(gettext("There is no such table on this form."))
    ff = FormField(f, field_name, None, False)
    _table_rows(svc, ff, None, None, {}, "update" if request.args.get("record") else "create", set())
    row = FormRow("n" + secrets.token_hex(4), None, {c.name: c.default for c in ff.child_fields})
    return render_template("_form_row.html", ff=ff, row=row, entity=svc.entity)


# -- link type-ahead ------------------------------------------------------------------------

def _link_field(svc: RecordService, path: str) -> Field:
    """``customer`` or, for a table's rows, ``lines.product``: a link field the user may read."""
    head, _, rest = path.partition(".")
    f = svc.entity.all_fields.get(head)
    if f is None or head not in svc.readable():
        raise NotFound(gettext("There is no such field."))
    if rest:
        if f.kind.widget != "table":
            raise NotFound(gettext("There is no such field."))
        child = svc.model.entity(f.target)
        f = child.all_fields.get(rest)
        if f is None or rest not in svc.readable(child):
            raise NotFound(gettext("There is no such field."))
    if f.kind.widget != "link":
        raise NotFound(gettext("There is no such field."))
    return f


@pages.get("/r/<entity>/_link/<path:field_path>")
def link_options(entity: str, field_path: str):
    """Suggestions for a link field: records of its target matching what was typed, as far
    as the user may read them."""
    svc = service(entity)
    f = _link_field(svc, field_path)
    typed = next((v for k, v in request.args.items() if k.startswith("_title.")), "").strip()[:200]
    options = []
    if f.target == "user":
        for user in current_app.extensions["loom"].identity.list_users():
            name = user["display_name"] or user["username"]
            if user["is_active"] and (not typed or typed.lower() in f"{name} {user['username']}".lower()):
                options.append({"id": user["id"], "title": name, "hint": user["username"]})
        options = options[:LINK_OPTIONS]
    else:
        target = service(f.target)
        title = target.entity.title_field
        if target.allowed("read") and title in target.readable():
            args = {"limit": str(LINK_OPTIONS), "fields": title}
            if typed:
                args["search"] = typed
            for record in target.list(args).data:
                value = record.get(title)
                text = display(target.entity.field(title), value) if value not in (None, "") else f"#{record['id']}"
                options.append({"id": record["id"], "title": text, "hint": ""})
    return render_template("_link_options.html", options=options)

