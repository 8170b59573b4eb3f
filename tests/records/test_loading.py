"""A bulk create validates its rows without marshmallow's per-call machinery, and that
changes nothing: for any row, in every mode, the loader gives exactly what the entity's
schema gives, the same values or the same errors."""

from __future__ import annotations

import marshmallow as ma
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loom.records.loading import RowLoader
from loom.records.schemas import build_schemas, flatten_errors
from loom.schema.service import model_from_documents

EVERY_KIND = {"kind": "entity", "name": "thing", "title_field": "name", "fields": [
    {"name": "name", "type": "string", "required": True, "max_length": 5},
    {"name": "note", "type": "text"},
    {"name": "email", "type": "email"},
    {"name": "mobile", "type": "phone", "validators": ["cn_mobile"]},
    {"name": "code", "type": "string", "pattern": "^[A-Z]+$"},
    {"name": "qty", "type": "integer", "min": 0, "max": 100},
    {"name": "price", "type": "decimal", "precision": 6, "scale": 2},
    {"name": "paid", "type": "boolean", "default": False},
    {"name": "due", "type": "date"},
    {"name": "at", "type": "datetime"},
    {"name": "level", "type": "select", "options": [{"value": "A"}, {"value": "B"}], "default": "A"},
    {"name": "tags", "type": "multiselect", "options": [{"value": "x"}, {"value": "y"}], "required": True},
    {"name": "other", "type": "link", "target": "thing"},
    {"name": "data", "type": "json"},
]}
MODEL = model_from_documents([EVERY_KIND])
SCHEMAS = build_schemas(MODEL.entity("thing"), MODEL)

values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
    st.text(max_size=6), st.sampled_from(["", "  ", "A", "B", "x", "ab", "1.5", "12.345", "2026-01-15",
                                          "2026-01-15T10:00:00Z", "13800138000", "a@b.cn", "ABC", "true"]),
    st.lists(st.sampled_from(["x", "y", "z", 1]), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                max_size=2))
rows = st.dictionaries(st.sampled_from([f["name"] for f in EVERY_KIND["fields"]] + ["owner", "bogus"]), values,
                       max_size=8)


def outcome(load, row):
    try:
        return "ok", load(dict(row))
    except ma.ValidationError as exc:
        return "refused", flatten_errors(exc.messages)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=rows, mode=st.sampled_from(["create", "update", "partial"]))
def test_the_loader_says_what_the_schema_says(row, mode):
    schema = SCHEMAS[mode]
    assert RowLoader(schema).direct
    assert outcome(RowLoader(schema).load, row) == outcome(schema.load, row)


def test_a_schema_with_its_own_machinery_is_always_loaded_by_marshmallow():
    class Shouting(ma.Schema):
        name = ma.fields.String()

        @ma.post_load
        def shout(self, data, **_kwargs):
            return {k: v.upper() for k, v in data.items()}

    loader = RowLoader(Shouting())
    assert not loader.direct
    assert loader.load({"name": "quiet"}) == {"name": "QUIET"}
