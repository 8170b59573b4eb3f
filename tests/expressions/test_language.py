"""The expression language as an admin meets it: what parses, what each error says, and
what each operator and function gives (in Python; the property test checks SQL agrees)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from loom.expressions import ExpressionError, compile_expression
from loom.principal import Principal
from loom.schema.service import model_from_documents

MODEL = model_from_documents([
    {"kind": "entity", "name": "customer", "fields": [
        {"name": "name", "type": "string"}, {"name": "credit_limit", "type": "decimal", "scale": 2},
        {"name": "account_manager", "type": "link", "target": "user"}]},
    {"kind": "entity", "name": "order_line", "child": True, "fields": [{"name": "qty", "type": "integer"}]},
    {"kind": "entity", "name": "sales_order", "fields": [
        {"name": "customer", "type": "link", "target": "customer"},
        {"name": "quantity", "type": "integer"}, {"name": "unit_price", "type": "decimal", "scale": 2},
        {"name": "order_date", "type": "date"}, {"name": "delivery_date", "type": "date"},
        {"name": "note", "type": "text"}, {"name": "status", "type": "select", "options": [{"value": "draft"}]},
        {"name": "urgent", "type": "boolean"}, {"name": "tags", "type": "multiselect", "options": [{"value": "x"}]},
        {"name": "lines", "type": "table", "target": "order_line"}]},
])
ORDER = MODEL.entity("sales_order")
RECORD = {"id": 5, "customer": 3, "quantity": 4, "unit_price": Decimal("2.50"), "order_date": dt.date(2024, 2, 28),
          "delivery_date": None, "note": "Rush", "status": "draft", "urgent": True, "owner": 9}
CUSTOMERS = {3: {"name": "Acme", "credit_limit": Decimal("100.00"), "account_manager": 9}}
USERS = {9: {"id": 9, "username": "wang", "team_id": 2}}


def lookup(entity, ident):
    return (CUSTOMERS if entity == "customer" else USERS).get(ident)


def value(text, record=RECORD, **kw):
    kw.setdefault("today", dt.date(2024, 3, 1))
    return compile_expression(text, ORDER, MODEL).evaluate(record, lookup=lookup, **kw)


def errors(text, **kw):
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text, ORDER, MODEL, **kw)
    return caught.value.messages


# -- parsing -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("quantity * )", "unexpected ')'; expected a value (a number, a text in quotes, a field, a function call) "
                     "or '(' (at column 12)\n  quantity * )\n             ^"),
    ("quantity +", "the expression ends too early"),
    ("quantity # 2", "unexpected character '#' (at column 10)"),
    ("$me.id", "'$user.<property>' is the only name that starts with '$'"),
    ("1 < quantity < 3", "comparisons cannot be chained"),
    ("note = 'open", "a text is not closed"),
    ("quantity unit_price", "unexpected name 'unit_price'; expected an operator"),
    ("   ", "the expression is empty"),
])
def test_a_parse_error_says_what_and_where(text, message):
    assert message in errors(text)[0]


def test_the_caret_points_at_the_problem():
    message = errors("if(urgent, 1 2)")[0]
    line, caret = message.splitlines()[1:]
    assert line.strip() == "if(urgent, 1 2)" and caret.index("^") == line.index("2")


def test_literals_keywords_and_escapes():
    assert value("'it\\'s' = \"it's\"") is True
    assert value("'a\\nb'") == "a\nb"
    assert value("3.50 + 12") == Decimal("15.50")
    assert value("null") is None
    assert value("quantity == 4 and not false") is True
    assert compile_expression("order_date", ORDER, MODEL).type == "date"


# -- checking ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("note + 1", "cannot add text and number: use concat() for text (at column 6)"),
    ("delivery_date - order_date", "cannot subtract date and date: use days_between(from, to)"),
    ("order_date + 3", "cannot add date and number: use add_days(date, days)"),
    ("quantiy * 2", "no field 'quantiy' in sales_order (did you mean 'quantity'?)"),
    ("zzz", "no field 'zzz' in sales_order; its fields: id, version, owner"),
    ("quantity.price", "'quantity' is an integer field, not a link: only a link can be followed with '.'"),
    ("customer.nme", "no field 'nme' in customer (did you mean 'name'?)"),
    ("lines.qty > 1", "'lines' holds child rows of order_line: expressions cannot read child rows"),
    ("is_empty(tags)", "'tags' is a multiselect field, which expressions cannot read"),
    ("customer.account_manager.teams", "a user has no 'teams' (did you mean 'team'?)"),
    ("$user.boss", "a user has no 'boss'"),
    ("note < 3", "cannot compare text with number"),
    ("urgent > false", "true/false values can only be compared with = or !=, not >"),
    ("delivery_date = null", "comparing with null always gives null: use is_empty(x)"),
    ("quantity and urgent", "'and' needs a condition (true or false) on each side; the left side is a number"),
    ("not note", "'not' needs a condition (true or false), not a text"),
    ("-note", "cannot negate a text"),
    ("round(unit_price)", "round() takes 2 arguments (round(number, digits)), not 1"),
    ("round(unit_price, quantity)", "digits must be a whole number from 0 to 10 written out"),
    ("length(quantity)", "length() needs a text here, not a number (length(text))"),
    ("if(quantity, 1, 2)", "if() needs a condition (true or false) here, not a number"),
    ("if(urgent, 1, 'x')", "if(): every value must have the same type; this one is text, the others number"),
    ("coalesce(1)", "coalesce() takes at least 2 arguments"),
    ("min(urgent, false)", "min() compares numbers, texts, dates or date-times, not boolean"),
    ("add_days(order_date, unit_price)", "days must be a whole number"),
    ("sqrt(quantity)", "unknown function 'sqrt'; the functions are: abs, add_days"),
    ("uper(note)", "unknown function 'uper' (did you mean 'upper'?)"),
    ("quantity in ('a', 2)", "cannot look for a number among text values"),
])
def test_a_type_error_says_what_to_fix(text, message):
    found = errors(text)
    assert len(found) == 1 and message in found[0], found


def test_every_problem_is_reported_at_once():
    assert len(errors("quantiy + 1 > 0 and note + 1 = 2")) == 2


def test_expect_boolean_refuses_a_value():
    assert errors("quantity * 2", expect="boolean") == [
        "this must be a condition (true or false), but it gives a number: compare it, e.g. x > 0"]
    assert compile_expression("delivery_date < order_date", ORDER, MODEL, expect="boolean").type == "boolean"


def test_an_expression_tells_what_it_reads():
    e = compile_expression("customer.credit_limit > quantity * unit_price and owner = $user.id", ORDER, MODEL)
    assert e.paths == ("customer.credit_limit", "quantity", "unit_price", "owner")
    assert e.uses_user and not e.uses_today and e.type == "boolean"
    assert compile_expression("days_between(order_date, today())", ORDER, MODEL).uses_today


def test_paths_follow_links_and_users():
    assert value("customer.name") == "Acme"
    assert value("customer.account_manager.username") == "wang"
    assert value("owner.team") == 2
    assert value("customer.name", {**RECORD, "customer": None}) is None
    assert value("customer.name", {**RECORD, "customer": 77}) is None
    with pytest.raises(ExpressionError, match="needs a lookup"):
        compile_expression("customer.name", ORDER, MODEL).evaluate(RECORD)


def test_user_comes_from_a_principal_or_a_mapping():
    principal = Principal("wang", user_id=9, team_id=2)
    assert value("owner = $user.id and $user.team = 2", user=principal) is True
    assert value("$user.team", user={"team": 7}) == 7
    assert value("$user.id") is None  # nobody acting: null, so a condition on it is not met


# -- null rules --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("quantity + delivery_date_days", None),
    ("null and false", False), ("null and true", None), ("false and null", False),
    ("null or true", True), ("null or false", None), ("not null", None),
    ("delivery_date < order_date", None), ("if(delivery_date < order_date, 1, 2)", 2),
    ("quantity / 0", None), ("coalesce(delivery_date, order_date)", dt.date(2024, 2, 28)),
    ("quantity in (1, null)", None), ("quantity in (4, null)", True), ("quantity not in (1, null)", None),
    ("quantity not in (1, 2)", True), ("length(concat(null, note, null))", 4),
    ("min(quantity, null, 2)", 2), ("max(null, null)", None), ("is_empty(delivery_date)", True),
    ("is_empty('')", True), ("is_empty(note)", False), ("abs(null)", None), ("upper(null)", None),
])
def test_nulls_follow_sql(text, expected):
    record = {**RECORD, "delivery_date_days": None}
    if "delivery_date_days" in text:
        text = "quantity + null"
    assert value(text, record) == expected


# -- functions ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("quantity * unit_price", Decimal("10.00")), ("quantity / 8", Decimal("0.5")), ("7 - quantity * 2", -1),
    ("-quantity", -4), ("round(10 / 3, 2)", Decimal("3.33")), ("round(2.5, 0)", Decimal("3")),
    ("round(0 - 2.5, 0)", Decimal("-3")), ("abs(0 - unit_price)", Decimal("2.50")), ("min(3, quantity, 9)", 3),
    ("max(order_date, today())", dt.date(2024, 3, 1)), ("max('b', 'B', 'a')", "b"), ("length('中文')", 2),
    ("upper('straße é')", "STRAßE é"), ("lower('ÀBC')", "Àbc"), ("concat(note, '-', status)", "Rush-draft"),
    ("contains(note, 'us')", True), ("contains(note, 'US')", False), ("starts_with(note, 'Ru')", True),
    ("starts_with(note, 'u')", False), ("today()", dt.date(2024, 3, 1)), ("year(order_date)", 2024),
    ("month(order_date)", 2), ("day(order_date)", 28), ("add_days(order_date, 2)", dt.date(2024, 3, 1)),
    ("add_days(order_date, 0 - 28)", dt.date(2024, 1, 31)), ("days_between(order_date, today())", 2),
    ("if(urgent, 'yes', 'no')", "yes"), ("status in ('draft', 'sent')", True), ("'b' > 'B'", True),
])
def test_functions_and_operators(text, expected):
    result = value(text)
    assert result == expected and type(result) is type(expected)


def test_now_is_the_instant_passed_in():
    instant = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.UTC)
    assert value("now()", now=instant) == instant
    record = {**RECORD, "created_at": dt.datetime(2024, 3, 1, 7, 0, tzinfo=dt.UTC)}
    assert value("created_at < now()", record, now=instant) is True
