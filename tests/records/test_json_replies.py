"""Replies are written by orjson; they must be the same JSON the standard encoder writes
with Flask's conversions, for any value a view can hand over."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import uuid

from flask.json.provider import DefaultJSONProvider
from hypothesis import given, settings
from hypothesis import strategies as st

from loom.app import create_app

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text()
           | st.datetimes(min_value=dt.datetime(1900, 1, 1)) | st.dates(min_value=dt.date(1900, 1, 1))
           | st.decimals(allow_nan=False, allow_infinity=False) | st.uuids())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                      | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=5), max_leaves=30)


@dataclasses.dataclass
class Point:
    x: int
    label: str


def _apps(tmp_path):
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'replies.db'}", "INSTANCE_PATH": str(tmp_path),
                      "DISCOVER_PLUGINS": False, "SECRET_KEY": "test"})
    standard = DefaultJSONProvider(app)
    standard.sort_keys, standard.ensure_ascii = False, False
    return app, standard


def _same(app, standard, value) -> None:
    with app.app_context():
        written = app.json.response(value)
        expected = standard.response(value)
    assert written.mimetype == expected.mimetype == "application/json"
    assert json.loads(written.get_data()) == json.loads(expected.get_data())
    assert written.get_data().endswith(b"\n")


def test_replies_read_as_the_standard_encoder_writes_them(tmp_path):
    app, standard = _apps(tmp_path)
    for value in [{"when": dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC), "day": dt.date(2026, 12, 2),
                   "amount": decimal.Decimal("12.50"), "key": uuid.UUID(int=7), 3: "an int key",
                   "point": Point(1, "一"), "huge": 2**70, "zh": "华东\u2028"},
                  [1, 2.5, None, True], "text", None]:
        _same(app, standard, value)
    with app.app_context():
        assert "华东" in app.json.dumps({"zh": "华东"})  # not escaped, as ensure_ascii=False asks


@settings(max_examples=150, deadline=None)
@given(value=values)
def test_any_value_reads_the_same(tmp_path_factory, value):
    app, standard = _apps(tmp_path_factory.mktemp("replies"))
    _same(app, standard, value)


texts = st.text(alphabet=st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800", "\udfff", "한", "华"]),
                max_size=6)
documents = st.recursive(st.none() | st.integers() | texts, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(texts, inner, max_size=3), max_leaves=20)


def _verdict(check, *args):
    from loom.errors import BadRequest
    try:
        check(*args)
    except BadRequest as refused:
        return refused.errors
    return None


@settings(max_examples=300, deadline=None)
@given(document=documents, nesting=st.integers(0, 70), as_bytes=st.booleans())
def test_a_request_body_is_refused_alike_with_or_without_its_text(document, nesting, as_bytes):
    """Request bodies whose text has no escape, NUL or surrogate skip the per-string check:
    every body must get the same verdict, and the same error, either way."""
    from loom.edge import check_json

    for _ in range(nesting):
        document = [document]
    text = json.dumps(document, ensure_ascii=bool(nesting % 2))
    raw = text.encode("utf-8", "surrogatepass") if as_bytes else text
    parsed = json.loads(raw)
    assert _verdict(check_json, parsed, raw) == _verdict(check_json, parsed)
