"""Conditional fields in entity metadata: ``visible_when``, ``clear_when_hidden`` and
``read_only_when`` written as an expression (the row-scope condition still accepted),
compiled with the metadata, every problem reported at its file and line."""

from __future__ import annotations

import pytest

import loom.expressions  # noqa: F401  (registers the compiler of entity expressions)
from loom.errors import MetadataError
from loom.expressions import Expression
from loom.metadata import compile_documents, load_text


def _compile(text: str):
    docs, problems = load_text(text, "deal.yaml")
    assert problems == []
    return compile_documents(docs)


def _problems(text: str) -> list[str]:
    docs, problems = load_text(text, "deal.yaml")
    if problems:
        return [str(p) for p in problems]
    with pytest.raises(MetadataError) as caught:
        compile_documents(docs)
    return [str(p) for p in caught.value.problems]


def test_conditions_are_compiled_with_the_metadata():
    model = _compile("""
kind: entity
name: deal
fields:
  - {name: kind, type: select, options: [{value: person}, {value: company}]}
  - {name: company_name, type: string, required: true, visible_when: "kind = 'company'"}
  - {name: vat, type: string, visible_when: "kind = 'company'", clear_when_hidden: true}
  - {name: status, type: select, options: [{value: draft}, {value: sent}]}
  - {name: note, type: string, read_only_when: "status = 'sent'"}
  - {name: memo, type: string, read_only_when: {status: {eq: sent}}}
""")
    deal = model.entity("deal")
    fields = deal.all_fields
    assert isinstance(fields["company_name"].visible_when_expr, Expression)
    assert fields["company_name"].visible_when_expr.paths == ("kind",)
    assert fields["company_name"].required and not fields["company_name"].clear_when_hidden
    assert fields["vat"].clear_when_hidden
    assert fields["note"].read_only_when == "status = 'sent'"
    assert fields["note"].read_only_when_expr.type == "boolean"
    # the older form: a row-scope condition, kept as it was
    assert dict(fields["memo"].read_only_when) == {"status": {"eq": "sent"}}
    assert fields["memo"].read_only_when_expr is None
    assert [f.name for f in deal.state_locked_fields] == ["note", "memo"]
    assert deal.has_logic


def test_a_bad_condition_is_reported_at_its_file_and_line():
    problems = _problems("""
kind: entity
name: deal
fields:
  - {name: kind, type: string}
  - {name: a, type: string, visible_when: "kind"}
  - {name: b, type: string, visible_when: "knd = 'x'"}
  - {name: c, type: string, read_only_when: "kind + 1 > 2"}
  - {name: d, type: string, read_only_when: {nope: {eq: 1}}}
""")
    problems = sorted(problems, key=lambda p: int(p.split(":")[1]))
    assert problems[0].startswith("deal.yaml:6: fields[1].visible_when: this must be a condition (true or false), "
                                  "but it gives a text")
    assert problems[1].startswith("deal.yaml:7: fields[2].visible_when: no field 'knd' in deal "
                                  "(did you mean 'kind'?)")
    assert problems[2].startswith("deal.yaml:8: fields[3].read_only_when: cannot add text and number")
    assert problems[3].startswith("deal.yaml:9: fields[4].read_only_when.nope: no field named 'nope'")
    assert len(problems) == 4


def test_what_contradicts_itself_is_refused():
    problems = _problems("""
kind: entity
name: deal
fields:
  - {name: kind, type: string}
  - {name: a, type: string, clear_when_hidden: true}
  - {name: b, type: integer, compute: "1", visible_when: "kind = 'x'", clear_when_hidden: true}
  - {name: c, type: string, read_only: true, read_only_when: "kind = 'x'"}
""")
    text = "\n".join(problems)
    assert "deal.yaml:6: fields[1].clear_when_hidden: clear_when_hidden needs visible_when" in text
    assert "deal.yaml:7: fields[2].clear_when_hidden: a computed field cannot be cleared when hidden" in text
    assert "deal.yaml:8: fields[3].read_only_when: the field is read_only already" in text


def test_the_schema_takes_an_expression_or_a_condition_and_nothing_else():
    problems = _problems("""
kind: entity
name: deal
fields:
  - {name: kind, type: string}
  - {name: a, type: string, read_only_when: 5}
  - {name: b, type: string, visible_when: {kind: {eq: x}}}
  - {name: c, type: string, clear_when_hidden: "yes"}
""")
    assert [p.split(":", 2)[1] for p in problems] == ["6", "7", "8"]
    assert "fields[1].read_only_when" in problems[0]
    assert "fields[2].visible_when" in problems[1] and "fields[3].clear_when_hidden" in problems[2]


def test_a_child_entity_cannot_lock_its_fields_by_expression_either():
    problems = _problems("""
kind: entity
name: deal_line
child: true
fields:
  - {name: qty, type: integer, read_only_when: "qty > 1"}
---
kind: entity
name: deal
fields:
  - {name: lines, type: table, target: deal_line}
""")
    assert any("deal.yaml:6: fields[0].read_only_when: a child entity's rows change with their parent" in p
               for p in problems), problems
