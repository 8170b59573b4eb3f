"""Field types: how each type of the metadata language converts values, is stored and
is filtered. One registry serves validation, type changes, filters and the API.

``coerce`` is strict: it returns a value of the type or raises ``ValueError`` with a
message a user can act on. It never rounds or truncates, so a type change that would
alter data is refused instead.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from loom.metadata.model import Field

COMPARE = frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "isnull"})
TEXT_OPS = frozenset({"eq", "ne", "in", "nin", "contains", "startswith", "isnull", "lt", "lte", "gt", "gte"})
EQUALITY = frozenset({"eq", "ne", "in", "nin", "isnull"})


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
    """One type of the metadata language."""

    name: str
    coerce: Callable[[Any, Field], Any]
    sql_type: Callable[[Field], sa.types.TypeEngine] | None
    json_schema: Callable[[Field], dict[str, Any]]
    operators: frozenset[str] = EQUALITY
    text_like: bool = False
    numeric: bool = False
    #: properties of the field definition this type accepts beyond the common ones
    properties: frozenset[str] = frozenset()

    @property
    def stored(self) -> bool:
        """Whether the field has a column of its own (a table field has child rows instead)."""
        return self.sql_type is not None

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
        raise ValueError("expected text")
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return FieldType.to_json(None, value)  # type: ignore[arg-type]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int | float):
        return str(value)
    if not isinstance(value, str):
        raise ValueError("expected text")
    if "\x00" in value:
        raise ValueError("text cannot contain the NUL character")
    return value


INT64 = 2**63


def _integer(value: Any, field: Field) -> int:
    result = _whole(value)
    if not -INT64 <= result < INT64:
        raise ValueError("number too large")
    return result


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float | decimal.Decimal):
        if value != value or value in (float("inf"), float("-inf")) or value != int(value):
            raise ValueError("expected a whole number")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
    raise ValueError("expected a whole number")


def _decimal(value: Any, field: Field) -> decimal.Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError("expected a number")
    try:
        number = decimal.Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except (decimal.InvalidOperation, ValueError):
        raise ValueError("expected a number") from None
    if not number.is_finite():
        raise ValueError("expected a finite number")
    precision, scale = field.precision_scale
    try:
        rounded = number.quantize(decimal.Decimal(1).scaleb(-scale))
    except decimal.InvalidOperation:
        raise ValueError(f"at most {precision - scale} digits before the decimal point") from None
    if rounded != number:
        raise ValueError(f"at most {scale} decimal places")
    whole = abs(int(rounded))
    if whole and len(str(whole)) > precision - scale:
        raise ValueError(f"at most {precision - scale} digits before the decimal point")
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
    raise ValueError("expected true or false")


def _date(value: Any, field: Field) -> dt.date:
    if isinstance(value, dt.datetime):
        if value.time() != dt.time(0):
            raise ValueError("expected a date without a time of day")
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("expected a date as YYYY-MM-DD")


def _datetime(value: Any, field: Field) -> dt.datetime:
    if isinstance(value, dt.datetime):
        result = value
    elif isinstance(value, dt.date):
        result = dt.datetime.combine(value, dt.time(0))
    elif isinstance(value, str):
        try:
            result = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expected a date and time as YYYY-MM-DDTHH:MM:SS with a time zone") from None
    else:
        raise ValueError("expected a date and time as YYYY-MM-DDTHH:MM:SS with a time zone")
    if result.tzinfo is None:
        result = result.replace(tzinfo=dt.UTC)
    return result.astimezone(dt.UTC)


def _select(value: Any, field: Field) -> str:
    text = _text(value, field)
    if text not in field.option_values:
        raise ValueError(f"must be one of: {', '.join(field.option_values)}")
    return text


def _multiselect(value: Any, field: Field) -> list[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()] if value.strip() else []
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of choices")
    result = []
    for item in value:
        if not isinstance(item, str) or item not in field.option_values:
            raise ValueError(f"each choice must be one of: {', '.join(field.option_values)}")
        if item not in result:
            result.append(item)
    return result


def _link(value: Any, field: Field) -> int:
    if isinstance(value, dict):
        value = value.get("id")
    try:
        ident = _integer(value, field)
    except ValueError:
        raise ValueError(f"expected the id of a {field.target} record") from None
    if ident < 1:
        raise ValueError(f"expected the id of a {field.target} record")
    return ident


def _json(value: Any, field: Field) -> Any:
    if isinstance(value, str) and field.type != "json":
        raise ValueError("expected JSON")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("expected a JSON value") from None
    return value


ATTACHMENT_KEYS = {"key", "name", "size", "content_type"}


def _attachment(value: Any, field: Field) -> dict[str, Any]:
    # Only the key counts: the record service puts the upload's own name, size and type in
    # its place, and refuses a key that is not the caller's upload for this field.
    if not isinstance(value, dict) or "key" not in value or set(value) - ATTACHMENT_KEYS:
        raise ValueError("expected an uploaded file: {key} (the key its upload returned)")
    if not isinstance(value["key"], str):
        raise ValueError("expected an uploaded file: {key} (the key its upload returned)")
    return dict(value)


def _table(value: Any, field: Field) -> list:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {field.target} rows")
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


_BUILTIN = [
    FieldType("string", _text, _string_sql, _string_schema(), TEXT_OPS, text_like=True, properties=_TEXT),
    FieldType("text", _text, lambda f: sa.Text(), _string_schema(), TEXT_OPS, text_like=True, properties=_TEXT),
    FieldType("email", _text, _string_sql, _string_schema("email"), TEXT_OPS, text_like=True, properties=_TEXT),
    FieldType("phone", _text, _string_sql, _string_schema(), TEXT_OPS, text_like=True, properties=_TEXT),
    FieldType("url", _text, _string_sql, _string_schema("uri"), TEXT_OPS, text_like=True, properties=_TEXT),
    FieldType("integer", _integer, lambda f: sa.BigInteger(), _integer_schema, COMPARE, numeric=True, properties=_NUMBER),
    FieldType("decimal", _decimal, _decimal_sql, _number_schema, COMPARE, numeric=True, properties=_DECIMAL),
    FieldType("money", _decimal, _decimal_sql, _number_schema, COMPARE, numeric=True, properties=_DECIMAL | {"currency"}),
    FieldType("percent", _decimal, _decimal_sql, _number_schema, COMPARE, numeric=True, properties=_DECIMAL),
    FieldType("boolean", _boolean, lambda f: sa.Boolean(create_constraint=False), lambda f: {"type": "boolean"}, EQUALITY),
    FieldType("date", _date, lambda f: sa.Date(), lambda f: {"type": "string", "format": "date"}, COMPARE, properties=_NUMBER),
    FieldType("datetime", _datetime, lambda f: sa.DateTime(timezone=True),
              lambda f: {"type": "string", "format": "date-time"}, COMPARE, properties=_NUMBER),
    FieldType("select", _select, _string_sql, _select_schema, EQUALITY, properties=frozenset({"options"})),
    FieldType("multiselect", _multiselect, lambda f: sa.JSON(), _multiselect_schema,
              frozenset({"contains", "isnull"}), properties=frozenset({"options"})),
    FieldType("link", _link, lambda f: sa.BigInteger(), _link_schema, EQUALITY, properties=frozenset({"target"})),
    FieldType("table", _table, None, _table_schema, frozenset(), properties=frozenset({"target"})),
    FieldType("json", _json, lambda f: sa.JSON(), lambda f: {}, frozenset({"isnull"})),
    FieldType("attachment", _attachment, lambda f: sa.JSON(), _attachment_schema,
              frozenset({"isnull"}), properties=frozenset({"max_size", "accept"})),
]

FIELD_TYPES: dict[str, FieldType] = {t.name: t for t in _BUILTIN}

#: properties every field may carry, whatever its type
COMMON_PROPERTIES = frozenset({"name", "type", "label", "help", "required", "unique", "default",
                               "read_only", "read_only_when", "hidden", "index", "renamed_from", "secret"})


def field_type(name: str) -> FieldType:
    return FIELD_TYPES[name]
