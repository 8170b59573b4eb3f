"""Business logic in entity metadata (compute, required_when, computed defaults, rules):
compiled once with the metadata, every problem reported at its file and line."""

from __future__ import annotations

import pytest

import loom.expressions  # noqa: F401  (registers the compiler of entity expressions)
from loom.errors import MetadataError
from loom.expressions import Expression
from loom.metadata import compile_documents, load_text

PRODUCT = """
kind: entity
name: product
fields:
  - {name: name, type: string}
  - {name: list_price, type: money}
---
"""


def _compile(text: str):
    docs, problems = load_text(PRODUCT + text, "shop.yaml")
    assert problems == []
    return compile_documents(docs)


def _problems(text: str) -> list[str]:
    with pytest.raises(MetadataError) as caught:
        _compile(text)
    return [str(p) for p in caught.value.problems]


def test_expressions_are_compiled_once_with_the_metadata():
    model = _compile("""
kind: entity
name: line
fields:
  - {name: product, type: link, target: product}
  - {name: quantity, type: integer}
  - {name: unit_price, type: money, default: {from: product.list_price}}
  - {name: total, type: money, compute: "amount + 1"}
  - {name: amount, type: money, compute: "quantity * unit_price"}
  - {name: due, type: date, default: {expression: "today()"}, required_when: "quantity > 2"}
rules:
  - when: "quantity < 0"
    message: {en: No negative quantities, zh: 数量不能为负}
    fields: [quantity]
""")
    line = model.entity("line")
    fields = line.all_fields
    assert isinstance(fields["amount"].compute_expr, Expression)
    assert fields["amount"].compute_expr.paths == ("quantity", "unit_price")
    assert fields["amount"].read_only  # nobody writes a computed field
    assert fields["unit_price"].default is None and fields["unit_price"].default_from == "product.list_price"
    assert fields["unit_price"].default_expr.paths == ("product.list_price",)
    assert fields["due"].default_expr.uses_today and fields["due"].required_when_expr.type == "boolean"
    assert line.compute_order == ("amount", "total")  # amount first: total reads it
    assert line.rules[0].when_expr.type == "boolean" and line.rules[0].message["zh"] == "数量不能为负"
    assert line.rules[0].fields == ("quantity",)


def test_a_bad_expression_is_reported_at_its_file_and_line():
    problems = _problems("""
kind: entity
name: line
fields:
  - {name: quantity, type: integer}
  - {name: amount, type: money, compute: "quantiy * 2"}
  - {name: note, type: string, required_when: "quantity"}
  - {name: due, type: date, default: {expression: "now()"}}
rules:
  - when: "quantity < "
    message: Broken
""")
    assert problems[0].startswith("shop.yaml:13: fields[1].compute: no field 'quantiy' in line "
                                  "(did you mean 'quantity'?)")
    assert problems[1].startswith("shop.yaml:14: fields[2].required_when: this must be a condition")
    assert problems[2].startswith("shop.yaml:15: fields[3].default.expression: 'now()' gives a datetime, "
                                  "which a date field cannot hold")
    assert problems[3].startswith("shop.yaml:17: rules[0].when: ")
    assert len(problems) == 4


def test_what_contradicts_itself_is_refused():
    problems = _problems("""
kind: entity
name: line
fields:
  - {name: product, type: link, target: product}
  - {name: quantity, type: integer}
  - {name: amount, type: money, compute: "quantity * 2", required: true}
  - {name: label, type: string, compute: "quantity * 2"}
  - {name: tags, type: multiselect, options: [{value: a}], compute: "quantity"}
  - {name: price, type: money, default: {from: "quantity"}}
  - {name: other, type: money, compute: "quantity", default: 3}
rules:
  - when: "quantity > 3"
    message: Too many
    fields: [quantity, quantiy]
""")
    text = "\n".join(problems)
    assert "shop.yaml:14: fields[2].required: a computed field cannot be required" in text
    assert "shop.yaml:15: fields[3].compute: 'quantity * 2' gives a number, which a string field cannot hold" in text
    assert "shop.yaml:16: fields[4].compute: a multiselect field cannot be computed" in text
    assert "shop.yaml:17: fields[5].default.from: 'from' names a field of a linked record" in text
    assert "shop.yaml:18: fields[6].default: a computed field cannot have a default" in text
    assert "shop.yaml:22: rules[0].fields[1]: no field named 'quantiy' in this entity" in text


def test_computed_fields_reading_each_other_in_a_circle_are_refused():
    problems = _problems("""
kind: entity
name: line
fields:
  - {name: a, type: integer, compute: "c + 1"}
  - {name: b, type: integer, compute: "a + 1"}
  - {name: c, type: integer, compute: "b * 2"}
  - {name: d, type: integer, compute: "d"}
""")
    assert any(p.startswith("shop.yaml:12: fields[0].compute: computed fields read each other in a circle "
                            "(a -> c -> b -> a)") for p in problems), problems
    assert any("fields[3].compute: computed fields read each other in a circle (d -> d)" in p for p in problems)


def test_the_example_in_the_metadata_guide_compiles():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "metadata.md").read_text(encoding="utf-8")
    block = next(b.split("\n", 1)[1] for b in guide.split("```yaml")[1:] if "name: order_line" in b).split("```")[0]
    docs, problems = load_text(PRODUCT + block, "guide.yaml")
    assert problems == []
    model = compile_documents(docs)
    assert model.entity("order_line").compute_order == ("amount",)
    assert model.entity("sales_order").rules[0].when_expr.paths == ("delivery_date", "order_date")
