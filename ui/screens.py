"""What the screens share: the request's record context and services, and how a field's
value is shown to a person (in the interface language)."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from flask import current_app, g
from flask_babel import format_decimal, get_timezone

from loom.metadata.model import Entity, Field
from loom.records.door import record_context
from loom.records.service import Context, RecordService
from loom.ui.i18n import gettext, join, label

#: how many option labels a multiselect cell shows before "+n"
MULTI_SHOWN = 3


def context() -> Context:
    """The record context of this request (who acts, the live metadata), made once."""
    if "record_context" not in g:
        g.record_context = record_context()
    return g.record_context


def service(entity: str) -> RecordService:
    """The record service for ``entity`` as the signed-in user: the one door to its data."""
    return RecordService(context(), entity)


def option_label(f: Field, value: Any) -> str:
    for option in f.options:
        if option.value == value:
            return label(option)
    return str(value)


def local_time(value: str | dt.datetime, seconds: bool = False) -> str:
    """An ISO 8601 moment (``...Z`` or with an offset), or a datetime (naive ones are UTC, as
    stored), in the interface's time zone: the one way every screen shows a time."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    moment = moment.astimezone(get_timezone())
    return f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname()}" if seconds else f"{moment:%Y-%m-%d %H:%M} {moment.tzname()}"


def display(f: Field, value: Any) -> str:
    """A value as text for a person; links and tables are rendered by the templates."""
    if value is None or value == "" or value == []:
        return ""
    kind = f.type
    if kind == "select":
        return option_label(f, value)
    if kind == "multiselect":
        return join(option_label(f, v) for v in value)
    if kind == "boolean":
        return gettext("Yes") if value else gettext("No")
    if kind == "link":
        return value.get("title") if value.get("title") is not None else f"#{value['id']}"
    if kind in ("decimal", "money", "percent"):
        number = decimal.Decimal(value)
        text = format_decimal(number, format=f"#,##0.{'0' * f.precision_scale[1]}" if f.precision_scale[1] else "#,##0")
        if kind == "money" and f.currency:
            return f"{text} {f.currency}"
        if kind == "percent":
            return f"{text} %"
        return text
    if kind == "integer" and not f.system:
        return format_decimal(value, format="#,##0")
    if kind == "datetime":
        return local_time(value)
    if kind == "attachment":
        return value.get("name", "")
    if kind in ("json", "table"):
        return ""
    return str(value)


def display_names(user_ids: set[int]) -> dict[int, str]:
    """The names people know each other by (the display name, else the username)."""
    return current_app.extensions["loom"].identity.display_names(user_ids)


def readable_fields(svc: RecordService, names: list[str] | tuple[str, ...]) -> list[Field]:
    readable = svc.readable()
    entity = svc.entity
    return [entity.all_fields[n] for n in names if n in entity.all_fields and n in readable]


def default_columns(entity: Entity) -> list[str]:
    """The list's columns: from metadata, else the title and the first few fields."""
    if entity.list.columns:
        return list(entity.list.columns)
    names = [entity.title_field] if entity.title_field != "id" else []
    names += [f.name for f in entity.fields if f.type not in ("table", "json", "text") and f.name not in names]
    return names[:6]


def record_title(entity: Entity, record: dict[str, Any]) -> str:
    value = record.get(entity.title_field)
    if value in (None, ""):
        return f"{label(entity)} #{record.get('id')}"
    return display(entity.all_fields[entity.title_field], value)
