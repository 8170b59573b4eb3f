"""Loading metadata files: every problem, with file, line and path, in one run."""

from __future__ import annotations

import pytest

from loom.errors import MetadataError
from loom.metadata import compile_documents, load_directory, load_text

GOOD = """\
kind: entity
name: customer
label: {en: Customer, zh: 客户}
title_field: name
fields:
  - {name: name, type: string, required: true, max_length: 200}
  - {name: credit_code, type: string, validators: [uscc], unique: true}
  - name: level
    type: select
    options: [{value: A, label: {en: Key account, zh: 重点客户}}, {value: B}, {value: C}]
    default: C
  - {name: credit_limit, type: decimal, precision: 14, scale: 2, min: 0}
  - {name: account_manager, type: link, target: user}
form:
  sections:
    - {label: {en: Basics, zh: 基本信息}, columns: 2, fields: [name, credit_code, level]}
list: {columns: [name, level], filters: [level], sort: -created_at}
"""


def test_a_valid_document_compiles_to_an_immutable_model():
    documents, problems = load_text(GOOD, "customer.yaml")
    assert problems == []
    model = compile_documents(documents)
    customer = model.entity("customer")
    assert [f.name for f in customer.fields] == ["name", "credit_code", "level", "credit_limit", "account_manager"]
    assert customer.field("level").default == "C"
    assert str(customer.field("credit_limit").min) == "0.00"
    assert customer.title("zh") == "客户"
    with pytest.raises(AttributeError):
        customer.name = "other"  # type: ignore[misc]


def test_schema_errors_name_file_line_path_and_expectation():
    text = GOOD.replace("type: select", "type: selcet").replace("max_length: 200", "max_length: -1")
    _, problems = load_text(text, "crm/customer.yaml")
    rendered = [str(p) for p in problems]
    assert any(r.startswith("crm/customer.yaml:6: fields[0].max_length:") and "minimum" in r for r in rendered)
    assert any(r.startswith("crm/customer.yaml:9: fields[2].type:") and "'selcet' is not one of" in r
               for r in rendered)


def test_unknown_properties_and_kinds_are_reported():
    _, problems = load_text("kind: entty\nname: x\n", "a.yaml")
    assert "kind must be one of: alert, entity, role" in str(problems[0])
    _, problems = load_text("kind: entity\nname: x\nfields:\n  - {name: a, type: string, requird: true}\n", "b.yaml")
    assert problems[0].line == 4
    assert "'requird' was unexpected" in problems[0].message


def test_yaml_syntax_errors_and_duplicate_keys_name_the_line():
    _, problems = load_text("kind: entity\nname: [unclosed\n", "c.yaml")
    assert problems and problems[0].file == "c.yaml" and problems[0].line is not None
    _, problems = load_text("kind: entity\nname: x\nname: y\nfields: [{name: a, type: string}]\n", "d.yaml")
    assert any("given twice" in p.message and p.line == 3 for p in problems)


def test_every_error_in_a_directory_is_reported_in_one_run(tmp_path):
    (tmp_path / "one.yaml").write_text("kind: entity\nname: one\nfields: [{name: a, type: nope}]\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.yml").write_text("kind: entity\nname: Two\nfields: []\n")
    (tmp_path / "three.json").write_text('{"kind": "entity", "name": "three", "fields": [{"name": "b"}]}')
    (tmp_path / "ignored.txt").write_text("not metadata")
    _, problems = load_directory(tmp_path)
    files = {p.file for p in problems}
    assert files == {"one.yaml", "sub/two.yml", "three.json"}
    assert len(problems) >= 4


def test_a_file_can_hold_several_documents(tmp_path):
    (tmp_path / "app.yaml").write_text(
        "kind: entity\nname: a\nfields: [{name: x, type: string}]\n---\n"
        "kind: entity\nname: b\nfields: [{name: a, type: link, target: a}]\n")
    documents, problems = load_directory(tmp_path)
    assert problems == []
    assert set(compile_documents(documents).entities) == {"a", "b"}


SEMANTIC_CASES = [
    ("fields: [{name: a, type: link, target: ghost}]", "fields[0].target", "no entity named 'ghost'"),
    ("fields: [{name: a, type: string, options: [{value: x}]}]", "fields[0].options", "does not apply to a string"),
    ("fields: [{name: id, type: integer}]", "fields[0].name", "standard field"),
    ("fields: [{name: a, type: string}, {name: a, type: text}]", "fields[1].name", "already declared"),
    ("fields: [{name: a, type: decimal, precision: 4, scale: 2, default: 123.5}]", "fields[0].default",
     "digits before the decimal point"),
    ("fields: [{name: a, type: select, options: [{value: x}], default: y}]", "fields[0].default", "must be one of"),
    ("fields: [{name: a, type: integer, validators: [uscc]}]", "fields[0].validators", "text fields only"),
    ("fields: [{name: a, type: string, pattern: '(['}]", "fields[0].pattern", "regular expression"),
    ("title_field: nope\nfields: [{name: a, type: string}]", "title_field", "no field named 'nope'"),
    ("fields: [{name: a, type: string}]\nlist: {columns: [b]}", "list.columns[0]", "no field named 'b'"),
    ("fields: [{name: a, type: json, unique: true}]", "fields[0].unique", "cannot be unique"),
    ("fields: [{name: a, type: table, target: t}]", "fields[0].target", "no entity named 't'"),
    ("fields: [{name: a, type: integer, min: 5, max: 1}]", "fields[0].max", "smaller than min"),
]


@pytest.mark.parametrize(("body", "path", "message"), SEMANTIC_CASES)
def test_semantic_errors_say_what_is_wrong_and_where(body, path, message):
    documents, problems = load_text(f"kind: entity\nname: thing\n{body}\n", "thing.yaml")
    assert problems == []
    with pytest.raises(MetadataError) as caught:
        compile_documents(documents)
    found = caught.value.problems
    assert any(p.path == path and message in p.message and p.line for p in found), found


def test_child_entities_must_belong_to_exactly_one_table_field():
    text = (
        "kind: entity\nname: order\nfields: [{name: lines, type: table, target: line}]\n---\n"
        "kind: entity\nname: quote\nfields: [{name: lines, type: table, target: line}]\n---\n"
        "kind: entity\nname: line\nchild: true\nfields: [{name: qty, type: integer}]\n---\n"
        "kind: entity\nname: orphan\nchild: true\nfields: [{name: qty, type: integer}]\n---\n"
        "kind: entity\nname: notchild\nfields: [{name: a, type: string}]\n---\n"
        "kind: entity\nname: bad\nfields: [{name: t, type: table, target: notchild}, "
        "{name: l, type: link, target: line}]\n")
    documents, problems = load_text(text, "app.yaml")
    assert problems == []
    with pytest.raises(MetadataError) as caught:
        compile_documents(documents)
    messages = " | ".join(p.message for p in caught.value.problems)
    assert "already holds the rows of order.lines" in messages
    assert "no table field holds the rows" in messages
    assert "must be declared with child: true" in messages
    assert "cannot be linked to" in messages


def test_schema_and_reference_errors_of_a_directory_come_together(tmp_path):
    from loom.metadata import load_and_compile

    (tmp_path / "a.yaml").write_text("kind: entity\nname: a\nfields: [{name: x, type: strin}]\n")
    (tmp_path / "b.yaml").write_text("kind: entity\nname: b\nfields:\n  - {name: y, type: link, target: nope}\n"
                                     "  - {name: z, type: link, target: a}\n")
    with pytest.raises(MetadataError) as caught:
        load_and_compile(tmp_path)
    rendered = [str(p) for p in caught.value.problems]
    assert rendered[0].startswith("a.yaml:3: fields[0].type:")
    assert "b.yaml:4: fields[0].target: no entity named 'nope' to link to" in rendered
    # a.yaml is broken, not missing: the link to it is not reported a second time
    assert len(rendered) == 2
