"""Property tests: random metadata documents never crash the loader, and random record
bodies never crash the API. Valid input compiles or saves; invalid input gets a clear
error naming where it is wrong."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loom.errors import MetadataError
from loom.metadata import compile_documents, load_text
from loom.metadata.types import FIELD_TYPES

identifier = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8),
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
label = st.one_of(st.text(min_size=1, max_size=8), st.dictionaries(st.sampled_from(["en", "zh"]), st.text(max_size=8)))


@st.composite
def field_docs(draw):
    doc = {"name": draw(identifier), "type": draw(st.sampled_from(sorted(FIELD_TYPES) + ["nonsense"]))}
    extra = draw(st.dictionaries(
        st.sampled_from(["label", "required", "unique", "default", "index", "max_length", "min", "max",
                         "options", "validators", "target", "precision", "scale", "pattern", "bogus"]),
        st.one_of(scalars, label, st.lists(st.fixed_dictionaries({"value": st.text(min_size=1, max_size=4)}),
                                           min_size=1, max_size=3),
                  st.lists(st.sampled_from(["uscc", "cn_mobile", "email"]), max_size=2)),
        max_size=4))
    doc.update(extra)
    return doc


@st.composite
def entity_docs(draw):
    doc = {"kind": draw(st.sampled_from(["entity", "entity", "entity", "rule"])), "name": draw(identifier),
           "fields": draw(st.lists(field_docs(), min_size=0, max_size=5))}
    if draw(st.booleans()):
        doc["title_field"] = draw(identifier)
    if draw(st.booleans()):
        doc["list"] = {"sort": draw(st.sampled_from(["-created_at", "name", "-x,y", "bad sort"]))}
    return doc


@settings(max_examples=300, deadline=None)
@given(st.lists(entity_docs(), min_size=1, max_size=3))
def test_random_documents_compile_or_get_located_errors(docs):
    text = "\n---\n".join(yaml.safe_dump(d, allow_unicode=True) for d in docs)
    documents, problems = load_text(text, "random.yaml")
    for problem in problems:
        assert problem.file == "random.yaml" and problem.message
    if problems:
        return
    try:
        model = compile_documents(documents)
    except MetadataError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.file == "random.yaml" and problem.line and problem.message
        return
    assert set(model.entities) == {d["name"] for d in docs}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(text):
    documents, problems = load_text(text, "noise.yaml")
    assert all(p.file == "noise.yaml" for p in problems)


FIELDS = [{"name": "name", "type": "string", "required": True, "max_length": 20},
          {"name": "n", "type": "integer", "min": 0},
          {"name": "amount", "type": "money"},
          {"name": "when", "type": "datetime"},
          {"name": "day", "type": "date"},
          {"name": "ok", "type": "boolean"},
          {"name": "kind", "type": "select", "options": [{"value": "a"}]},
          {"name": "tags", "type": "multiselect", "options": [{"value": "x"}, {"value": "y"}]},
          {"name": "data", "type": "json"},
          {"name": "file", "type": "attachment"},
          {"name": "site", "type": "url"},
          {"name": "mail", "type": "email"},
          {"name": "mobile", "type": "phone", "validators": ["cn_mobile"]},
          {"name": "boss", "type": "link", "target": "user"}]

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=12),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)),
    max_leaves=6)


@pytest.fixture
def everything(apply_metadata, make_entity):
    apply_metadata(make_entity("everything", FIELDS))


UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _strings(value):
    """Every string in a JSON value, member names included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, member in value.items():
            yield key
            yield from _strings(member)
    elif isinstance(value, list):
        for member in value:
            yield from _strings(member)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from([f["name"] for f in FIELDS] + ["id", "zzz"]), json_values, max_size=6))
def test_random_record_bodies_get_201_or_a_field_error(everything, loom_client, body):
    text = json.dumps(body)
    response = loom_client.post("/api/v1/everything", data=text, content_type="application/json")
    if any(UNSTORABLE.search(t) for t in _strings(body)):
        # text no database column can hold is refused at the edge, naming the member
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["errors"][0]["field"]
        return
    assert response.status_code in (201, 422), response.get_json()
    if response.status_code == 422:
        errors = response.get_json()["errors"]
        assert errors and all(e["message"] for e in errors)
    else:
        record = response.get_json()["data"]
        again = loom_client.get(f"/api/v1/everything/{record['id']}").get_json()["data"]
        assert again == record
