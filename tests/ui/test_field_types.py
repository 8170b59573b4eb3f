"""A field type added by a plugin works everywhere a built-in one does: declared in
metadata, stored, checked and sent by the API, edited in the form with the widget the
type names, shown and filtered in the list, exported and imported, each as the type says.
And a plugin can extend how an existing type is shown without replacing it."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Blueprint
from markupsafe import Markup, escape

from loom import hookimpl
from loom.metadata import (
    FieldType,
    FieldTypeError,
    TextProblem,
    extend_display,
    load_text,
    register_field_type,
    registered_field_type,
    remove_display_extension,
    unregister_field_type,
)
from loom.metadata.types import field_type

from .conftest import PASSWORD, sign_in

STARS = "★"


def _stars(value: Any) -> int:
    """1 to 5 from a number, a digit, or a row of stars; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("expected a rating from 1 to 5")
    if isinstance(value, str):
        text = value.strip()
        value = len(text) if text and set(text) == {STARS} else (int(text) if text.isdigit() else None)
    if not isinstance(value, int) or not 1 <= value <= 5:
        raise ValueError("expected a rating from 1 to 5")
    return value


def _rating_text(field, text, ctx):
    try:
        return _stars(text)
    except ValueError:
        raise TextProblem("not_a_rating", text, f"“{text}” is not a rating from 1 to 5") from None


RATING = FieldType(
    "rating", lambda value, field: _stars(value), lambda field: sa.SmallInteger(),
    lambda field: {"type": "integer", "minimum": 1, "maximum": 5},
    operators=frozenset({"eq", "ne", "gte", "lte", "in", "isnull"}), numeric=True,
    display=lambda field, value, ctx: STARS * value + "☆" * (5 - value),
    widget="template", template="rating/_input.html",
    parse_form=lambda field, values, ctx: next((v for v in values if v), None),
    parse_text=_rating_text,
    export=lambda field, value, ctx: f"{value}/5",
    filter_widget="range",
)

WIDGET = """<span class="rating-input" role="radiogroup" id="{{ input_id }}" {{ attrs }}>
{%- for n in range(1, 6) -%}
<label><input type="radio" name="{{ name }}" value="{{ n }}" {% if value == n %}checked{% endif %}>{{ n }}</label>
{%- endfor -%}
</span>"""


class RatingPlugin:
    """What a plugin adding the type ships: the type, and the template of its widget."""

    def __init__(self, folder: Path):
        self.folder = folder

    @hookimpl
    def field_types(self):
        return [RATING]

    @hookimpl
    def register_blueprints(self):
        return [Blueprint("rating", __name__, template_folder=str(self.folder))]


@pytest.fixture
def rating():
    with registered_field_type(RATING):
        yield RATING


@pytest.fixture
def loom_plugins(rating, tmp_path_factory):
    folder = tmp_path_factory.mktemp("templates")
    (folder / "rating").mkdir()
    (folder / "rating" / "_input.html").write_text(WIDGET, encoding="utf-8")
    return [RatingPlugin(folder)]


@pytest.fixture
def films(loom_app, apply_metadata, make_entity, make_user):
    apply_metadata(make_entity("film", [
        {"name": "title", "type": "string", "required": True},
        {"name": "stars", "type": "rating", "label": {"en": "Stars", "zh": "星级"}},
        {"name": "phone", "type": "phone"},
    ], title_field="title", list={"columns": ["title", "stars", "phone"], "filters": ["stars"]}))
    make_user("curator", superuser=True, password=PASSWORD)
    return sign_in(loom_app, "curator")


def _wait_for(client, job: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        html = client.hx(f"/r/film/_import/{job}/progress", target="import-progress").get_data(as_text=True)
        if "every 1s" not in html:
            return html
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def test_a_plugin_field_type_goes_through_api_form_list_export_and_import(films, loom_client):
    # the API: the type's coerce checks the value, its column stores it
    made = loom_client.post("/api/v1/film", json={"title": "Alpha", "stars": 4})
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["data"]["stars"] == 4
    refused = loom_client.post("/api/v1/film", json={"title": "Omega", "stars": 9})
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["field"] == "stars"
    assert "rating from 1 to 5" in refused.get_json()["errors"][0]["message"]
    assert loom_client.post("/api/v1/film", json={"title": "Beta", "stars": "★★"}).get_json()["data"]["stars"] == 2

    # the form: the type's own widget (a plugin template), read back by its parse_form
    form = films.get("/r/film/new").get_data(as_text=True)
    assert 'class="rating-input"' in form and 'name="stars" value="5"' in form
    saved = films.post("/r/film/new", {"title": "Gamma", "stars": "3"})
    assert saved.status_code == 303, saved.get_data(as_text=True)
    gamma = int(saved.headers["Location"].rsplit("/", 1)[1])
    assert loom_client.get(f"/api/v1/film/{gamma}").get_json()["data"]["stars"] == 3
    edit = films.get(f"/r/film/{gamma}/edit").get_data(as_text=True)
    assert re.search(r'value="3"\s+checked', edit)

    # the list: the type's display, a range filter (its operators), sorting
    listing = films.get("/r/film").get_data(as_text=True)
    assert "★★★★☆" in listing and "★★☆☆☆" in listing and "★★★☆☆" in listing
    assert 'name="filter[stars][gte]"' in listing and 'name="filter[stars][lte]"' in listing
    best = films.get("/r/film?filter[stars][gte]=3&sort=-stars").get_data(as_text=True)
    assert best.index("Alpha") < best.index("Gamma") and "Beta" not in best
    assert loom_client.get("/api/v1/film?filter[stars][contains]=3").status_code == 400  # not its operator

    # the export: the type's own cell
    exported = films.get("/r/film/_export?format=csv&columns=title,stars&sort=title").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(exported.lstrip("\ufeff"))))
    assert [row[1:] for row in rows[1:]] == [["Alpha", "4/5"], ["Beta", "2/5"], ["Gamma", "3/5"]]

    # the import: the type's parse_text, and its own words for a cell it refuses
    uploaded = films.post("/r/film/_import", {"file": (io.BytesIO("Title,Stars\nDelta,★★★★★\nEpsilon,lots\n"
                                                                 .encode()), "films.csv")},
                          content_type="multipart/form-data")
    assert uploaded.status_code == 303
    job = int(uploaded.headers["Location"].rsplit("/", 1)[1])
    preview = films.get(uploaded.headers["Location"]).get_data(as_text=True)
    assert "“lots” is not a rating from 1 to 5" in preview
    started = films.post(uploaded.headers["Location"], {"column-0": "title", "column-1": "stars"})
    assert started.status_code == 303
    done = _wait_for(films, job)
    assert "1 imported" in done and "1 rejected" in done
    delta = loom_client.get("/api/v1/film?filter[title][eq]=Delta").get_json()["data"]
    assert [d["stars"] for d in delta] == [5]


def test_a_display_extension_changes_pages_but_not_titles_or_exports(films, loom_client):
    def click_to_call(field, value, text, ctx):
        return Markup('<a href="tel:{}">{}</a>').format(value, text)

    made = loom_client.post("/api/v1/film", json={"title": "Call me", "phone": "+86 <10> 1234"}).get_json()["data"]
    extend_display("phone", click_to_call)
    try:
        page = films.get(f"/r/film/{made['id']}").get_data(as_text=True)
        assert f'<a href="tel:{escape("+86 <10> 1234")}">{escape("+86 <10> 1234")}</a>' in page
        assert "<10>" not in page  # the extension's markup escapes the value
        assert 'href="tel:' in films.get("/r/film").get_data(as_text=True)
        exported = films.get("/r/film/_export?format=csv&columns=phone").get_data(as_text=True)
        assert "+86 <10> 1234" in exported and "tel:" not in exported
    finally:
        remove_display_extension("phone", click_to_call)
    assert "tel:" not in films.get(f"/r/film/{made['id']}").get_data(as_text=True)
    assert field_type("phone").display_extensions == ()


def test_a_taken_name_or_a_definition_that_does_not_fit_is_refused(rating):
    with pytest.raises(FieldTypeError, match="'string' is already registered \\(a built-in type\\)"):
        register_field_type(FieldType("string", lambda v, f: v, None, lambda f: {}))
    with pytest.raises(FieldTypeError, match="'rating' is already registered \\(another field type\\)"):
        register_field_type(FieldType("rating", lambda v, f: v, None, lambda f: {}))
    assert register_field_type(RATING) is field_type("rating")  # the same type again: nothing happens
    with pytest.raises(FieldTypeError, match="widget must be one of"):
        register_field_type(FieldType("dial", lambda v, f: v, None, lambda f: {}, widget="knob"))
    with pytest.raises(FieldTypeError, match="a range filter sends gte, lte"):
        register_field_type(FieldType("dial", lambda v, f: v, None, lambda f: {}, filter_widget="range"))
    with pytest.raises(FieldTypeError, match="unknown properties colour"):
        register_field_type(FieldType("dial", lambda v, f: v, None, lambda f: {}, properties=frozenset({"colour"})))
    with pytest.raises(FieldTypeError, match="built-in field type and cannot be removed"):
        unregister_field_type("string")


def test_the_entity_schema_accepts_exactly_the_registered_types():
    text = "kind: entity\nname: film\nfields:\n  - {name: stars, type: rating}\n"
    _, problems = load_text(text, "film.yaml")
    assert [str(p) for p in problems] and "film.yaml:4: fields[0].type: 'rating' is not one of" in str(problems[0])
    with registered_field_type(RATING):
        assert load_text(text, "film.yaml")[1] == []
    assert load_text(text, "film.yaml")[1]  # gone again once unregistered
