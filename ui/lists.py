"""The list screen of an entity: columns, filters and sort from metadata, quick search,
filter chips, keyset "load more", row selection with bulk actions, saved views.

The list's state lives in its URL (the same ``filter[field][op]``, ``sort``, ``limit``
and ``search`` arguments as the REST API, plus ``columns``), so back, reload and a
shared link show the same list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import abort, current_app, flash, g, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from loom.errors import BadRequest, LoomError
from loom.metadata.model import Field
from loom.metadata.types import FILTER_WIDGETS
from loom.records.query import ListQuery, filter_key
from loom.records.reading import Page
from loom.records.service import RecordService
from loom.ui.i18n import gettext, join, label, ngettext
from loom.ui.links import read_link
from loom.ui.messages import detail_text, message_text
from loom.ui.pages import htmx, pages, render_page
from loom.ui.screens import (
    context,
    default_columns,
    display,
    display_names,
    local_moment,
    option_label,
    readable_fields,
    service,
)
from loom.ui.views import SavedViewRow, SavedViews, view_query
from loom.ui.widgets import form_id, read_value

PAGE_SIZES = (25, 50, 100, 200)
#: a list counts its matches up to here ("More than 10000 records"): counting them all
#: is what makes a first page slow on a large table
COUNT_LIMIT = 10_000
#: arguments only the screen uses; the record service never sees them
SCREEN_ARGS = {"columns", "view", "ids", "format", "csrf_token"}


def local_times(entity, args: MultiDict) -> MultiDict:
    """Date-time filters as typed (no zone: a ``datetime-local`` input) are in the
    screens' time zone."""
    result: MultiDict = MultiDict()
    for key, value in args.items(multi=True):
        f = entity.all_fields.get((filter_key(key) or ("", ""))[0])
        if f is not None and f.kind.input_type == "datetime-local" and value:
            try:
                value = local_moment(dt.datetime.fromisoformat(value)).isoformat()
            except ValueError:
                pass  # the record service says what is wrong with it
        result.add(key, value)
    return result


def service_args(args: MultiDict) -> MultiDict:
    """List arguments for the record service: empty values dropped, and the repeated
    values of an ``in`` filter (one per ticked box) joined with commas."""
    result: MultiDict = MultiDict()
    joined: dict[str, list[str]] = {}
    for key, value in args.items(multi=True):
        if value == "" or key in SCREEN_ARGS or key.startswith("_"):
            continue
        if key.startswith("filter[") and key.endswith(("[in]", "[nin]")):
            joined.setdefault(key, []).append(value)
        else:
            result.add(key, value)
    for key, values in joined.items():
        result.add(key, ",".join(values))
    return result


@dataclass
class FilterControl:
    """One filter of the list: its field, its widget and the argument names it sends."""

    field: Field
    widget: str  # options, boolean, range, contains, multiselect, link
    names: list[str]
    values: dict[str, list[str]]
    chip: str = ""


@dataclass
class OtherFilter:
    """A filter in the URL that the filter panel has no control for (a related list's
    ``filter[customer][eq]``, a child-row filter): shown as a chip and kept on the form."""

    key: str
    value: str
    title: str
    chip: str


#: how a chip writes an operator before its value
_OPERATOR_SIGNS = {"eq": "", "ne": "≠ ", "lt": "< ", "lte": "≤ ", "gt": "> ", "gte": "≥ ", "in": "", "nin": "≠ ",
                   "contains": "~ ", "startswith": "^ ", "isnull": ""}


@dataclass
class ListState:
    svc: RecordService
    args: MultiDict
    columns: list[Field]
    query: ListQuery
    page: Page
    filters: list[FilterControl] = field(default_factory=list)
    view: SavedViewRow | None = None
    views: list[SavedViewRow] = field(default_factory=list)
    other_filters: list[OtherFilter] = field(default_factory=list)

    @property
    def entity(self):
        return self.svc.entity

    def url(self, **changes: Any) -> str:
        """This list's URL with some arguments changed (None removes one)."""
        args = MultiDict([(k, v) for k, v in self.args.items(multi=True) if v != "" and k not in ("cursor", "view")])
        for key, value in changes.items():
            args.poplist(key)
            if value is not None:
                args[key] = value
        query = urlencode(list(args.items(multi=True)))
        base = url_for("pages.list_view", entity=self.entity.name)
        return f"{base}?{query}" if query else base

    def sort_url(self, f: Field) -> str:
        current = self.sort_of(f)
        return self.url(sort=f.name if current != "ascending" else f"-{f.name}")

    def sort_of(self, f: Field) -> str | None:
        first = self.query.sort[0] if self.query.sort else None
        if first is None or first.field.name != f.name:
            return None
        return "descending" if first.descending else "ascending"

    def sortable(self, f: Field) -> bool:
        return f.kind.sortable

    @property
    def limit(self) -> int:
        return self.query.limit

    @property
    def more_url(self) -> str | None:
        if self.page.next_cursor is None:
            return None
        return self.url(cursor=self.page.next_cursor)

    @property
    def chips(self) -> list[FilterControl]:
        return [c for c in self.filters if c.chip]

    @property
    def search_labels(self) -> str:
        readable = self.svc.readable()
        return join(label(f) for f in self.entity.search_fields if f.name in readable)

    @property
    def query_string(self) -> str:
        return view_query(self.args)

    @property
    def column_choices(self) -> list[Field]:
        """The shown columns first, in their order (the form sends them back in it), then
        the others."""
        shown = [f.name for f in self.columns]
        return self.columns + [f for f in column_choices(self.svc) if f.name not in shown]

    @property
    def column_names(self) -> set[str]:
        return {f.name for f in self.columns}


def _filter_controls(svc: RecordService, args: MultiDict) -> list[FilterControl]:
    controls = []
    for f in readable_fields(svc, svc.entity.list.filters):
        widget = f.kind.filter_widget
        if widget is None:
            continue
        names = [f"filter[{f.name}][{op}]" for op in FILTER_WIDGETS[widget]]
        values = {name: [v for raw in args.getlist(name) for v in (raw.split(",") if name.endswith("[in]") else [raw])
                         if v != ""] for name in names}
        control = FilterControl(f, widget, names, values)
        control.chip = _chip_text(control)
        controls.append(control)
    return controls


def _other_filters(svc: RecordService, args: MultiDict, controls: list[FilterControl]) -> list[OtherFilter]:
    """The URL's filters that no control shows; the record service has already checked
    each of them against what the user may read."""
    covered = {name for control in controls for name in control.names}
    result = []
    for key, value in args.items(multi=True):
        parsed = filter_key(key)
        if parsed is None or key in covered or value == "":
            continue
        name, op = parsed
        entity, titles = svc.entity, []
        if "." in name:
            table_name, name = name.split(".", 1)
            table = entity.all_fields[table_name]
            titles.append(label(table))
            entity = svc.model.entity(table.target)
        f = entity.all_fields[name]
        titles.append(label(f))
        if op == "isnull":
            text = gettext("empty") if value.lower() in ("true", "1", "yes") else gettext("not empty")
        elif f.kind.widget == "link" and op == "eq":
            text = link_title(f, value)
        elif f.options:
            text = join(option_label(f, v) for v in value.split(","))
        else:
            text = value
        result.append(OtherFilter(key, value, " · ".join(titles), _OPERATOR_SIGNS.get(op, f"{op} ") + text))
    return result


def _chip_text(control: FilterControl) -> str:
    f, values = control.field, control.values
    if control.widget == "options":
        chosen = values[control.names[0]]
        return join(option_label(f, v) for v in chosen)
    if control.widget == "boolean":
        chosen = values[control.names[0]]
        return "" if not chosen else (gettext("Yes") if chosen[0] == "true" else gettext("No"))
    if control.widget == "range":
        low, high = (values[name][0] if values[name] else "" for name in control.names)
        if low and high:
            return f"{low} – {high}"
        if low:
            return f"≥ {low}"
        return f"≤ {high}" if high else ""
    if control.widget == "multiselect":
        chosen = values[control.names[0]]
        return option_label(f, chosen[0]) if chosen else ""
    if control.widget == "link":
        chosen = values[control.names[0]]
        return link_title(f, chosen[0]) if chosen else ""
    chosen = values[control.names[0]]
    return f"“{chosen[0]}”" if chosen else ""


def link_title(f: Field, raw_id: str) -> str:
    """The title of the record a link points at, as far as the user may see it."""
    try:
        record_id = int(raw_id)
    except ValueError:
        return raw_id
    if f.target == "user":
        return display_names({record_id}).get(record_id, f"#{record_id}")
    try:
        target = service(f.target)
        title_field = target.entity.title_field
        if title_field not in target.readable():
            return f"#{record_id}"
        record = target.get(record_id, [title_field])
    except LoomError:
        return f"#{record_id}"
    value = record.get(title_field)
    return f"#{record_id}" if value in (None, "") else display(target.entity.field(title_field), value)


def column_choices(svc: RecordService) -> list[Field]:
    """The fields a list can show as columns: every readable field but tables."""
    readable = svc.readable()
    return [f for f in svc.entity.all_fields.values()
            if f.name in readable and f.kind.in_lists and f.name != "version"]


def _columns(svc: RecordService, args: MultiDict) -> list[Field]:
    wanted = [n.strip() for raw in args.getlist("columns") for n in raw.split(",") if n.strip()]
    columns = readable_fields(svc, wanted or default_columns(svc.entity))
    columns = [c for c in columns if c.stored]
    if not columns:
        columns = readable_fields(svc, ["id"])
    return columns


def list_state(entity: str, args: MultiDict, *, count: bool = True) -> ListState:
    """Resolve a list request: saved view, columns, filters, the page of records."""
    svc = service(entity)
    svc.require("read")
    principal = g.principal
    views = SavedViews(context().engine, principal.user_id, entity) if principal.user_id else None
    view = None
    saved = views.all() if views else []
    if args.get("view") and views:
        try:
            view = views.get(int(args["view"]))
        except ValueError:
            raise BadRequest(gettext("There is no such saved view.")) from None
        args = view.args()
    elif not [k for k in args if k != "cursor"] and views:
        view = next((v for v in saved if v.is_default), None)
        if view is not None:
            args = view.args()
    columns = _columns(svc, args)
    query = svc.parse_query(local_times(svc.entity, service_args(args)))
    selected = {"id", *(c.name for c in columns)}
    query.fields = [n for n in svc.entity.all_fields if n in selected]
    query.count = count and query.after is None
    query.count_limit = COUNT_LIMIT
    page = svc.list(query)
    controls = _filter_controls(svc, args)
    return ListState(svc, args, columns, query, page, controls, view, saved, _other_filters(svc, args, controls))


@pages.get("/r/<entity>")
def list_view(entity: str):
    state = list_state(entity, request.args)
    target = htmx.target if htmx else None
    if state.query.after is not None and target != "list-results":
        return render_template("_list_rows.html", state=state, entity=state.entity)
    if target == "list-results":
        return render_template("_list_results.html", state=state, entity=state.entity, oob=True)
    return render_page("list.html", state=state, entity=state.entity, oob=False)


# -- bulk actions ----------------------------------------------------------------------------

def _selected_ids() -> list[int]:
    ids = []
    for raw in request.form.getlist("ids"):
        if (record_id := form_id(raw)) is not None:
            ids.append(record_id)
    if not ids:
        raise BadRequest(gettext("Select one or more records first."))
    return ids


def _bulk_reply(done: int, failures: list[tuple[int, str]], done_message: str):
    html = render_template("_bulk_result.html", done=done, failures=failures, done_message=done_message)
    response = current_app.response_class(html, 200)
    response.headers["HX-Retarget"] = "#messages"
    response.headers["HX-Reswap"] = "innerHTML"
    response.headers["HX-Trigger"] = "loom:list-changed"
    return response


@pages.post("/r/<entity>/_bulk/delete")
def bulk_delete(entity: str):
    svc = service(entity)
    svc.require("delete")
    done, failures = 0, []
    for record_id in _selected_ids():
        try:
            svc.delete(record_id)
            done += 1
        except LoomError as exc:
            failures.append((record_id, detail_text(exc)))
    return _bulk_reply(done, failures, ngettext("Deleted %(num)s record.", "Deleted %(num)s records.", done))


def names_each_record(entity, f: Field) -> bool:
    """Whether ``f`` tells records apart (the title, or unique on its own): one value set
    on many records would make them alike or be refused on all but one."""
    return (f.name == entity.title_field or f.unique
            or any(index.unique and [column for column, _desc in index.columns] == [f.name]
                   for index in entity.indexes))


def bulk_fields(svc: RecordService) -> list[Field]:
    """The fields a bulk update may set: writable, plain-valued fields that do not name
    each record (the title, unique fields)."""
    writable = svc.writable("update")
    return [f for f in svc.entity.fields
            if f.name in writable and not f.read_only and f.kind.typed
            and not names_each_record(svc.entity, f)]


@pages.get("/r/<entity>/_bulk/value")
def bulk_value_widget(entity: str):
    svc = service(entity)
    name = request.args.get("bulk_field", "")
    chosen = next((f for f in bulk_fields(svc) if f.name == name), None)
    return render_template("_bulk_value.html", field=chosen, entity=svc.entity)


@pages.post("/r/<entity>/_bulk/update")
def bulk_update(entity: str):
    svc = service(entity)
    svc.require("update")
    name = request.form.get("bulk_field", "")
    chosen = next((f for f in bulk_fields(svc) if f.name == name), None)
    if chosen is None:
        own = svc.entity.all_fields.get(name)
        if own is not None and name in svc.readable() and names_each_record(svc.entity, own):
            raise BadRequest(gettext("%(field)s tells the records apart: change it on each record, not on many "
                                     "at once.", field=label(own)))
        raise BadRequest(gettext("Choose a field to change."))
    value = (read_link(chosen, request.form, "bulk_value") if chosen.kind.widget == "link"
             else read_value(chosen, request.form, "bulk_value"))
    done, failures = 0, []
    for record_id in _selected_ids():
        try:
            svc.update(record_id, {chosen.name: value})
            done += 1
        except LoomError as exc:
            reasons = [message_text(e) for e in exc.errors] or [detail_text(exc)]
            failures.append((record_id, "; ".join(reasons)))
    return _bulk_reply(done, failures, ngettext("Updated %(num)s record.", "Updated %(num)s records.", done))


# -- saved views ------------------------------------------------------------------------------

def _views(entity: str) -> SavedViews:
    svc = service(entity)
    svc.require("read")
    if g.principal.user_id is None:
        abort(403)
    return SavedViews(context().engine, g.principal.user_id, entity)


@pages.post("/r/<entity>/_views")
def save_view(entity: str):
    views = _views(entity)
    query = request.form.get("query", "")
    views.save(request.form.get("name", ""), query, is_default=request.form.get("is_default") == "true")
    flash(gettext("View saved."), "success")
    return _back_to_list(entity, query)


@pages.post("/r/<entity>/_views/<int:view_id>/delete")
def delete_view(entity: str, view_id: int):
    _views(entity).delete(view_id)
    flash(gettext("View deleted."), "success")
    return _back_to_list(entity, "")


def _back_to_list(entity: str, query: str):
    from loom.ui.pages import redirect_to

    base = url_for("pages.list_view", entity=entity)
    return redirect_to(f"{base}?{query}" if query else base)
