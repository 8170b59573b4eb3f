"""Link fields as a form sends them: the id picked from the suggestions (a hidden input)
and the text in the type-ahead box (``_title.<name>``).

The id is trusted only while the text still reads as the title of the record it names:
a user who picks one company and then types another's name must not save the first. Text
that no longer matches its pick counts when it is exactly the title of one record the
user may read; anything else is refused beside the field, asking them to choose from the
list. A client that sends only the id (no type-ahead box) is taken at its word; the record
service still checks the id."""

from __future__ import annotations

from typing import Any

from flask import current_app
from werkzeug.datastructures import MultiDict

from loom.errors import LoomError, ValidationError, error_entry
from loom.metadata.model import Field
from loom.ui.i18n import gettext, label
from loom.ui.screens import display, display_names, service
from loom.ui.widgets import ROW_KEY, form_id

#: the type-ahead box of the link input ``name`` is sent as ``_title.<name>``
TITLE_PREFIX = "_title."
#: a title shared by more records than this is reported as ambiguous without counting further
MATCHES_CHECKED = 2


def read_link(f: Field, form: MultiDict, name: str) -> int | str | None:
    """The id the link input ``name`` stands for, or None when its box was emptied.

    Raises ValidationError (422) naming ``name`` when the text in the box names no single
    record: typed over a pick, or typed without picking."""
    picked = form.get(name, "").strip()
    if TITLE_PREFIX + name not in form:
        return picked or None
    text = form.get(TITLE_PREFIX + name, "").strip()
    if not text:
        return None
    if picked and text in _titles(f, picked):
        return picked
    matches = _exact_matches(f, text)
    if len(matches) == 1:
        return matches[0]
    what = _in_sentence(label(f))
    if matches:
        message = gettext("Several records are called “%(text)s”; choose the %(what)s from the list.",
                          text=text, what=what)
    else:
        message = gettext("Choose the %(what)s from the list; “%(text)s” is not one of them.",
                          text=text, what=what)
    raise ValidationError(message, errors=[error_entry(name, "link_not_chosen", message, text=text)])


def shown_link(f: Field, form: MultiDict, name: str) -> dict[str, Any] | None:
    """A link input as the re-rendered form shows it: the typed text, and the id only where
    that text still stands for it (so a refused pick is not sent again unseen)."""
    text = form.get(TITLE_PREFIX + name)
    try:
        chosen = read_link(f, form, name)
    except ValidationError:
        chosen = None
    if chosen is None:
        return {"id": "", "title": text} if text else None
    return {"id": chosen, "title": text or None}


class LinkReader:
    """Reads every link input of one form, gathering those that name no record, so that a
    save reports them all at once (and saves nothing)."""

    def __init__(self, form: MultiDict):
        self.form = form
        self.errors: list[dict[str, Any]] = []

    def value(self, f: Field, name: str, path: str | None = None) -> int | str | None:
        """The id of link input ``name``; ``path`` is where the service would name it."""
        try:
            return read_link(f, self.form, name)
        except ValidationError as exc:
            self.errors += [{**error, "field": path or name} for error in exc.errors]
            return None

    def rows(self, table: Field, child_fields: list[Field], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows of ``table`` (as ``read_rows`` read them) with their links checked."""
        keys = [key for key in self.form.getlist(f"{table.name}.row") if ROW_KEY.match(key)]
        for i, (key, row) in enumerate(zip(keys, rows, strict=False)):
            for c in child_fields:
                if c.type == "link":
                    row[c.name] = self.value(c, f"{table.name}.{key}.{c.name}", f"{table.name}[{i}].{c.name}")
        return rows

    def check(self) -> None:
        """Refuse the save (422) when any link input named no record."""
        if self.errors:
            raise ValidationError(gettext("Choose each linked record from the list."), errors=self.errors)


def _titles(f: Field, picked: str) -> set[str]:
    """The texts the box shows for the record ``picked``: its title as the suggestions and
    the form write it, or ``#id`` where it has none the user may read."""
    record_id = form_id(picked)
    if record_id is None:
        return set()
    titles = {f"#{picked}"}
    if f.target == "user":
        name = display_names({record_id}).get(record_id)
        return titles | ({name} if name else set())
    target = service(f.target)
    title = target.entity.title_field
    if not target.allowed("read") or title not in target.readable():
        return titles
    try:
        page = target.list({"filter[id][eq]": picked, "fields": title, "limit": "1"})
    except LoomError:
        return titles
    for record in page.data:
        value = record.get(title)
        if value not in (None, ""):
            titles |= {str(value), display(target.entity.field(title), value)}
    return titles


def _exact_matches(f: Field, text: str) -> list[int]:
    """The records (at most MATCHES_CHECKED) the user may read whose title is ``text``."""
    if f.target == "user":
        users = current_app.extensions["loom"].identity.list_users()
        return [u["id"] for u in users
                if u["is_active"] and text in (u["display_name"] or u["username"], u["username"])][:MATCHES_CHECKED]
    target = service(f.target)
    title = target.entity.title_field
    if not target.allowed("read") or title not in target.readable():
        return []
    title_field = target.entity.field(title)
    try:
        page = target.list({f"filter[{title}][eq]": text, "fields": title, "limit": str(MATCHES_CHECKED)})
        return [record["id"] for record in page.data]
    except LoomError:
        pass  # a title that is not text (a number, a date): compare what the suggestions show
    try:
        page = target.list({"search": text, "fields": title, "limit": "50"})
    except LoomError:
        return []
    return [record["id"] for record in page.data
            if display(title_field, record.get(title)) == text][:MATCHES_CHECKED]


def _in_sentence(text: str) -> str:
    """A label inside a sentence: "Customer" becomes "customer", "SKU" stays."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text
