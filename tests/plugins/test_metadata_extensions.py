"""Field types and document kinds plugins add to the metadata language (the registries
are the process's: each test removes what it added)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import loom
from loom.app import create_app
from loom.metadata import (
    DocumentKind,
    DocumentKindError,
    FieldType,
    FieldTypeError,
    unregister_document_kind,
    unregister_field_type,
)

CHECKLIST = DocumentKind("checklist", schema={
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object", "required": ["kind", "name", "steps"], "additionalProperties": False,
    "properties": {"kind": {"const": "checklist"}, "name": {"type": "string"},
                   "steps": {"type": "array", "items": {"type": "string"}, "minItems": 1}}})

COLOUR = FieldType("colour", coerce=lambda value, field: str(value).lower(), sql_type=lambda field: sa.String(7),
                   json_schema=lambda field: {"type": "string", "pattern": "^#[0-9a-f]{6}$"})


class Extensions:
    @loom.hookimpl
    def document_kinds(self):
        return [CHECKLIST]

    @loom.hookimpl
    def field_types(self):
        return [COLOUR]


@pytest.fixture
def loom_plugins():
    yield [Extensions()]
    unregister_document_kind("checklist")
    unregister_field_type("colour")


def test_document_kinds_are_loaded_checked_and_compiled(loom_app, apply_metadata, make_entity):
    apply_metadata({"kind": "checklist", "name": "onboarding", "steps": ["contract", "first call"]})
    live = loom_app.extensions["loom"].metadata.live().model
    assert live.of_kind("checklist")["onboarding"]["steps"] == ["contract", "first call"]
    with pytest.raises(loom.MetadataError, match="steps"):
        apply_metadata({"kind": "checklist", "name": "empty", "steps": []})


def test_field_types_are_registered_for_the_app(apply_metadata, make_entity, loom_client):
    apply_metadata(make_entity("pen", [{"name": "ink", "type": "colour"}]))
    assert loom_client.post("/api/v1/pen", json={"ink": "#FF0000"}).get_json()["data"]["ink"] == "#ff0000"


def test_a_taken_name_stops_the_app(loom_engine, tmp_path):
    class Clash:
        @loom.hookimpl
        def field_types(self):
            return [FieldType("string", coerce=str, sql_type=lambda f: sa.String(), json_schema=lambda f: {})]

    class KindClash:
        @loom.hookimpl
        def document_kinds(self):
            return [DocumentKind("role", schema={"type": "object"})]

    for plugin, error in ((Clash(), FieldTypeError), (KindClash(), DocumentKindError)):
        with pytest.raises(error, match="already registered"):
            create_app({"ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x",
                        "PLUGINS": [plugin], "DISCOVER_PLUGINS": False})
