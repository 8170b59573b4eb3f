"""Every function of the language, in one registry: adding a function is one entry.

An entry says how the checker types a call (``params``, ``result``, ``check``), how
Python computes it for one record (``python``) and how SQL computes it (``sql``). Both
receive the arguments already computed: Python values, or SQLAlchemy elements. With
``nulls=True`` (most functions) a null argument gives null without calling ``python``,
as SQL functions do.

Parameter kinds: a type name (``number``, ``text``, ``date``, ``boolean``); ``value``
(any type, the same for every ``value`` argument: the branches of ``if``); ``ordered``
(like ``value``, but a number, text, date or date-time); ``any`` (anything, unrelated).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from loom.expressions import dialects as d
from loom.expressions.nodes import BOOLEAN, DATE, DATETIME, NUMBER, TEXT, Literal, Node


@dataclass(frozen=True)
class Moment:
    """What a time-dependent function reads: the same instant for Python and SQL."""

    today: dt.date
    now: dt.datetime


@dataclass(frozen=True)
class Function:
    name: str
    #: how the call is written, for error messages and the reference
    signature: str
    params: tuple[str, ...]
    #: the result's type, or "same": the type the ``value``/``ordered`` arguments share
    result: str
    #: ``python(args, moment)`` -> the value
    python: Callable[[list[Any], Moment], Any]
    #: ``sql(args, nodes, moment)`` -> a SQLAlchemy element
    sql: Callable[[list[ColumnElement], Sequence[Node], Moment], ColumnElement]
    #: the last parameter may repeat
    variadic: bool = False
    #: a null argument gives null
    nulls: bool = True
    #: ``check(args)`` -> a message when the (typed) arguments cannot be used, else None
    check: Callable[[Sequence[Node]], str | None] | None = None
    #: ``integral(args)``: whether the number it gives is always whole
    integral: Callable[[Sequence[Node]], bool] = lambda args: False
    #: reads today's date or the current time
    time_dependent: bool = False


_ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ASCII_UPPER = _ASCII_LOWER.upper()
_TO_UPPER = str.maketrans(_ASCII_LOWER, _ASCII_UPPER)
_TO_LOWER = str.maketrans(_ASCII_UPPER, _ASCII_LOWER)


def _all_integral(args: Sequence[Node]) -> bool:
    return all(a.integral or a.type != NUMBER for a in args) and any(a.type == NUMBER for a in args)


def _round(value: Any, digits: int) -> Decimal | int:
    if isinstance(value, int):
        return value
    return Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)


def _round_digits(args: Sequence[Node]) -> str | None:
    digits = args[1]
    if not (isinstance(digits, Literal) and isinstance(digits.value, int) and not isinstance(digits.value, bool)
            and 0 <= digits.value <= 10):
        return "round(x, digits): digits must be a whole number from 0 to 10 written out, e.g. round(x, 2)"
    return None


def _whole_days(args: Sequence[Node]) -> str | None:
    if args[1].type == NUMBER and not args[1].integral:
        return "add_days(date, days): days must be a whole number (an integer field, or round(x, 0))"
    return None


def _extremum(sql_name: str, pick: Callable) -> tuple[Callable, Callable]:
    def python(args: list[Any], _m: Moment) -> Any:
        present = [a for a in args if a is not None]
        return pick(present) if present else None

    def sql(args: list[ColumnElement], nodes: Sequence[Node], _m: Moment) -> ColumnElement:
        # PostgreSQL's LEAST/GREATEST skip nulls; SQLite's min/max give null on any null,
        # so each argument stands in for itself or, when null, for another one
        textual = any(n.type == TEXT for n in nodes)
        sqlite_args = [sa.func.coalesce(a, *(b for j, b in enumerate(args) if j != i)) for i, a in enumerate(args)]
        postgres_args = [a.collate("C") if textual else a for a in args]
        return d.per_dialect(getattr(sa.func, sql_name[0])(*sqlite_args),
                             postgresql=getattr(sa.func, sql_name[1])(*postgres_args))
    return python, sql


def _add_days(args: list[Any], _m: Moment) -> dt.date | None:
    try:
        return args[0] + dt.timedelta(days=int(args[1]))
    except OverflowError:
        return None


def _seconds(hours: Any) -> int:
    """Hours as whole seconds, half away from zero (what both databases add)."""
    return int((Decimal(hours) * 3600).quantize(Decimal(1), ROUND_HALF_UP))


def _add_hours(args: list[Any], _m: Moment) -> dt.datetime | None:
    try:
        return args[0] + dt.timedelta(seconds=_seconds(args[1]))
    except OverflowError:
        return None


def _add_hours_sql(args: list[ColumnElement], _n, _m) -> ColumnElement:
    seconds = sa.func.round(d.op(sa.cast(args[1], sa.Numeric()), "*", sa.literal_column("3600")))
    # SQLite's strftime keeps milliseconds (%f); printf of a null would add "+0 seconds"
    sqlite = sa.case((args[1].is_(None), sa.null()), else_=sa.func.strftime(
        sa.literal_column("'%Y-%m-%d %H:%M:%f'"), args[0],
        sa.func.printf(sa.literal_column("'%+d seconds'"), sa.cast(seconds, sa.BigInteger()))))
    return d.per_dialect(sqlite, postgresql=d.op(args[0], "+", d.op(seconds, "*", sa.literal_column(
        "INTERVAL '1 second'"))), type_=sa.DateTime(timezone=True))


def _is_empty_sql(args: list[ColumnElement], nodes: Sequence[Node], _m: Moment) -> ColumnElement:
    if nodes[0].type == TEXT:
        return sa.or_(args[0].is_(None), d.op(args[0], "=", sa.literal_column("''"), comparison=True))
    return args[0].is_(None)


def _length(value: ColumnElement) -> ColumnElement:
    return d.per_dialect(sa.func.length(value), postgresql=sa.func.char_length(value))


def _ascii_case(value: ColumnElement, sqlite_name: str, source: str, target: str) -> ColumnElement:
    # SQLite's upper()/lower() change ASCII letters only; PostgreSQL does the same with translate()
    return d.per_dialect(getattr(sa.func, sqlite_name)(value),
                         postgresql=sa.func.translate(value, sa.literal_column(f"'{source}'"),
                                                      sa.literal_column(f"'{target}'")))


def _concat_sql(args: list[ColumnElement], _n, _m) -> ColumnElement:
    parts = [sa.func.coalesce(a, sa.literal_column("''")) for a in args]
    result = parts[0]
    for part in parts[1:]:
        result = d.op(result, "||", part)
    return result


_min_python, _min_sql = _extremum(("min", "least"), min)
_max_python, _max_sql = _extremum(("max", "greatest"), max)

FUNCTIONS: dict[str, Function] = {f.name: f for f in (
    Function("if", "if(condition, then, else)", (BOOLEAN, "value", "value"), "same",
             lambda a, m: a[1] if a[0] is True else a[2],
             lambda a, n, m: sa.case((a[0], a[1]), else_=a[2]),
             nulls=False, integral=lambda a: _all_integral(a[1:])),
    Function("coalesce", "coalesce(a, b, ...)", ("value", "value"), "same",
             lambda a, m: next((v for v in a if v is not None), None),
             lambda a, n, m: sa.func.coalesce(*a),
             variadic=True, nulls=False, integral=_all_integral),
    Function("round", "round(number, digits)", (NUMBER, NUMBER), NUMBER,
             lambda a, m: _round(a[0], a[1]),
             lambda a, n, m: d.per_dialect(sa.func.round(a[0], a[1]),
                                           postgresql=sa.func.round(sa.cast(a[0], sa.Numeric()), a[1])),
             check=_round_digits, integral=lambda a: a[0].integral or getattr(a[1], "value", None) == 0),
    Function("abs", "abs(number)", (NUMBER,), NUMBER, lambda a, m: abs(a[0]),
             lambda a, n, m: sa.func.abs(a[0]), integral=_all_integral),
    Function("min", "min(a, b, ...)", ("ordered", "ordered"), "same", _min_python, _min_sql,
             variadic=True, nulls=False, integral=_all_integral),
    Function("max", "max(a, b, ...)", ("ordered", "ordered"), "same", _max_python, _max_sql,
             variadic=True, nulls=False, integral=_all_integral),
    Function("length", "length(text)", (TEXT,), NUMBER, lambda a, m: len(a[0]),
             lambda a, n, m: _length(a[0]), integral=lambda a: True),
    Function("upper", "upper(text)", (TEXT,), TEXT, lambda a, m: a[0].translate(_TO_UPPER),
             lambda a, n, m: _ascii_case(a[0], "upper", _ASCII_LOWER, _ASCII_UPPER)),
    Function("lower", "lower(text)", (TEXT,), TEXT, lambda a, m: a[0].translate(_TO_LOWER),
             lambda a, n, m: _ascii_case(a[0], "lower", _ASCII_UPPER, _ASCII_LOWER)),
    Function("concat", "concat(text, text, ...)", (TEXT,), TEXT,
             lambda a, m: "".join(v or "" for v in a), _concat_sql, variadic=True, nulls=False),
    Function("contains", "contains(text, part)", (TEXT, TEXT), BOOLEAN, lambda a, m: a[1] in a[0],
             lambda a, n, m: d.op(d.per_dialect(sa.func.instr(a[0], a[1]), postgresql=sa.func.strpos(a[0], a[1])),
                                  ">", sa.literal_column("0"), comparison=True)),
    Function("starts_with", "starts_with(text, part)", (TEXT, TEXT), BOOLEAN,
             lambda a, m: a[0].startswith(a[1]),
             lambda a, n, m: d.op(sa.func.substr(a[0], sa.literal_column("1"), _length(a[1])), "=", a[1],
                                  comparison=True)),
    Function("today", "today()", (), DATE, lambda a, m: m.today,
             lambda a, n, m: sa.literal(m.today, sa.Date()), time_dependent=True),
    Function("now", "now()", (), DATETIME, lambda a, m: m.now,
             lambda a, n, m: sa.literal(m.now, sa.DateTime(timezone=True)), time_dependent=True),
    Function("year", "year(date)", (DATE,), NUMBER, lambda a, m: a[0].year,
             lambda a, n, m: sa.cast(sa.extract("year", a[0]), sa.Integer()), integral=lambda a: True),
    Function("month", "month(date)", (DATE,), NUMBER, lambda a, m: a[0].month,
             lambda a, n, m: sa.cast(sa.extract("month", a[0]), sa.Integer()), integral=lambda a: True),
    Function("day", "day(date)", (DATE,), NUMBER, lambda a, m: a[0].day,
             lambda a, n, m: sa.cast(sa.extract("day", a[0]), sa.Integer()), integral=lambda a: True),
    Function("add_days", "add_days(date, days)", (DATE, NUMBER), DATE, _add_days,
             lambda a, n, m: d.per_dialect(sa.func.date(d.op(sa.func.julianday(a[0]), "+", a[1])),
                                           postgresql=d.op(a[0], "+", sa.cast(a[1], sa.Integer())),
                                           type_=sa.Date()),
             check=_whole_days),
    Function("add_hours", "add_hours(datetime, hours)", (DATETIME, NUMBER), DATETIME, _add_hours,
             _add_hours_sql),
    Function("days_between", "days_between(from, to)", (DATE, DATE), NUMBER,
             lambda a, m: (a[1] - a[0]).days,
             lambda a, n, m: d.per_dialect(
                 sa.cast(d.op(sa.func.julianday(a[1]), "-", sa.func.julianday(a[0])), sa.Integer()),
                 postgresql=d.op(a[1], "-", a[0])),
             integral=lambda a: True),
    Function("is_empty", "is_empty(value)", ("any",), BOOLEAN,
             lambda a, m: a[0] is None or a[0] == "" or a[0] == [], _is_empty_sql, nulls=False),
)}
