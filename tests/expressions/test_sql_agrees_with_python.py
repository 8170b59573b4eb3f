"""Property: for random entities, random well-typed expressions and random records (with
nulls) in real tables, ``SELECT <expression> FROM table`` gives what ``evaluate`` gives,
on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loom.expressions import compile_expression, table_resolver
from loom.schema.service import model_from_documents
from loom.schema.tables import build_tables

TYPES = ("integer", "decimal", "string", "boolean", "date")
#: letters of several scripts; upper() and lower() change only the ASCII ones, everywhere
ALPHABET = "abcXYZ é中_"
_names = itertools.count()

texts = st.text(ALPHABET, max_size=5)
integers = st.integers(-50, 50)
#: quarters: exact in binary, so SQLite's REAL decimals hold them exactly
decimals = st.integers(-200, 200).map(lambda q: Decimal(q) / 4).map(lambda v: v.quantize(Decimal("0.01")))
dates = st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31))
VALUES = {"integer": integers, "decimal": decimals, "string": texts, "boolean": st.booleans(), "date": dates}


@st.composite
def entity_fields(draw, prefix: str) -> list[tuple[str, str]]:
    fields = []
    for kind in TYPES:
        for i in range(draw(st.integers(0, 2), f"{prefix} {kind} fields")):
            fields.append((f"{prefix}{kind[:3]}{i}", kind))
    return fields


class Expressions:
    """Strategies for type-correct expression texts over one subject entity, which links
    (``partner``) to another entity."""

    def __init__(self, fields: list[tuple[str, str]], partner_fields: list[tuple[str, str]]):
        self.leaves: dict[str, list[str]] = {kind: [] for kind in TYPES}
        for name, kind in fields:
            self.leaves[kind].append(name)
        for name, kind in partner_fields:
            self.leaves[kind].append(f"partner.{name}")
        self.leaves["integer"].append("partner")  # a link's value is the linked id
        self._built: dict[tuple[str, int], st.SearchStrategy] = {}

    def number_leaf(self, whole: bool = False):
        options = [integers.map(str)] + [st.sampled_from(self.leaves["integer"])]
        if not whole:
            options.append(decimals.map(str))
            if self.leaves["decimal"]:
                options.append(st.sampled_from(self.leaves["decimal"]))
        return st.one_of(options)

    def leaf(self, kind: str):
        if kind == "number":
            return self.number_leaf()
        if kind == "text":
            literals = texts.map(lambda t: "'" + t + "'")
            return st.one_of(literals, st.sampled_from(self.leaves["string"])) if self.leaves["string"] else literals
        if kind == "boolean":
            names = self.leaves["boolean"]
            return st.one_of(st.sampled_from(["true", "false"]), *([st.sampled_from(names)] if names else []))
        assert kind == "date"
        return st.sampled_from(self.leaves["date"] or ["today()"]) | st.just("today()")

    def of(self, kind: str, depth: int = 3):
        """An exact expression of ``kind`` (no division: SQLite's floats and Python's
        decimals then agree exactly, comparisons included)."""
        if (kind, depth) not in self._built:
            self._built[kind, depth] = self.leaf(kind) if depth == 0 else self._compound(kind, depth)
        return self._built[kind, depth]

    def _compound(self, kind: str, depth: int):
        sub = lambda k: self.of(k, depth - 1)  # noqa: E731
        pair = lambda k, template: st.tuples(sub(k), sub(k)).map(lambda ab: template.format(*ab))  # noqa: E731
        condition = sub("boolean")
        shared = [
            st.tuples(condition, sub(kind), sub(kind)).map(lambda t: f"if({t[0]}, {t[1]}, {t[2]})"),
            pair(kind, "coalesce({}, {})"),
        ]
        if kind == "number":
            leaf = self.number_leaf()
            options = [
                pair("number", "({} + {})"), pair("number", "({} - {})"),
                st.tuples(leaf, leaf).map(lambda ab: f"({ab[0]} * {ab[1]})"),
                sub("number").map(lambda a: f"-({a})"), sub("number").map(lambda a: f"abs({a})"),
                st.tuples(sub("number"), st.integers(0, 3)).map(lambda t: f"round({t[0]}, {t[1]})"),
                pair("number", "min({}, {})"), pair("number", "max({}, {})"),
                sub("text").map(lambda a: f"length({a})"),
                st.tuples(st.sampled_from(["year", "month", "day"]), sub("date")).map(lambda t: f"{t[0]}({t[1]})"),
                pair("date", "days_between({}, {})"),
            ]
        elif kind == "text":
            options = [
                pair("text", "concat({}, {})"), sub("text").map(lambda a: f"upper({a})"),
                sub("text").map(lambda a: f"lower({a})"), pair("text", "min({}, {})"), pair("text", "max({}, {})"),
            ]
        elif kind == "date":
            options = [
                st.tuples(sub("date"), self.number_leaf(whole=True)).map(lambda t: f"add_days({t[0]}, {t[1]})"),
                pair("date", "min({}, {})"), pair("date", "max({}, {})"),
            ]
        else:
            compared = st.sampled_from(["number", "text", "date"]).flatmap(
                lambda k: st.tuples(sub(k), st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "=="]), sub(k)))
            options = [
                compared.map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
                pair("boolean", "({} and {})"), pair("boolean", "({} or {})"),
                sub("boolean").map(lambda a: f"not ({a})"),
                pair("text", "contains({}, {})"), pair("text", "starts_with({}, {})"),
                st.sampled_from(["number", "text", "date", "boolean"]).flatmap(sub).map(lambda a: f"is_empty({a})"),
                st.tuples(sub("number"), st.lists(self.number_leaf() | st.just("null"), min_size=1, max_size=3),
                          st.booleans()).map(lambda t: f"{t[0]} {'not in' if t[2] else 'in'} ({', '.join(t[1])})"),
            ]
        return st.one_of(self.leaf(kind), *shared, *options)

    def any(self):
        division = st.tuples(self.of("number", 2), self.of("number", 2)).map(lambda ab: f"({ab[0]}) / ({ab[1]})")
        return st.one_of(self.of("number"), self.of("text"), self.of("boolean"), self.of("date"), division,
                         st.tuples(division, self.of("number", 1)).map(lambda t: f"{t[0]} + {t[1]}"))


def _record(draw, fields: list[tuple[str, str]]) -> dict:
    return {name: draw(st.none() | VALUES[kind]) for name, kind in fields}


def _same(sql_value, python_value) -> bool:
    if python_value is None or sql_value is None:
        return python_value is None and sql_value is None
    if isinstance(python_value, bool) or isinstance(python_value, str | dt.date):
        return sql_value == python_value and type(sql_value) is type(python_value)
    exact = Decimal(repr(sql_value)) if isinstance(sql_value, float) else Decimal(sql_value)
    return abs(exact - Decimal(python_value)) <= Decimal("1e-6") * max(1, abs(Decimal(python_value)))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_sql_gives_what_python_gives(loom_engine, data):
    number = next(_names)
    partner_fields = data.draw(entity_fields("p"), "partner fields")
    fields = data.draw(entity_fields("s"), "subject fields")
    documents = [
        {"kind": "entity", "name": f"partner{number}",
         "fields": [{"name": n, "type": k} for n, k in partner_fields] + [{"name": "label", "type": "string"}]},
        {"kind": "entity", "name": f"subject{number}",
         "fields": [{"name": n, "type": k} for n, k in fields] + [{"name": "partner", "type": "link",
                                                                  "target": f"partner{number}"}]},
    ]
    model = model_from_documents(documents)
    tables = build_tables(model)
    subject, partner = model.entity(f"subject{number}"), tables[f"partner{number}"]
    table = tables[subject.name]
    now = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    today = data.draw(dates, "today")
    partners = {i: _record(data.draw, partner_fields) for i in range(1, data.draw(st.integers(0, 3), "partners") + 1)}
    records = {i: {**_record(data.draw, fields), "partner": data.draw(st.sampled_from([None, *partners]))}
               for i in range(1, data.draw(st.integers(1, 4), "records") + 1)}
    texts_ = data.draw(st.lists(Expressions(fields, partner_fields).any(), min_size=1, max_size=4), "expressions")
    expressions = [compile_expression(text, subject, model) for text in texts_]
    standard = {"version": 1, "created_at": now, "updated_at": now}
    with loom_engine.begin() as conn:
        partner.create(conn)
        table.create(conn)
        try:
            for ident, values in partners.items():
                conn.execute(partner.insert(), {"id": ident, **values, **standard})
            for ident, values in records.items():
                conn.execute(table.insert(), {"id": ident, **values, **standard})
            resolve = table_resolver(table, tables, subject, model)
            lookup = lambda entity, ident: partners.get(ident)  # noqa: E731
            for expression in expressions:
                column = expression.to_sql(resolve, today=today, now=now)
                rows = dict(conn.execute(sa.select(table.c.id, column)).all())
                for ident, values in records.items():
                    expected = expression.evaluate(values, today=today, now=now, lookup=lookup)
                    assert _same(rows[ident], expected), (expression.text, values, rows[ident], expected)
        finally:
            table.drop(conn)
            partner.drop(conn)


def test_a_negation_inside_another_operator_keeps_its_place(loom_engine):
    """Found by the property test: ``NOT x IS NULL`` reads as ``NOT (x IS NULL)`` in SQL,
    so a negation handed to another operator must stay in its parentheses."""
    model = model_from_documents([{"kind": "entity", "name": "plain", "fields": [{"name": "text", "type": "string"}]}])
    table = build_tables(model)["plain"]
    with loom_engine.begin() as conn:
        table.create(conn)
        try:
            conn.execute(table.insert(), {"id": 1, "text": "", "version": 1,
                                          "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                                          "updated_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)})
            resolve = table_resolver(table, {"plain": table}, model.entity("plain"), model)
            for text in ("is_empty(not (contains('', '')))", "is_empty(not contains(text, 'x'))",
                         "coalesce(not (text = ''), true)", "if(not (text = ''), 1, 2) = 2"):
                expression = compile_expression(text, model.entity("plain"), model)
                found = conn.execute(sa.select(expression.to_sql(resolve))).scalar()
                assert _same(found, expression.evaluate({"text": ""})), text
        finally:
            table.drop(conn)


@pytest.mark.parametrize("hours", ["1.5", "-25.0001", "0", "876000", None])
@pytest.mark.parametrize("at", [dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
                                dt.datetime(2024, 12, 31, 23, 0, 0, 250000, tzinfo=dt.UTC), None])
def test_add_hours_gives_the_same_instant_in_sql(loom_engine, at, hours):
    """``add_hours`` (an SLA deadline: the creation time plus hours by priority) in SQL and
    in Python, to the millisecond SQLite keeps; a null on either side gives null."""
    model = model_from_documents([{"kind": "entity", "name": "clock", "fields": [
        {"name": "at", "type": "datetime"}, {"name": "hours", "type": "decimal"}]}])
    table = build_tables(model)["clock"]
    entity = model.entity("clock")
    stamp = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    values = {"at": at, "hours": None if hours is None else Decimal(hours)}
    with loom_engine.begin() as conn:
        table.create(conn)
        try:
            conn.execute(table.insert(), {"id": 1, **values, "version": 1, "created_at": stamp, "updated_at": stamp})
            expression = compile_expression("add_hours(at, hours)", entity, model)
            found = conn.execute(sa.select(expression.to_sql(table_resolver(table, {"clock": table}, entity, model)))
                                 ).scalar()
            expected = expression.evaluate(values)
            if expected is None:
                assert found is None
            else:
                assert found.replace(tzinfo=dt.UTC) == expected, (found, expected)
        finally:
            table.drop(conn)
