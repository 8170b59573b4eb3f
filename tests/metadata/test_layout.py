"""Form layouts: fields a declared layout leaves out, and what the admin is told about them."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from loom.cli import main
from loom.metadata import load_text


def _model(text: str):
    from loom.metadata.compiler import compile_documents

    documents, problems = load_text(text)
    return compile_documents(documents, earlier=problems)


DEPOT = {"kind": "entity", "name": "depot",
         "fields": [{"name": "name", "type": "string"}, {"name": "city", "type": "string"},
                    {"name": "docks", "type": "integer"}],
         "form": {"sections": [{"label": "Basics", "fields": ["name"]}]}}


def test_fields_out_of_the_layout_form_a_trailing_section():
    entity = _model(yaml.safe_dump(DEPOT)).entity("depot")
    assert [f.name for f in entity.unplaced_fields] == ["city", "docks"]
    assert [s.fields for s in entity.layout] == [("name",), ("city", "docks")]
    assert entity.layout[-1].trailing and not entity.layout[0].trailing
    no_layout = _model(yaml.safe_dump({**DEPOT, "form": {}})).entity("depot")
    assert no_layout.unplaced_fields == () and no_layout.layout[0].fields == ("name", "city", "docks")


def test_validate_says_where_fields_out_of_the_layout_will_appear(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "layout-test")
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "depot.yaml").write_text(yaml.safe_dump(DEPOT))
    result = CliRunner().invoke(main, ["metadata", "validate", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ('note: depot: city, docks not in form.sections; shown in a last section "More" on the form '
            "and the record page") in result.output


def test_apply_says_where_fields_out_of_the_layout_will_appear(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", f"sqlite:///{tmp_path / 'loom.db'}")
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "layout-test")
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "depot.yaml").write_text(yaml.safe_dump(DEPOT))
    runner = CliRunner()
    assert runner.invoke(main, ["init"], catch_exceptions=False).exit_code == 0
    result = runner.invoke(main, ["metadata", "apply", str(folder)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "published version 1" in result.output and "note: depot: city, docks not in form.sections" in result.output


def test_plural_label_and_nav_order_are_optional_and_checked():
    depot = _model(yaml.safe_dump({**DEPOT, "label": {"en": "Depot", "zh": "仓库"},
                                   "label_plural": {"en": "Depots"}, "nav_order": 3})).entity("depot")
    assert depot.plural_title("en") == "Depots" and depot.plural_title("zh_CN") == "仓库" and depot.nav_order == 3
    plain = _model(yaml.safe_dump({**DEPOT, "label": "Depot"})).entity("depot")
    assert plain.plural_title("en") == "Depot" and plain.nav_order is None
    _documents, problems = load_text(yaml.safe_dump({**DEPOT, "nav_order": "first"}))
    assert any("nav_order" in str(p) for p in problems)


def test_a_new_plural_label_is_a_change_to_publish():
    from loom.metadata.diff import diff_entity

    before = _model(yaml.safe_dump(DEPOT)).entity("depot")
    after = _model(yaml.safe_dump({**DEPOT, "label_plural": "Depots", "nav_order": 2})).entity("depot")
    assert set(diff_entity(before, after).layout) == {"label_plural", "nav_order"}
