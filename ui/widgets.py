"""Field widgets: which input each field type gets, and how a submitted form turns back
into the values the record service validates. The service stays the judge of what is
valid; this only undoes what HTML forms do to values (everything is text, an unticked
box is absent, a multiselect is repeated)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask_babel import get_timezone
from werkzeug.datastructures import MultiDict

from loom.metadata.model import Field
from loom.ui.i18n import gettext, lazy_gettext

#: types edited with a plain <input type=...>
INPUT_TYPES = {"string": "text", "email": "email", "phone": "tel", "url": "url", "integer": "number",
               "decimal": "number", "money": "number", "percent": "number", "date": "date",
               "datetime": "datetime-local"}
#: types the screens show but do not edit
NOT_EDITABLE = {"json", "attachment"}
ROW_KEY = re.compile(r"^[A-Za-z0-9_]{1,20}$")
_CHINESE = re.compile(r"[\u4e00-\u9fff]")

#: the record service's messages, as the interface shows them
_KERNEL_MESSAGES = {
    "is required": lazy_gettext("This field is required."),
    "expected a number": lazy_gettext("Enter a number."),
    "expected a finite number": lazy_gettext("Enter a number."),
    "expected a whole number": lazy_gettext("Enter a whole number."),
    "expected a date as YYYY-MM-DD": lazy_gettext("Enter a date."),
    "expected a date and time as YYYY-MM-DDTHH:MM:SS with a time zone": lazy_gettext("Enter a date and time."),
    "expected true or false": lazy_gettext("Choose yes or no."),
    "is read-only": lazy_gettext("This field cannot be changed."),
    "write a comment": lazy_gettext("Write a comment first."),
    "you may read this field but not change it": lazy_gettext("You may read this field but not change it."),
    "is read-only in the record's current state": lazy_gettext("This field cannot change in the record's current state."),
    "must be unique; another record has this value": lazy_gettext("Another record already has this value."),
    "must be unique; this value is already in use": lazy_gettext("Another record already has this value."),
    "there is no upload of yours with this key for this field; upload the file first":
        lazy_gettext("Upload the file here first, then save."),
    "this file is attached to another record; upload it again to attach it here":
        lazy_gettext("This file belongs to another record; upload it again to attach it here."),
    "not an email address (expected name@example.com)": lazy_gettext("Enter an email address like name@example.com."),
    "not a web address (expected http:// or https:// and a host)":
        lazy_gettext("Enter a web address starting with http:// or https://."),
    "a mainland mobile number has 11 digits and starts with 1 (e.g. 13812345678)":
        lazy_gettext("A mobile number has 11 digits and starts with 1 (e.g. 13812345678)."),
    "a unified social credit code uses digits and capital letters other than I, O, S, V, Z":
        lazy_gettext("A unified social credit code uses digits and capital letters other than I, O, S, V, Z."),
    "the check character (the 18th) does not match; the code is mistyped":
        lazy_gettext("The check character (the 18th) does not match; the code is mistyped."),
}
_PATTERNS = (
    (re.compile(r"^at most (\d+) characters$"), lazy_gettext("At most %(a)s characters.")),
    (re.compile(r"^at most (\d+) decimal places$"), lazy_gettext("At most %(a)s decimal places.")),
    (re.compile(r"^at most (\d+) digits before the decimal point$"),
     lazy_gettext("At most %(a)s digits before the decimal point.")),
    (re.compile(r"^must be at least (.+)$"), lazy_gettext("Must be at least %(a)s.")),
    (re.compile(r"^must be at most (.+)$"), lazy_gettext("Must be at most %(a)s.")),
    (re.compile(r"^must be one of: (.+)$"), lazy_gettext("Must be one of: %(a)s.")),
    (re.compile(r"^a unified social credit code has 18 characters, not (\d+)$"),
     lazy_gettext("A unified social credit code has 18 characters, not %(a)s.")),
    (re.compile(r"^there is no \w+ with id (\d+)$"), lazy_gettext("The chosen record #%(a)s does not exist or is not yours to see.")),
    (re.compile(r"^expected the id of a \w+ record$"), lazy_gettext("Pick a record from the suggestions.")),
)


#: the admin rights a refusal may name (roles declare them as ``admin: [...]``)
ADMIN_RIGHT_LABELS = {"audit": lazy_gettext("audit log"), "users": lazy_gettext("users"),
                      "teams": lazy_gettext("teams"), "roles": lazy_gettext("roles"),
                      "metadata": lazy_gettext("metadata")}
ACTION_LABELS = {"read": lazy_gettext("read"), "create": lazy_gettext("create"), "update": lazy_gettext("change"),
                 "delete": lazy_gettext("delete"), "export": lazy_gettext("export"), "import": lazy_gettext("import")}
_ABOUT_RECORDS = (
    (re.compile(r"^you may not (\w+) (\w+) records$"),
     lambda m: gettext("You may not %(action)s %(entity)s records.",
                       action=ACTION_LABELS.get(m.group(1), m.group(1)), entity=_entity_label(m.group(2)))),
    (re.compile(r"^there is no (\w+) with id (\d+)$"),
     lambda m: gettext("There is no %(entity)s #%(id)s, or it is not yours to see.",
                       entity=_entity_label(m.group(1)), id=m.group(2))),
    (re.compile(r"^(\d+) .+ record\(s\) still link to this \w+ through '\w+'; change or delete them first$"),
     lambda m: gettext("%(count)s other record(s) still link to this one; change or delete them first.",
                       count=m.group(1))),
    (re.compile(r"^(?:this \w+ is still linked from other records|other records still link to this \w+; .*)$"),
     lambda m: gettext("Other records still link to this one; change or delete them first.")),
    (re.compile(r"^a read-only token cannot (\w+) (\w+) records$"),
     lambda m: gettext("A read-only token may not %(action)s %(entity)s records.",
                       action=ACTION_LABELS.get(m.group(1), m.group(1)), entity=_entity_label(m.group(2)))),
    (re.compile(r"^you may not change (.+)$"),
     lambda m: gettext("You may read some of these fields but not change them.")),
    (re.compile(r"^you may not set (\w+) on (\w+) records$"),
     lambda m: gettext("You may not set %(field)s on %(entity)s records.",
                       field=_field_label(m.group(2), m.group(1)), entity=_entity_label(m.group(2)))),
    (re.compile(r"needs a role with admin: \[(\w+)\]$"),
     lambda m: gettext("This needs a role with the admin right “%(right)s”.",
                       right=str(ADMIN_RIGHT_LABELS.get(m.group(1), m.group(1))))),
    (re.compile(r"^there is no entity named '([^']*)'$"),
     lambda m: gettext("There is no record type “%(name)s”; check the address.", name=m.group(1))),
    (re.compile(r"^there is no such record: "),
     lambda m: gettext("There is no such record; check the address.")),
    (re.compile(r"^there is no audit entry (\d+)$"),
     lambda m: gettext("There is no audit entry %(seq)s.", seq=m.group(1))),
    (re.compile(r"^\w+ has no attachment field named '[^']*'$"),
     lambda m: gettext("There is no such file.")),
    (re.compile(r"^this \w+ was changed by someone else"),
     lambda m: gettext("Someone else changed this record in the meantime; reload it and try again.")),
    (re.compile(r"^must be unique; \w+ \d+ has this value$"),
     lambda m: gettext("Another record already has this value.")),
    (re.compile(r"^file type not accepted; use (.+)$"),
     lambda m: gettext("This file type is not accepted here; use %(types)s.", types=m.group(1))),
    (re.compile(r"^the file is larger than (\d+) KB$"),
     lambda m: gettext("The file is larger than %(size)s KB.", size=m.group(1))),
    (re.compile(r"^unknown field '([^']*)' in (\w+)$"),
     lambda m: gettext("There is no field “%(name)s” to use here.", name=m.group(1))),
)


def _entity_label(name: str) -> str:
    from loom.ui.i18n import label
    from loom.ui.screens import context

    entity = context().live.model.entities.get(name)
    return label(entity) if entity is not None else name


def _field_label(entity_name: str, field_name: str) -> str:
    from loom.ui.i18n import label
    from loom.ui.screens import context

    entity = context().live.model.entities.get(entity_name)
    f = entity.all_fields.get(field_name) if entity is not None else None
    return label(f) if f is not None else field_name


#: what a refusal says when Loom has no translation of its detail: said whole in the
#: interface language rather than half in English
_REFUSALS = {400: lazy_gettext("Loom cannot use what was sent; check the address or the form and try again."),
             403: lazy_gettext("Your roles do not allow this."),
             404: lazy_gettext("There is no such page or record; check the address."),
             405: lazy_gettext("This address does not take this kind of request."),
             409: lazy_gettext("This conflicts with other records."),
             412: lazy_gettext("Someone else changed this record in the meantime; reload it and try again."),
             422: lazy_gettext("Some values are not valid."),
             423: lazy_gettext("This is locked for now; try again later.")}


def refusal_text(status: int, message: str) -> str:
    """A refusal's detail in the interface language, whole: the translation of a message
    Loom knows, else (outside English) what the status means, never English mixed in."""
    from loom.ui.i18n import current_locale

    text = message_text(message)
    # a screen's own refusal is already in the interface language (Chinese text in zh_CN)
    if text == message and current_locale() != "en" and not _CHINESE.search(message):
        return str(_REFUSALS.get(status, _REFUSALS[400]))
    return text


def message_text(message: str) -> str:
    """A service error message in the interface language where Loom knows it."""
    known = _KERNEL_MESSAGES.get(message)
    if known is not None:
        return str(known)
    for pattern, text in _ABOUT_RECORDS:
        match = pattern.match(message)
        if match:
            return text(match)
    match = re.match(r"^must be between (.+) and (.+)$", message)
    if match:
        return gettext("Must be between %(a)s and %(b)s.", a=match.group(1), b=match.group(2))
    for pattern, text in _PATTERNS:
        match = pattern.match(message)
        if match:
            return str(text) % {"a": match.group(1)}
    return message


def input_type(f: Field) -> str:
    return INPUT_TYPES.get(f.type, "text")


def step(f: Field) -> str | None:
    """The step of a number input: one unit of the field's last decimal place."""
    if f.type == "integer":
        return "1"
    if f.type in ("decimal", "money", "percent"):
        scale = f.precision_scale[1]
        return "1" if scale == 0 else "0." + "0" * (scale - 1) + "1"
    return None


def input_value(f: Field, value: Any) -> str:
    """A stored (JSON) value as an input's value attribute."""
    if value is None:
        return ""
    if f.type == "datetime":
        text = str(value)
        if len(text) == 16 and "T" in text:  # as the user typed it, already local
            return text
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment.astimezone(get_timezone()).strftime("%Y-%m-%dT%H:%M")
    if f.type == "link":
        return str(value["id"]) if isinstance(value, dict) else str(value)
    return str(value)


def local_moment(moment: dt.datetime) -> dt.datetime:
    """A time without a zone, as typed into the screens, in the screens' time zone
    (Flask-Babel's ``BABEL_DEFAULT_TIMEZONE``, UTC unless configured)."""
    if moment.tzinfo is not None:
        return moment
    zone = get_timezone()
    return zone.localize(moment) if hasattr(zone, "localize") else moment.replace(tzinfo=zone)


def read_value(f: Field, form: MultiDict, name: str) -> Any:
    """The value the form sent for field ``f`` under ``name``, as the service expects it
    (None when left empty)."""
    if f.type == "boolean":
        values = form.getlist(name)
        if not values:
            return False
        last = values[-1]
        return None if last == "" else last in ("true", "on", "1")
    if f.type == "multiselect":
        return [v for v in form.getlist(name) if v != ""]
    raw = form.get(name, "")
    if raw.strip() == "":
        return None
    if f.type == "datetime":
        # <input type=datetime-local> has no zone: it is the screens' time zone
        try:
            moment = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            return raw.strip()
        return local_moment(moment).isoformat()
    if f.type in ("string", "text", "email", "phone", "url"):
        return raw.strip() if f.type != "text" else raw
    return raw.strip()


def read_rows(f: Field, child_fields: list[Field], form: MultiDict) -> list[dict[str, Any]]:
    """The rows of a table field, in the order the page shows them. Each row sends its
    key in ``<field>.row``, and its values as ``<field>.<key>.<child field>``."""
    rows = []
    for key in form.getlist(f"{f.name}.row"):
        if not ROW_KEY.match(key):
            continue
        prefix = f"{f.name}.{key}."
        row: dict[str, Any] = {}
        row_id = form.get(prefix + "id", "")
        if row_id.isdigit():
            row["id"] = int(row_id)
        for cf in child_fields:
            row[cf.name] = read_value(cf, form, prefix + cf.name)
        rows.append(row)
    return rows
