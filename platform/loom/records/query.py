"""List queries: filters, sort, keyset cursors, field selection and quick search, parsed
from request arguments into values the record service turns into SQL.

Everything a client sends is checked against the entity's fields and the field type's
operators and converted to typed values here; nothing reaches SQL unparsed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loom.errors import BadRequest, InvalidValue, error_entry
from loom.metadata.model import Entity, Field

_FILTER_KEY = re.compile(r"^filter\[([^\]]*)\](?:\[([^\]]*)\])?$")
OPERATORS = ("eq", "ne", "lt", "lte", "gt", "gte", "in", "nin", "contains", "startswith", "isnull")

# Bounds on what one list request may ask for: the cost of a query (its SQL, its bound
# parameters, the keyset condition, which grows with the square of the sort keys) stays
# small whatever the caller sends.
#: distinct sort keys a caller may give (the id, added last, is not counted)
MAX_SORT_KEYS = 5
#: filter[...] parameters in one request
MAX_FILTERS = 30
#: values in one ``in`` / ``nin`` filter
MAX_IN_VALUES = 500
#: characters of one filter value, of a search, and of a cursor
MAX_FILTER_TEXT = 10_000
MAX_SEARCH_TEXT = 200
MAX_CURSOR_TEXT = 16_384


@dataclass(frozen=True)
class Condition:
    field: Field
    op: str
    value: Any
    #: the table field whose rows hold ``field``: the record matches when one of its rows does
    through: Field | None = None

    @property
    def name(self) -> str:
        return f"{self.through.name}.{self.field.name}" if self.through else self.field.name


@dataclass(frozen=True)
class SortKey:
    field: Field
    descending: bool

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.field.name


@dataclass
class ListQuery:
    conditions: list[Condition] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    limit: int = 50
    after: list[Any] | None = None
    fields: list[str] | None = None
    search: str | None = None
    count: bool = False
    #: count at most this many matches (a screen's "more than 10,000"); None counts them all
    count_limit: int | None = None


def filter_key(key: str) -> tuple[str, str] | None:
    """The field and operator of a ``filter[field][op]`` argument (``eq`` when the operator
    is left out); None for any other argument."""
    match = _FILTER_KEY.match(key)
    return (match.group(1), match.group(2) or "eq") if match else None


def _bad(field_name: str, message: str, code: str = "invalid", /, **params: Any) -> BadRequest:
    return BadRequest(message, code=code if code != "invalid" else None, params=params,
                      errors=[error_entry(field_name, code, message, **params)])


def _unknown(name: str, param: str) -> BadRequest:
    return _bad(param, f"unknown field '{name}' in {param}", "unknown_field", name=name)


def readable_field(entity: Entity, name: str, param: str, readable: set[str] | None) -> Field:
    if name not in entity.all_fields or (readable is not None and name not in readable):
        raise _unknown(name, param)
    return entity.all_fields[name]


def parse_value(f: Field, raw: str, param: str) -> Any:
    try:
        return f.kind.coerce(raw, f)
    except InvalidValue as exc:
        raise _bad(param, f"{param}: {exc}", exc.code, **exc.params) from None
    except ValueError as exc:
        raise _bad(param, f"{param}: {exc}") from None
    except ArithmeticError:
        # OverflowError (a time past year 9999 in UTC), decimal.InvalidOperation ...
        raise _bad(param, f"{param}: the value is out of range") from None


#: a table field -> (its child entity, the child fields the caller may read; None: all),
#: asked only when a filter names a row field
Children = Callable[[Field], tuple[Entity, "set[str] | None"]]


def parse_condition(entity: Entity, name: str, op: str, raw: str,
                    readable: set[str] | None = None, children: Children | None = None,
                    param: str | None = None) -> Condition:
    param = param or f"filter[{name}][{op}]"
    if "." in name:
        table_name, child_name = name.split(".", 1)
        table = readable_field(entity, table_name, param, readable)
        if table.type != "table" or children is None:
            raise _bad(param, f"'{table_name}' has no rows to filter on; only a table field's rows can be "
                              f"filtered as {table_name}.field")
        child, child_readable = children(table)
        if child_name == "id":
            raise _unknown(name, param)
        condition = parse_condition(child, child_name, op, raw, child_readable, param=param)
        return Condition(condition.field, condition.op, condition.value, through=table)
    f = readable_field(entity, name, param, readable)
    if op not in OPERATORS:
        raise _bad(param, f"unknown operator '{op}'; use one of: {', '.join(OPERATORS)}")
    if op not in f.kind.operators:
        allowed = ", ".join(o for o in OPERATORS if o in f.kind.operators) or "none"
        raise _bad(param, f"operator '{op}' does not apply to a {f.type} field; use one of: {allowed}")
    if op == "isnull":
        try:
            return Condition(f, op, _boolean(raw))
        except ValueError:
            raise _bad(param, f"{param}: expected true or false") from None
    if len(raw) > MAX_FILTER_TEXT:
        raise _bad(param, f"{param}: at most {MAX_FILTER_TEXT} characters")
    if op in ("in", "nin"):
        parts = list(dict.fromkeys(p for p in raw.split(",") if p != ""))
        if not parts:
            raise _bad(param, f"{param}: give one or more values separated by commas")
        if len(parts) > MAX_IN_VALUES:
            raise _bad(param, f"{param}: at most {MAX_IN_VALUES} different values")
        return Condition(f, op, [parse_value(f, p, param) for p in parts])
    if op in ("contains", "startswith"):
        if f.type == "multiselect":
            if raw not in f.option_values:
                raise _bad(param, f"{param}: must be one of: {', '.join(f.option_values)}")
            return Condition(f, op, raw)
        return Condition(f, op, raw)
    return Condition(f, op, parse_value(f, raw, param))


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(raw)


def parse_sort(entity: Entity, text: str, readable: set[str] | None = None) -> list[SortKey]:
    """Sort keys from ``name,-other``: a field named again adds nothing (its first mention
    decides), and more than ``MAX_SORT_KEYS`` distinct fields are refused."""
    keys: dict[str, SortKey] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name = part.lstrip("-")
        if name in keys:
            continue
        f = readable_field(entity, name, "sort", readable)
        if not f.kind.sortable:
            raise _bad("sort", f"a {f.type} field cannot be sorted on")
        if name != "id" and sum(k != "id" for k in keys) == MAX_SORT_KEYS:
            raise _bad("sort", f"sort on at most {MAX_SORT_KEYS} fields")
        keys[name] = SortKey(f, part.startswith("-"))
    return list(keys.values())


def parse_fields(entity: Entity, text: str, readable: set[str] | None = None) -> list[str]:
    """The fields of ``fields=a,b``: each known and readable, each once."""
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if len(names) > len(entity.all_fields):
        raise _bad("fields", f"{entity.name} has only {len(entity.all_fields)} fields")
    for name in names:
        readable_field(entity, name, "fields", readable)
    return names


class Cursors:
    """Opaque, signed keyset cursors: the last row's sort values, tied to the sort order
    they were made for, so a tampered or mismatched cursor is refused, not obeyed."""

    def __init__(self, secret: str | bytes):
        self.secret = secret.encode() if isinstance(secret, str) else secret

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()[:24]

    def encode(self, entity: Entity, sort: list[SortKey], values: list[Any]) -> str:
        payload = json.dumps([entity.name, [str(k) for k in sort], values], separators=(",", ":"),
                             default=str).encode()
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._sign(payload)

    def decode(self, entity: Entity, sort: list[SortKey], cursor: str) -> list[Any]:
        bad = _bad("cursor", "cursor is not valid for this list; start again without it")
        body, _, signature = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError):
            raise bad from None
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode("utf-8", "replace")):
            raise bad
        try:
            name, keys, values = json.loads(payload)
        except (ValueError, TypeError):
            raise bad from None
        if name != entity.name or keys != [str(k) for k in sort] or len(values) != len(sort):
            raise bad
        typed = []
        for key, value in zip(sort, values, strict=True):
            typed.append(None if value is None else parse_value(key.field, value, "cursor"))
        return typed


def parse_list_query(entity: Entity, args: Mapping[str, Any], *, cursors: Cursors,
                     default_limit: int, max_limit: int, readable: set[str] | None = None,
                     children: Children | None = None) -> ListQuery:
    """Parse list arguments (a werkzeug MultiDict or a plain mapping) into a ``ListQuery``."""
    query = ListQuery(limit=default_limit)
    known = {"sort", "limit", "cursor", "fields", "search", "count"}
    items = args.items(multi=True) if hasattr(args, "getlist") else args.items()
    for key, raw in items:
        if "\x00" in key or "\x00" in raw:
            raise _bad(key, f"{key}: query values cannot contain the NUL character")
        parsed = filter_key(key)
        if parsed:
            if len(query.conditions) == MAX_FILTERS:
                raise _bad(key, f"at most {MAX_FILTERS} filters in one request")
            query.conditions.append(parse_condition(entity, *parsed, raw, readable, children))
        elif key not in known:
            raise _bad(key, f"unknown query parameter '{key}'; use filter[field][op], sort, limit, "
                            "cursor, fields, search or count")
    if args.get("sort"):
        query.sort = parse_sort(entity, args["sort"], readable)
    else:
        # the entity's default order, less any key the caller may not see
        default = ",".join(k for k in entity.list.sort.split(",")
                           if readable is None or k.lstrip("-") in readable)
        query.sort = parse_sort(entity, default, readable)
    if not any(k.field.name == "id" for k in query.sort):
        descending = query.sort[-1].descending if query.sort else False
        query.sort.append(SortKey(entity.field("id"), descending))
    if args.get("limit") is not None:
        try:
            query.limit = int(args["limit"][:20])
        except ValueError:
            raise _bad("limit", f"limit must be a whole number from 1 to {max_limit}") from None
        if not 1 <= query.limit <= max_limit:
            raise _bad("limit", f"limit must be a whole number from 1 to {max_limit}")
    if args.get("cursor"):
        if len(args["cursor"]) > MAX_CURSOR_TEXT:
            raise _bad("cursor", "cursor is not valid for this list; start again without it")
        query.after = cursors.decode(entity, query.sort, args["cursor"])
    if args.get("fields"):
        query.fields = parse_fields(entity, args["fields"], readable)
    if args.get("search"):
        if len(args["search"]) > MAX_SEARCH_TEXT:
            raise _bad("search", f"search for at most {MAX_SEARCH_TEXT} characters")
        query.search = args["search"].strip() or None
    if args.get("count"):
        if args["count"] != "exact":
            raise _bad("count", "count takes the value 'exact'")
        query.count = True
    return query
