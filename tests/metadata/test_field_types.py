"""The built-in field types show, read and export values through a formatting context,
without the screens: what a plugin's type can rely on, and what keeps the screens'
behaviour when they ask the registry instead of branching on type names."""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import replace

import pytest

from loom.metadata.compiler import compile_field
from loom.metadata.entities import entity_schema
from loom.metadata.formatting import PLAIN, TextProblem
from loom.metadata.kinds import schema_file
from loom.metadata.types import BUILTIN_TYPES, FIELD_TYPES, field_type, field_type_names

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "CST")
CHINESE = replace(PLAIN, locale="zh_CN", join="、".join, yes="是", no="否",
                  to_local=lambda moment: moment.astimezone(SHANGHAI),
                  localize=lambda moment: moment.replace(tzinfo=SHANGHAI),
                  local_time=lambda value: "local " + str(value))
LEVELS = [{"value": "a", "label": {"en": "Gold", "zh": "金"}}, {"value": "b", "label": "Silver"}]


def field(**definition):
    return compile_field({"name": "value", **definition})


@pytest.mark.parametrize(("definition", "value", "shown", "exported"), [
    ({"type": "money", "currency": "CNY"}, "1234.5", "1,234.50 CNY", decimal.Decimal("1234.5")),
    ({"type": "percent", "scale": 1}, "12.5", "12.5 %", decimal.Decimal("12.5")),
    ({"type": "decimal", "scale": 0}, "1234", "1,234", decimal.Decimal("1234")),
    ({"type": "integer"}, 1234567, "1,234,567", 1234567),
    ({"type": "boolean"}, False, "No", "No"),
    ({"type": "select", "options": LEVELS}, "a", "Gold", "Gold"),
    ({"type": "multiselect", "options": LEVELS}, ["a", "b"], "Gold, Silver", "Gold, Silver"),
    ({"type": "link", "target": "customer"}, {"id": 7, "title": None}, "#7", "#7"),
    ({"type": "attachment"}, {"key": "k", "name": "scan.pdf", "size": 3}, "scan.pdf", "scan.pdf"),
    ({"type": "json"}, {"a": [1, "é"]}, "", '{"a": [1, "é"]}'),
    ({"type": "datetime"}, "2024-05-01T02:03:04Z", "2024-05-01 02:03 UTC", "2024-05-01T02:03:04Z"),
    ({"type": "phone"}, "+86 138", "+86 138", "+86 138"),
])
def test_each_builtin_type_shows_and_exports_its_values(definition, value, shown, exported):
    f = field(**definition)
    assert f.kind.display(f, value, PLAIN) == shown
    assert f.kind.export(f, value, PLAIN) == exported


def test_the_context_carries_the_interface_language_and_zone():
    levels = field(type="multiselect", options=LEVELS)
    assert levels.kind.display(levels, ["a", "b"], replace(CHINESE, label=lambda o: o.value.upper())) == "A、B"
    assert field(type="boolean").kind.display(field(type="boolean"), True, CHINESE) == "是"
    moment = field(type="datetime")
    assert moment.kind.display(moment, "2024-05-01T02:03:04Z", CHINESE) == "local 2024-05-01T02:03:04Z"
    assert moment.kind.edit_text(moment, "2024-05-01T02:03:04Z", CHINESE) == "2024-05-01T10:03"
    assert moment.kind.parse_form(moment, ["2024-05-01T10:03"], CHINESE) == "2024-05-01T10:03:00+08:00"
    assert moment.kind.parse_form(moment, ["soon"], CHINESE) == "soon"  # the service says what is wrong


def test_forms_are_read_back_as_html_sends_them():
    flag, text, name = field(type="boolean"), field(type="text"), field(type="string")
    assert flag.kind.parse_form(flag, [], PLAIN) is False  # an unticked box sends nothing
    assert flag.kind.parse_form(flag, ["false", "true"], PLAIN) is True  # the hidden false, then the box
    assert text.kind.parse_form(text, [" two\nlines "], PLAIN) == " two\nlines "
    assert name.kind.parse_form(name, ["  Acme "], PLAIN) == "Acme"
    assert name.kind.parse_form(name, ["   "], PLAIN) is None
    levels = field(type="multiselect", options=LEVELS)
    assert levels.kind.parse_form(levels, ["", "a", "b"], PLAIN) == ["a", "b"]


def test_imported_text_is_read_by_value_label_or_word_in_either_language():
    levels, flag = field(type="multiselect", options=LEVELS), field(type="boolean")
    assert levels.kind.parse_text(levels, "金、silver", PLAIN) == ["a", "b"]
    assert flag.kind.parse_text(flag, "是", PLAIN) is True and flag.kind.parse_text(flag, "否", CHINESE) is False
    with pytest.raises(TextProblem) as refused:
        flag.kind.parse_text(flag, "maybe", PLAIN)
    assert (refused.value.code, refused.value.value) == ("not_yes_no", "maybe")
    link = field(type="link", target="customer")
    assert link.kind.parse_text(link, "#12", PLAIN) == 12
    found = replace(PLAIN, find_record=lambda target, text: 5 if (target, text) == ("customer", "Acme") else None)
    assert link.kind.parse_text(link, "Acme", found) == 5
    with pytest.raises(TextProblem, match="no record named “Beta”"):
        link.kind.parse_text(link, "Beta", found)
    for untyped in ("json", "attachment"):
        assert not field_type(untyped).typed


def test_inputs_follow_the_type():
    money = field(type="money", currency="EUR", scale=3)
    assert (money.kind.widget, money.kind.input_type) == ("input", "number")
    assert money.kind.input_attributes(money) == {"step": "0.001", "inputmode": "decimal"}
    assert money.kind.unit(money) == "EUR"
    assert {name: FIELD_TYPES[name].widget for name in ("text", "select", "multiselect", "boolean", "link",
                                                        "attachment", "table", "json")} == {
        "text": "textarea", "select": "select", "multiselect": "checks", "boolean": "checkbox", "link": "link",
        "attachment": "file", "table": "table", "json": "none"}


def test_the_entity_schema_lists_the_registered_types():
    enum = entity_schema()["$defs"]["field"]["properties"]["type"]["enum"]
    assert enum == list(field_type_names())
    # the shipped file lists the built-in ones, for editors that read it on its own
    assert set(schema_file("entity")["$defs"]["field"]["properties"]["type"]["enum"]) == BUILTIN_TYPES
