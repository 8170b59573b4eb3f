"""Field types: everything a type of the metadata language decides, in one registry.

A ``FieldType`` owns how its values are stored (``sql_type``), checked (``coerce``), sent
as JSON (``to_json``, ``json_schema``), filtered (``operators``), shown to a person
(``display``), edited (``widget``, ``input_type``, ``input_attributes``, ``unit``,
``edit_text``), read back from a form or an imported cell (``parse_form``,
``parse_text``) and exported (``export``). The API, the screens, imports and exports
ask the registry instead of branching on a type's name, so a plugin adds a type with
``register_field_type`` and every part of Loom handles it.

``coerce`` is strict: it returns a value of the type or raises ``ValueError`` with a
message a user can act on. It never rounds or truncates, so a type change that would
alter data is refused instead.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from loom.errors import InvalidValue
from loom.metadata import formatting as fmt
from loom.metadata.formatting import FormatContext

if TYPE_CHECKING:
    from loom.metadata.model import Field

COMPARE = frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "isnull"})
TEXT_OPS = frozenset({"eq", "ne", "in", "nin", "contains", "startswith", "isnull", "lt", "lte", "gt", "gte"})
EQUALITY = frozenset({"eq", "ne", "in", "nin", "isnull"})

#: the inputs the screens know how to draw: a plain <input type=...>, a text area, a
#: drop-down, a group of checkboxes, one checkbox, a record picker, a file upload, a table
#: of child rows, none (shown read-only), or a template the type names (``template``)
WIDGETS = ("input", "textarea", "select", "checks", "checkbox", "link", "file", "table", "none", "template")
#: the filter controls of a list, and the operators each sends
FILTER_WIDGETS: Mapping[str, tuple[str, ...]] = {
    "options": ("in",), "boolean": ("eq",), "range": ("gte", "lte"), "multiselect": ("contains",),
    "link": ("eq",), "contains": ("contains",),
}

#: ``display(field, value, ctx)``, ``export(...)``: a value (never empty) for a person or a file
ValueFunction = Callable[["Field", Any, FormatContext], Any]
#: ``extension(field, value, text, ctx)``: the text another display made, extended
DisplayExtension = Callable[["Field", Any, Any, FormatContext], Any]


class LoomDecimal(sa.TypeDecorator):
    """Exact decimals everywhere: NUMERIC on PostgreSQL; on SQLite the value is bound as
    text, which SQLite's NUMERIC affinity stores as a number, and read back exactly."""

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int):
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.scale = scale

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Numeric(asdecimal=False))
        return dialect.type_descriptor(sa.Numeric(self.impl.precision, self.scale))

    def process_bind_param(self, value, dialect):
        if value is None or dialect.name != "sqlite":
            return value
        return str(value)

    def process_result_value(self, value, dialect):
        if value is None or isinstance(value, decimal.Decimal):
            return value
        return decimal.Decimal(repr(value)).quantize(decimal.Decimal(1).scaleb(-self.scale))


@dataclass(frozen=True)
class FieldType:
    """One type of the metadata language. Only ``name``, ``coerce``, ``sql_type`` and
    ``json_schema`` are required; the rest default to a plain text input whose value is
    shown, parsed and exported as it is."""

    name: str
    #: ``coerce(value, field)``: the value as this type, or ``ValueError`` saying why not
    coerce: Callable[[Any, Field], Any]
    #: the column type; None for a type without a column of its own (a table's rows)
    sql_type: Callable[[Field], sa.types.TypeEngine] | None
    #: the value's JSON Schema, for OpenAPI
    json_schema: Callable[[Field], dict[str, Any]]
    #: the filter operators the API, row scopes and lists accept
    operators: frozenset[str] = EQUALITY
    text_like: bool = False
    numeric: bool = False
    #: properties of the field definition this type accepts beyond the common ones
    properties: frozenset[str] = frozenset()
    #: properties a field of this type must have (``options``, ``target``)
    requires: frozenset[str] = frozenset()
    #: what a list may do with it: sort on it, show it as a column, name a record by it, index it
    sortable: bool = True
    in_lists: bool = True
    names_records: bool = True
    indexable: bool = True
    #: shown across the whole form (long text, a table)
    wide: bool = False
    # -- meeting people (see loom.metadata.formatting) --
    #: ``display(field, value, ctx) -> str``: a value (never empty) as a person reads it
    display: ValueFunction = fmt.display_text
    #: functions that extend ``display`` where a value is shown in a page (``extend_display``)
    display_extensions: tuple[DisplayExtension, ...] = ()
    #: one of ``WIDGETS``
    widget: str = "input"
    #: the ``type`` of an ``input`` widget
    input_type: str = "text"
    #: the template a ``template`` widget includes (it receives f, value, name, input_id, attrs)
    template: str | None = None
    #: ``input_attributes(field)``: more attributes of the input (step, inputmode, min, ...)
    input_attributes: Callable[[Field], Mapping[str, str]] = fmt.no_attributes
    #: ``unit(field)``: what follows the input (a currency, %), or None
    unit: Callable[[Field], str | None] = fmt.no_unit
    #: ``edit_text(field, value, ctx)``: a value (JSON form, never None) as the input holds it
    edit_text: ValueFunction = fmt.edit_plain
    #: ``parse_form(field, values, ctx)``: the texts a form sent under the field's name -> a value
    parse_form: Callable[[Field, list[str], FormatContext], Any] = fmt.form_stripped
    #: ``parse_text(field, text, ctx)``: an imported cell -> a value; None: not typed as text
    #: (then neither imported nor set on many records at once). Raises ``TextProblem``.
    parse_text: Callable[[Field, str, FormatContext], Any] | None = fmt.text_as_is
    #: ``export(field, value, ctx)``: a value (never empty) as a spreadsheet cell
    export: ValueFunction = fmt.export_as_is
    #: the list's filter control (a key of ``FILTER_WIDGETS``), or None for no filter
    filter_widget: str | None = None

    @property
    def stored(self) -> bool:
        """Whether the field has a column of its own (a table field has child rows instead)."""
        return self.sql_type is not None

    @property
    def editable(self) -> bool:
        """Whether a form lets a person change it (a JSON value is only shown)."""
        return self.widget != "none"

    @property
    def typed(self) -> bool:
        """Whether a value can be typed as text: imported from a cell, set on many records."""
        return self.parse_text is not None

    def show(self, field: Field, value: Any, ctx: FormatContext) -> Any:
        """``display``, then every display extension: the value as a page shows it (an
        extension may return ``markupsafe.Markup`` built from escaped parts)."""
        text = self.display(field, value, ctx)
        for extension in self.display_extensions:
            text = extension(field, value, text, ctx)
        return text

    def to_json(self, value: Any) -> Any:
        if isinstance(value, decimal.Decimal):
            return format(value, "f")
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value


# -- converters ---------------------------------------------------------------------------

def _text(value: Any, field: Field) -> str:
    if isinstance(value, bool) or isinstance(value, dict | list):
        raise InvalidValue("not_text", "expected text")
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return FieldType.to_json(None, value)  # type: ignore[arg-type]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise InvalidValue("not_text", "expected text")
    if "\x00" in value:
        raise InvalidValue("nul_character", "text cannot contain the NUL character")
    return value


INT64 = 2**63


def _integer(value: Any, field: Field) -> int:
    result = _whole(value)
    if not -INT64 <= result < INT64:
        raise InvalidValue("number_too_large", "number too large")
    return result


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidValue("not_whole", "expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float | decimal.Decimal):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise InvalidValue("not_whole", "expected a whole number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
    raise InvalidValue("not_whole", "expected a whole number")


def _decimal(value: Any, field: Field) -> decimal.Decimal:
    if isinstance(value, bool) or value is None:
        raise InvalidValue("not_a_number", "expected a number")
    try:
        number = decimal.Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (decimal.InvalidOperation, ValueError):
        raise InvalidValue("not_a_number", "expected a number") from None
    if not number.is_finite():
        raise InvalidValue("not_a_number", "expected a finite number")
    precision, scale = field.precision_scale
    try:
        rounded = number.quantize(decimal.Decimal(1).scaleb(-scale))
    except decimal.InvalidOperation:
        raise InvalidValue("too_many_digits", f"at most {precision - scale} digits before the decimal point",
                           digits=precision - scale) from None
    if rounded != number:
        raise InvalidValue("too_many_decimals", f"at most {scale} decimal places", places=scale)
    whole = abs(int(rounded))
    if whole and len(str(whole)) > precision - scale:
        raise InvalidValue("too_many_digits", f"at most {precision - scale} digits before the decimal point",
                           digits=precision - scale)
    return rounded


def _boolean(value: Any, field: Field) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "yes", "y", "on"):
            return True
        if text in ("false", "0", "no", "n", "off"):
            return False
    raise InvalidValue("not_boolean", "expected true or false")


def _date(value: Any, field: Field) -> dt.date:
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise InvalidValue("not_a_date", "expected a date without a time of day")
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidValue("not_a_date", "expected a date as YYYY-MM-DD")


def _datetime(value: Any, field: Field) -> dt.datetime:
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, dt.date):
        result = dt.datetime.combine(value, dt.time(0))
    elif isinstance(value, str):
        try:
            result = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidValue("not_a_datetime", "expected a date and time as YYYY-MM-DDTHH:MM:SS with a time zone") from None
    else:
        raise InvalidValue("not_a_datetime", "expected a date and time as YYYY-MM-DDTHH:MM:SS with a time zone")
    if result.tzinfo is None:
        result = result.replace(tzinfo=dt.UTC)
    return result.astimezone(dt.UTC)


def _select(value: Any, field: Field) -> str:
    text = _text(value, field)
    if text not in field.option_values:
        raise InvalidValue("not_an_option", f"must be one of: {', '.join(field.option_values)}",
                           options=list(field.option_values))
    return text


def _multiselect(value: Any, field: Field) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()] if value.strip() else []
    if not isinstance(value, list | tuple):
        raise InvalidValue("not_a_list", "expected a list of choices")
    result = []
    for item in value:
        if not isinstance(item, str) or item not in field.option_values:
            raise InvalidValue("not_an_option", f"each choice must be one of: {', '.join(field.option_values)}",
                               options=list(field.option_values))
        if item not in result:
            result.append(item)
    return result


def _link(value: Any, field: Field) -> int:
    if isinstance(value, dict):
        value = value.get("id")
    try:
        ident = _integer(value, field)
    except ValueError:
        raise InvalidValue("not_a_link", f"expected the id of a {field.target} record", entity=field.target) from None
    if ident < 1:
        raise InvalidValue("not_a_link", f"expected the id of a {field.target} record", entity=field.target)
    return ident


def _json(value: Any, field: Field) -> Any:
    if isinstance(value, str) and field.type != "json":
        raise InvalidValue("not_json", "expected JSON")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidValue("not_json", "expected a JSON value") from None
    return value


ATTACHMENT_KEYS = {"key", "name", "size", "content_type"}


def _attachment(value: Any, field: Field) -> dict[str, Any]:
    # Only the key counts: the record service puts the upload's own name, size and type in
    # its place, and refuses a key that is not the caller's upload for this field.
    if not isinstance(value, dict) or "key" not in value or set(value) - ATTACHMENT_KEYS:
        raise InvalidValue("not_an_upload", "expected an uploaded file: {key} (the key its upload returned)")
    if not isinstance(value["key"], str):
        raise InvalidValue("not_an_upload", "expected an uploaded file: {key} (the key its upload returned)")
    return dict(value)


def _table(value: Any, field: Field) -> list:
    if not isinstance(value, list):
        raise InvalidValue("not_a_list", f"expected a list of {field.target} rows")
    return value


# -- JSON Schema fragments (for OpenAPI) ----------------------------------------------------

def _string_schema(fmt: str | None = None) -> Callable[[Field], dict]:
    def schema(field: Field) -> dict:
        result: dict[str, Any] = {"type": "string"}
        if fmt:
            result["format"] = fmt
        if field.max_length:
            result["maxLength"] = field.max_length
        if field.pattern:
            result["pattern"] = field.pattern
        return result
    return schema


def _number_schema(field: Field) -> dict:
    return {"type": "string", "format": "decimal",
            "pattern": r"^-?\d+(\.\d+)?$",
            "description": f"decimal with up to {field.precision_scale[1]} places, as text"}


def _integer_schema(field: Field) -> dict:
    result: dict[str, Any] = {"type": "integer"}
    if field.min is not None:
        result["minimum"] = field.min
    if field.max is not None:
        result["maximum"] = field.max
    return result


def _select_schema(field: Field) -> dict:
    return {"type": "string", "enum": list(field.option_values)}


def _multiselect_schema(field: Field) -> dict:
    return {"type": "array", "items": {"type": "string", "enum": list(field.option_values)}, "uniqueItems": True}


def _link_schema(field: Field) -> dict:
    return {
        "description": f"a {field.target} record: its id on input; on output its id and title",
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "object", "required": ["id"],
             "properties": {"id": {"type": "integer"}, "title": {"type": ["string", "null"]}}},
        ],
    }


def _attachment_schema(field: Field) -> dict:
    return {"type": "object", "required": ["key"],
            "description": "an uploaded file; on input only its key counts (the key its upload returned)",
            "properties": {"key": {"type": "string"}, "name": {"type": "string"},
                           "size": {"type": "integer"}, "content_type": {"type": "string"}}}


def _table_schema(field: Field) -> dict:
    return {"type": "array", "items": {"$ref": f"#/components/schemas/{field.target}"}}


_TEXT = frozenset({"max_length", "pattern", "validators"})
_NUMBER = frozenset({"min", "max"})
_DECIMAL = _NUMBER | {"precision", "scale"}


def _string_sql(field: Field) -> sa.types.TypeEngine:
    return sa.String()


def _decimal_sql(field: Field) -> sa.types.TypeEngine:
    return LoomDecimal(*field.precision_scale)


_TEXTUAL: dict[str, Any] = {"text_like": True, "properties": _TEXT, "filter_widget": "contains"}
_NUMBER_INPUT: dict[str, Any] = {"numeric": True, "input_type": "number", "filter_widget": "range"}
_DECIMAL_INPUT: dict[str, Any] = {**_NUMBER_INPUT, "input_attributes": fmt.decimal_attributes,
                                  "export": fmt.export_decimal}
#: values that are not one comparable thing: no sorting, naming or indexing by them
_COMPOSITE: dict[str, Any] = {"sortable": False, "names_records": False, "indexable": False}

_BUILTIN = [
    FieldType("string", _text, _string_sql, _string_schema(), TEXT_OPS,
              **{**_TEXTUAL, "properties": _TEXT | {"autonumber", "gap_free"}}),
    FieldType("text", _text, lambda f: sa.Text(), _string_schema(), TEXT_OPS, **_TEXTUAL, indexable=False,
              wide=True, widget="textarea", parse_form=fmt.form_as_typed),
    FieldType("email", _text, _string_sql, _string_schema("email"), TEXT_OPS, **_TEXTUAL, input_type="email"),
    FieldType("phone", _text, _string_sql, _string_schema(), TEXT_OPS, **_TEXTUAL, input_type="tel"),
    FieldType("url", _text, _string_sql, _string_schema("uri"), TEXT_OPS, **_TEXTUAL, input_type="url"),
    FieldType("integer", _integer, lambda f: sa.BigInteger(), _integer_schema, COMPARE, properties=_NUMBER,
              **_NUMBER_INPUT, input_attributes=fmt.integer_attributes, display=fmt.display_integer),
    FieldType("decimal", _decimal, _decimal_sql, _number_schema, COMPARE, properties=_DECIMAL,
              **_DECIMAL_INPUT, display=fmt.display_decimal),
    FieldType("money", _decimal, _decimal_sql, _number_schema, COMPARE, properties=_DECIMAL | {"currency"},
              **_DECIMAL_INPUT, display=fmt.display_money, unit=fmt.money_unit),
    FieldType("percent", _decimal, _decimal_sql, _number_schema, COMPARE, properties=_DECIMAL,
              **_DECIMAL_INPUT, display=fmt.display_percent, unit=fmt.percent_unit),
    FieldType("boolean", _boolean, lambda f: sa.Boolean(create_constraint=False), lambda f: {"type": "boolean"},
              EQUALITY, widget="checkbox", display=fmt.display_boolean, parse_form=fmt.form_boolean,
              parse_text=fmt.text_boolean, export=fmt.display_boolean, filter_widget="boolean"),
    FieldType("date", _date, lambda f: sa.Date(), lambda f: {"type": "string", "format": "date"}, COMPARE,
              properties=_NUMBER, input_type="date", filter_widget="range"),
    FieldType("datetime", _datetime, lambda f: sa.DateTime(timezone=True),
              lambda f: {"type": "string", "format": "date-time"}, COMPARE, properties=_NUMBER,
              input_type="datetime-local", display=fmt.display_datetime, edit_text=fmt.edit_datetime,
              parse_form=fmt.form_datetime, filter_widget="range"),
    FieldType("select", _select, _string_sql, _select_schema, EQUALITY, properties=frozenset({"options"}),
              requires=frozenset({"options"}), widget="select", display=fmt.display_select,
              parse_text=fmt.text_select, export=fmt.export_select, filter_widget="options"),
    FieldType("multiselect", _multiselect, lambda f: sa.JSON(), _multiselect_schema,
              frozenset({"contains", "isnull"}), properties=frozenset({"options"}), requires=frozenset({"options"}),
              **_COMPOSITE, widget="checks", display=fmt.display_multiselect, parse_form=fmt.form_choices,
              parse_text=fmt.text_multiselect, export=fmt.export_multiselect, filter_widget="multiselect"),
    FieldType("link", _link, lambda f: sa.BigInteger(), _link_schema, EQUALITY, properties=frozenset({"target"}),
              requires=frozenset({"target"}), widget="link", display=fmt.display_link, edit_text=fmt.edit_link,
              parse_text=fmt.text_link, export=fmt.export_link, filter_widget="link"),
    FieldType("table", _table, None, _table_schema, frozenset(), properties=frozenset({"target"}),
              requires=frozenset({"target"}), **_COMPOSITE, in_lists=False, wide=True, widget="table",
              display=fmt.display_nothing, parse_text=None),
    FieldType("json", _json, lambda f: sa.JSON(), lambda f: {}, frozenset({"isnull"}), **_COMPOSITE,
              in_lists=False, widget="none", display=fmt.display_nothing, parse_text=None, export=fmt.export_json),
    FieldType("attachment", _attachment, lambda f: sa.JSON(), _attachment_schema,
              frozenset({"isnull"}), properties=frozenset({"max_size", "accept"}), **_COMPOSITE, widget="file",
              display=fmt.display_attachment, parse_text=None, export=fmt.export_attachment),
]
BUILTIN_TYPES = frozenset(t.name for t in _BUILTIN)

FIELD_TYPES: dict[str, FieldType] = {t.name: t for t in _BUILTIN}

#: properties every field may carry, whatever its type
COMMON_PROPERTIES = frozenset({"name", "type", "label", "help", "required", "unique", "default",
                               "read_only", "read_only_when", "hidden", "index", "renamed_from", "secret"})


class UnknownFieldType(KeyError):
    """A type no one registered (often: the plugin that adds it is not installed)."""

    def __str__(self) -> str:
        return f"no field type named {self.args[0]!r}; is the plugin that adds it installed?"


def field_type(name: str) -> FieldType:
    """The registered type called ``name``; ``UnknownFieldType`` (a ``KeyError``) if none is."""
    try:
        return FIELD_TYPES[name]
    except KeyError:
        raise UnknownFieldType(name) from None


def field_type_names() -> tuple[str, ...]:
    """Every registered type's name: the built-in ones first, then the added ones."""
    return tuple(FIELD_TYPES)
