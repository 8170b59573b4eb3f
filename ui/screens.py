"""What the screens share: the request's record context and services, and how a field's
value is shown to a person (in the interface language)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import current_app, g
from flask_babel import format_decimal, get_timezone

from loom.metadata import formatting
from loom.metadata.formatting import FormatContext
from loom.metadata.model import Entity, Field
from loom.records.door import record_context
from loom.records.service import Context, RecordService
from loom.ui.i18n import current_locale, gettext, join, label

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
    return formatting.option_label(f, value, format_context())


def local_time(value: str | dt.datetime, seconds: bool = False) -> str:
    """An ISO 8601 moment (``...Z`` or with an offset), or a datetime (naive ones are UTC, as
    stored), in the interface's time zone: the one way every screen shows a time."""
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    else:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    moment = moment.astimezone(get_timezone())
    return f"{moment:%Y-%m-%d %H:%M:%S} {moment.tzname()}" if seconds else f"{moment:%Y-%m-%d %H:%M} {moment.tzname()}"


def local_moment(moment: dt.datetime) -> dt.datetime:
    """A time without a zone, as typed into the screens, in the screens' time zone
    (Flask-Babel's ``BABEL_DEFAULT_TIMEZONE``, UTC unless configured)."""
    if moment.tzinfo is not None:
        return moment
    zone = get_timezone()
    return zone.localize(moment) if hasattr(zone, "localize") else moment.replace(tzinfo=zone)


def _in_zone(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(get_timezone())


def _number(value: Any, pattern: str) -> str:
    return format_decimal(value, format=pattern)


def format_context() -> FormatContext:
    """The interface's language, time zone and number format, for the field types to show,
    parse and export values with; made once per request (and language: an import's report
    is written in the language it was started in)."""
    locale = current_locale()
    made = g.setdefault("format_contexts", {})
    if locale not in made:
        made[locale] = FormatContext(locale=locale, label=label, join=join, format_number=_number,
                                     local_time=local_time, to_local=_in_zone, localize=local_moment,
                                     yes=gettext("Yes"), no=gettext("No"))
    return made[locale]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def display(f: Field, value: Any) -> str:
    """A value as text for a person, as its field type shows it (titles, timelines, link
    suggestions); links and tables are rendered by the templates."""
    return "" if _empty(value) else f.kind.display(f, value, format_context())


def shown(f: Field, value: Any) -> Any:
    """A value as a page shows it: ``display`` and the type's display extensions (which may
    make markup, such as a click-to-call link for a phone number)."""
    return "" if _empty(value) else f.kind.show(f, value, format_context())


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
    names += [f.name for f in entity.fields if f.kind.in_lists and not f.kind.wide and f.name not in names]
    return names[:6]


def record_title(entity: Entity, record: dict[str, Any]) -> str:
    value = record.get(entity.title_field)
    if value in (None, ""):
        return f"{label(entity)} #{record.get('id')}"
    return display(entity.all_fields[entity.title_field], value)
