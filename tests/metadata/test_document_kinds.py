"""A document kind added by a plugin is loaded, checked against its JSON Schema, compiled
and compared like entities, roles and alerts: its problems name file and line, its
compiled documents are in the model, and publishing reports its changes its own way."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml
from click.testing import CliRunner

from loom.cli import main
from loom.errors import MetadataError
from loom.metadata import (
    DocumentKind,
    DocumentKindError,
    compile_documents,
    load_and_compile,
    load_text,
    register_document_kind,
    registered_document_kind,
    unregister_document_kind,
)
from loom.metadata.kinds import named_changes
from loom.schema.service import model_from_documents

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Dashboard",
    "type": "object",
    "required": ["kind", "name", "entity", "tiles"],
    "additionalProperties": False,
    "properties": {
        "kind": {"const": "dashboard"},
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
        "label": {"$ref": "entity.schema.json#/$defs/label"},
        "entity": {"type": "string"},
        "tiles": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["field"], "additionalProperties": False,
            "properties": {"field": {"type": "string"}, "measure": {"enum": ["count", "sum"]}}}},
    },
}


@dataclass(frozen=True)
class Dashboard:
    name: str
    entity: str
    tiles: tuple[tuple[str, str], ...]


def compile_dashboards(docs, build):
    """Each tile names a field of the dashboard's entity; a sum needs a number."""
    result = {}
    for name, doc in build.by_name(docs).items():
        entity = build.items("entity").get(doc.data["entity"])
        if entity is None:
            build.fail(doc, ("entity",), f"no entity named '{doc.data['entity']}'")
            continue
        tiles = []
        for i, tile in enumerate(doc.data["tiles"]):
            field = entity.all_fields.get(tile["field"])
            measure = tile.get("measure", "count")
            if field is None:
                build.fail(doc, ("tiles", i, "field"), f"no field named '{tile['field']}' in {entity.name}")
            elif measure == "sum" and not field.kind.numeric:
                build.fail(doc, ("tiles", i, "measure"), f"a {field.type} field cannot be summed")
            tiles.append((tile["field"], measure))
        result[name] = Dashboard(name, entity.name, tuple(tiles))
    return result


def diff_dashboards(old, new):
    lines = [line for line in named_changes("dashboard", old, new) if not line.startswith("~")]
    for name, board in new.items():
        if name in old and old[name] != board:
            lines.append(f"~ dashboard {name}: tiles {', '.join(f for f, _ in old[name].tiles)} -> "
                         f"{', '.join(f for f, _ in board.tiles)}")
    return lines


DASHBOARD = DocumentKind("dashboard", SCHEMA, compile_dashboards, diff_dashboards)

ORDER = {"kind": "entity", "name": "sales_order", "fields": [
    {"name": "number", "type": "string"}, {"name": "total", "type": "money"}]}


@pytest.fixture
def dashboards():
    with registered_document_kind(DASHBOARD):
        yield DASHBOARD


def _write(folder, name, text):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


def test_an_unregistered_kind_is_refused_naming_the_kinds_there_are():
    _, problems = load_text("kind: dashboard\nname: sales\n", "boards.yaml")
    assert [str(p) for p in problems] == [
        "boards.yaml:1: kind: kind must be one of: alert, entity, role, rule (got 'dashboard')"]


def test_a_registered_kind_is_checked_and_compiled_with_file_and_line(dashboards, tmp_path, monkeypatch):
    app = tmp_path / "app"
    _write(app, "order.yaml", yaml.safe_dump(ORDER))
    _write(app, "boards.yaml", """kind: dashboard
name: sales
entity: sales_order
tiles:
  - {field: total, measure: sum}
  - {field: number, measure: sum}
  - {field: nope}
---
kind: dashboard
name: shapes
entity: sales_order
tiles:
  - {field: total, measure: avg}
""")
    with pytest.raises(MetadataError) as refused:
        load_and_compile(app)
    assert [str(p) for p in refused.value.problems] == [
        "boards.yaml:13: tiles[0].measure: 'avg' is not one of ['count', 'sum']",
        "boards.yaml:6: tiles[1].measure: a string field cannot be summed",
        "boards.yaml:7: tiles[2].field: no field named 'nope' in sales_order",
    ]
    # the command admins run says the same, and fails
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    result = CliRunner().invoke(main, ["metadata", "validate", str(app)])
    assert result.exit_code == 1
    assert "boards.yaml:7: tiles[2].field: no field named 'nope' in sales_order" in result.output

    _write(app, "boards.yaml", "kind: dashboard\nname: sales\nentity: sales_order\ntiles: [{field: total, measure: sum}]\n")
    model = load_and_compile(app)
    assert model.of_kind("dashboard") == {"sales": Dashboard("sales", "sales_order", (("total", "sum"),))}
    result = CliRunner().invoke(main, ["metadata", "validate", str(app)])
    assert result.exit_code == 0 and "ok: 1 entities in 2 documents" in result.output


def test_publishing_a_kind_reports_its_changes_its_own_way(dashboards, loom_app, apply_metadata):
    board = {"kind": "dashboard", "name": "sales", "entity": "sales_order", "tiles": [{"field": "total"}]}
    first = apply_metadata(ORDER, board)
    assert "+ dashboard sales" in first.summary
    service = loom_app.extensions["loom"].metadata
    assert service.live().model.of_kind("dashboard")["sales"].tiles == (("total", "count"),)
    changed = {**board, "tiles": [{"field": "number"}]}
    plan = service.plan(model_from_documents([ORDER, changed]))
    assert list(plan.summary) == ["~ dashboard sales: tiles total -> number"]
    assert list(service.plan(model_from_documents([ORDER])).summary) == ["- dashboard sales"]


def test_a_taken_name_or_a_broken_schema_is_refused(dashboards):
    assert register_document_kind(DASHBOARD) is DASHBOARD  # the same kind again: nothing happens
    with pytest.raises(DocumentKindError, match="'entity' is already registered \\(a built-in kind\\)"):
        register_document_kind(DocumentKind("entity", SCHEMA))
    with pytest.raises(DocumentKindError, match="'dashboard' is already registered \\(another document kind\\)"):
        register_document_kind(DocumentKind("dashboard", {"type": "object"}))
    with pytest.raises(DocumentKindError, match="its JSON Schema is not valid"):
        register_document_kind(DocumentKind("chart", {"type": "nonsense"}))
    with pytest.raises(DocumentKindError, match="in a circle"):
        register_document_kind(DocumentKind("chart", {"type": "object"}, after=("chart_b",)))
        register_document_kind(DocumentKind("chart_b", {"type": "object"}, after=("chart",)))
    unregister_document_kind("chart")
    with pytest.raises(DocumentKindError, match="built-in document kind and cannot be removed"):
        unregister_document_kind("role")


def test_a_kind_without_its_own_compile_keeps_its_documents_as_data(tmp_path):
    notes = DocumentKind("note", {"type": "object", "required": ["kind", "name", "text"]})
    with registered_document_kind(notes):
        docs, problems = load_text("kind: note\nname: hello\ntext: Hi\n---\nkind: note\nname: hello\ntext: again\n",
                                   "notes.yaml")
        assert problems == []
        with pytest.raises(MetadataError) as refused:
            compile_documents(docs)
        assert [str(p) for p in refused.value.problems] == [
            "notes.yaml:6: name: note 'hello' is already declared in notes.yaml:2"]
        model = compile_documents(docs[:1])
        assert dict(model.of_kind("note")["hello"]) == {"kind": "note", "name": "hello", "text": "Hi"}
