"""How the built-in field types meet people: a value shown as text, written into an
input, read back from a form or an imported cell, and written into an exported file.

These are plain functions over a ``FormatContext``: the screens put their language, time
zone and number formatting into one, so the metadata language never imports the web
layer, and a plugin's field type works the same in a page, an import and an export.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loom.metadata.model import Field


def label_text(label: Mapping[str, str], locale: str = "en", fallback: str = "") -> str:
    """The label in ``locale``, else English, else any language, else ``fallback``."""
    if not label:
        return fallback
    lang = locale.replace("-", "_").split("_")[0]
    return label.get(locale) or label.get(lang) or label.get("en") or next(iter(label.values()), fallback)


def _plain_label(thing: Any) -> str:
    return label_text(getattr(thing, "label", {}), "en", getattr(thing, "value", str(thing)))


def _plain_number(value: Any, pattern: str) -> str:
    """``1234.5`` with ``#,##0.00`` -> ``1,234.50``: grouping and the pattern's decimals."""
    places = len(pattern.partition(".")[2])
    return f"{decimal.Decimal(value):,.{places}f}"


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _plain_time(value: str | dt.datetime) -> str:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return f"{_utc(moment):%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class FormatContext:
    """What showing, parsing and exporting a value needs from whoever shows it: the
    screens give their interface language and time zone; the defaults are English and UTC
    (for tests, the command line, and code without a request)."""

    #: the interface language, e.g. ``en`` or ``zh_CN``
    locale: str = "en"
    #: the label of an option (or anything with ``label``) in the interface language
    label: Callable[[Any], str] = _plain_label
    #: several short texts as one (the screens use Chinese punctuation in Chinese)
    join: Callable[[Iterable[str]], str] = ", ".join
    #: a number formatted with a CLDR pattern such as ``#,##0.00``
    format_number: Callable[[Any, str], str] = _plain_number
    #: a moment (ISO text or datetime; naive is UTC) as people read it, with its zone
    local_time: Callable[[Any], str] = _plain_time
    #: an aware moment in the interface's time zone
    to_local: Callable[[dt.datetime], dt.datetime] = _utc
    #: a moment typed without a zone (``datetime-local``), placed in the interface's zone
    localize: Callable[[dt.datetime], dt.datetime] = _utc
    #: the words for a yes/no value, in the interface language
    yes: str = "Yes"
    no: str = "No"
    #: for imports: the id of the ``target`` record whose title is the text, or None
    find_record: Callable[[str, str], int | None] | None = None


#: the context used where no screen is involved
PLAIN = FormatContext()


class TextProblem(ValueError):
    """Text that cannot become a value of the field (an imported cell). ``code`` lets the
    screens say it in the interface language; ``message`` is the English fallback a
    plugin's own type can rely on."""

    def __init__(self, code: str, value: str, message: str):
        super().__init__(message)
        self.code = code
        self.value = value
        self.message = message


# -- built-in displays ------------------------------------------------------------------------

def option_label(field: Field, value: Any, ctx: FormatContext) -> str:
    """The label of the option ``value`` of a choice field, or the value itself."""
    for option in field.options:
        if option.value == value:
            return ctx.label(option)
    return str(value)


def display_text(field: Field, value: Any, ctx: FormatContext) -> str:
    return str(value)


def display_nothing(field: Field, value: Any, ctx: FormatContext) -> str:
    """Values the templates render themselves (a table's rows) or do not show (JSON)."""
    return ""


def display_select(field: Field, value: Any, ctx: FormatContext) -> str:
    return option_label(field, value, ctx)


def display_multiselect(field: Field, value: Any, ctx: FormatContext) -> str:
    return ctx.join(option_label(field, v, ctx) for v in value)


def display_boolean(field: Field, value: Any, ctx: FormatContext) -> str:
    return ctx.yes if value else ctx.no


def display_link(field: Field, value: Any, ctx: FormatContext) -> str:
    return value.get("title") if value.get("title") is not None else f"#{value['id']}"


def display_decimal(field: Field, value: Any, ctx: FormatContext) -> str:
    scale = field.precision_scale[1]
    return ctx.format_number(decimal.Decimal(value), f"#,##0.{'0' * scale}" if scale else "#,##0")


def display_money(field: Field, value: Any, ctx: FormatContext) -> str:
    text = display_decimal(field, value, ctx)
    return f"{text} {field.currency}" if field.currency else text


def display_percent(field: Field, value: Any, ctx: FormatContext) -> str:
    return f"{display_decimal(field, value, ctx)} %"


def display_integer(field: Field, value: Any, ctx: FormatContext) -> str:
    # a record's id and version are names, not amounts: no grouping
    return str(value) if field.system else ctx.format_number(value, "#,##0")


def display_datetime(field: Field, value: Any, ctx: FormatContext) -> str:
    return ctx.local_time(value)


def display_attachment(field: Field, value: Any, ctx: FormatContext) -> str:
    return value.get("name", "")


# -- inputs -----------------------------------------------------------------------------------

def no_attributes(field: Field) -> Mapping[str, str]:
    return {}


def no_unit(field: Field) -> str | None:
    return None


def integer_attributes(field: Field) -> Mapping[str, str]:
    return {"step": "1", "inputmode": "decimal"}


def decimal_attributes(field: Field) -> Mapping[str, str]:
    """A number input steps by one unit of the field's last decimal place."""
    scale = field.precision_scale[1]
    return {"step": "1" if scale == 0 else "0." + "0" * (scale - 1) + "1", "inputmode": "decimal"}


def money_unit(field: Field) -> str | None:
    return field.currency or None


def percent_unit(field: Field) -> str | None:
    return "%"


def edit_plain(field: Field, value: Any, ctx: FormatContext) -> str:
    return str(value)


def edit_link(field: Field, value: Any, ctx: FormatContext) -> str:
    return str(value["id"]) if isinstance(value, dict) else str(value)


def edit_datetime(field: Field, value: Any, ctx: FormatContext) -> str:
    """A moment as a ``datetime-local`` input holds it: minutes, in the interface's zone."""
    text = str(value)
    if len(text) == 16 and "T" in text:  # as the user typed it, already local
        return text
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ctx.to_local(moment).strftime("%Y-%m-%dT%H:%M")


# -- reading a form ---------------------------------------------------------------------------
# A form sends text, one entry per input of the name (a ticked box adds one, a list of
# checkboxes several); these undo only what HTML does to values. The record service
# stays the judge of what is valid.

def _first(values: list[str]) -> str:
    return values[0] if values else ""


def form_stripped(field: Field, values: list[str], ctx: FormatContext) -> Any:
    raw = _first(values)
    return None if raw.strip() == "" else raw.strip()


def form_as_typed(field: Field, values: list[str], ctx: FormatContext) -> Any:
    """Long text keeps its spaces and line breaks."""
    raw = _first(values)
    return None if raw.strip() == "" else raw


def form_boolean(field: Field, values: list[str], ctx: FormatContext) -> Any:
    """A checkbox after a hidden ``false``: unticked sends one value, ticked two."""
    if not values:
        return False
    last = values[-1]
    return None if last == "" else last in ("true", "on", "1")


def form_choices(field: Field, values: list[str], ctx: FormatContext) -> Any:
    return [v for v in values if v != ""]


def form_datetime(field: Field, values: list[str], ctx: FormatContext) -> Any:
    """``datetime-local`` has no zone: it is the interface's time zone."""
    raw = _first(values).strip()
    if raw == "":
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return raw  # the record service says what is wrong with it
    return (moment if moment.tzinfo else ctx.localize(moment)).isoformat()


# -- reading an imported cell -----------------------------------------------------------------

_SPLIT = re.compile(r"[,;，；、]")
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "是", "对", "✓"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "否", "不"})


def text_as_is(field: Field, text: str, ctx: FormatContext) -> Any:
    """The record service converts and checks the text."""
    return text


def _option(field: Field, text: str, ctx: FormatContext) -> str:
    folded = text.casefold()
    for option in field.options:
        if folded == option.value.casefold() or any(folded == t.casefold() for t in option.label.values()):
            return option.value
    raise TextProblem("not_a_choice", text, f"“{text}” is not one of the choices")


def text_select(field: Field, text: str, ctx: FormatContext) -> Any:
    """A choice by its value or its label in any language."""
    return _option(field, text, ctx)


def text_multiselect(field: Field, text: str, ctx: FormatContext) -> Any:
    """Choices separated by commas, semicolons or 、 (as Chinese text lists them)."""
    return [_option(field, part.strip(), ctx) for part in _SPLIT.split(text) if part.strip()]


def text_boolean(field: Field, text: str, ctx: FormatContext) -> Any:
    word = text.strip().casefold()
    if word in TRUE_WORDS or word == ctx.yes.casefold():
        return True
    if word in FALSE_WORDS or word == ctx.no.casefold():
        return False
    raise TextProblem("not_yes_no", text, f"“{text}” is not yes or no")


def text_link(field: Field, text: str, ctx: FormatContext) -> Any:
    """A record by its id (``12`` or ``#12``) or its title."""
    text = text.strip()
    if re.fullmatch(r"#?\d+", text):
        return int(text.lstrip("#"))
    found = ctx.find_record(field.target, text) if ctx.find_record is not None else None
    if found is None:
        raise TextProblem("no_record_named", text, f"no record named “{text}”")
    return found


# -- exporting --------------------------------------------------------------------------------
# A spreadsheet cell: numbers stay numbers, choices show their labels and links the linked
# record's title, so the file reads well and imports back.

def export_as_is(field: Field, value: Any, ctx: FormatContext) -> Any:
    return value


def export_link(field: Field, value: Any, ctx: FormatContext) -> Any:
    return display_link(field, value, ctx)


def export_select(field: Field, value: Any, ctx: FormatContext) -> Any:
    return option_label(field, value, ctx)


def export_multiselect(field: Field, value: Any, ctx: FormatContext) -> Any:
    # a plain comma, whatever the language: the import splits on it
    return ", ".join(option_label(field, v, ctx) for v in value)


def export_decimal(field: Field, value: Any, ctx: FormatContext) -> Any:
    return decimal.Decimal(value)


def export_attachment(field: Field, value: Any, ctx: FormatContext) -> Any:
    return value.get("name")


def export_json(field: Field, value: Any, ctx: FormatContext) -> Any:
    return json.dumps(value, ensure_ascii=False)
