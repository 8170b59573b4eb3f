"""The audit entry's text and hash are written by orjson where it writes the same bytes
as the standard library, and by the standard library otherwise: for any value, the
stored text (and so every hash of the chain) must be what the standard library alone
made before. Checked here against that earlier implementation, kept verbatim."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loom.audit.log import _UNSTORABLE, HASHED, _default, canonical_json, entry_hash, timestamp

_reference_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                     default=_default).encode
_reference_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def reference_canonical(value):
    """``canonical_json`` as it was: the standard library only."""
    if value is None:
        return None
    return _UNSTORABLE.sub("\ufffd", _reference_encode(value))


def reference_hash(row, at_text=None):
    values = [row[c] for c in HASHED]
    values[1] = at_text or timestamp(values[1])
    return hashlib.sha256(_reference_compact(values).encode()).hexdigest()


def outcome(write, value):
    """What writing ``value`` gives: the text, or the type of error raised."""
    try:
        return write(value)
    except Exception as exc:  # noqa: BLE001 - the error type is the outcome compared
        return type(exc)


#: any character, lone surrogates and controls included
texts = st.text(alphabet=st.characters(blacklist_categories=()), max_size=12)
zones = st.sampled_from([None, dt.UTC, dt.timezone(dt.timedelta(hours=8)), dt.timezone(dt.timedelta(minutes=-90))])
atoms = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(), st.floats(allow_nan=False, allow_infinity=False, width=32),
    texts,
    st.decimals(), st.decimals(places=2, allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=zones), st.dates(), st.times(timezones=zones),
)
values = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(texts, inner, max_size=5),
        st.frozensets(st.one_of(st.integers(), texts), max_size=4),
        # keys JSON writes as text, or refuses
        st.dictionaries(st.one_of(st.integers(), st.booleans(), st.none(), texts), inner, max_size=3),
    ),
    max_leaves=25,
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_canonical_json_is_the_standard_librarys_text(value):
    assert outcome(canonical_json, value) == outcome(reference_canonical, value)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(texts, st.one_of(st.decimals(allow_nan=False), st.datetimes(), texts, st.integers(),
                                        st.none(), st.lists(st.one_of(texts, st.integers()), max_size=3)),
                       max_size=8))
def test_a_records_changes_are_written_as_before(record):
    changes = {name: [None, value] for name, value in record.items()}
    assert canonical_json(changes) == reference_canonical(changes)


class Colour(enum.Enum):
    RED = "red"


class Label(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize("value", [
    {"id": uuid.UUID(int=5)}, [Colour.RED], {"a": Label("x")}, Point(1), {"p": Point(2)}, [1e-05, 1e16, 0.1],
    {"n": float("nan"), "i": float("inf")}, {1: "a", "b": 2}, {None: 1, True: 2}, [2**64, -2**63 - 1],
    "\ud800 lone", {"\udfff": "key"}, {"k": decimal.Decimal("NaN")}, [object()],
    {"deep": [[[[[[[[[[{"x": "é\x00\x1f\x7f\u2028"}]]]]]]]]]]},
])
def test_values_orjson_would_write_differently_are_written_as_before(value):
    assert outcome(canonical_json, value) == outcome(reference_canonical, value)


def test_a_deep_value_is_written_as_before():
    value: list = []
    for _ in range(2000):
        value = [value]
    assert outcome(canonical_json, value) == outcome(reference_canonical, value)


hashed_rows = st.fixed_dictionaries({
    "seq": st.integers(min_value=1, max_value=2**66), "at": st.datetimes(),
    "actor": texts, "actor_id": st.one_of(st.none(), st.integers()), "ip": st.one_of(st.none(), texts),
    "user_agent": st.one_of(st.none(), texts), "request_id": st.one_of(st.none(), texts), "action": texts,
    "entity": st.one_of(st.none(), texts), "record_id": st.one_of(st.none(), st.integers()),
    "changes": st.one_of(st.none(), texts), "detail": st.one_of(st.none(), texts),
    "rows": st.one_of(st.none(), st.integers()), "outcome": st.sampled_from(["ok", "denied", "error"]),
    "prev_hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
})


@settings(max_examples=1000, deadline=None)
@given(hashed_rows)
def test_entry_hash_is_the_standard_librarys(row):
    assert outcome(entry_hash, row) == outcome(reference_hash, row)
    at_text = timestamp(row["at"])
    assert outcome(lambda r: entry_hash(r, at_text), row) == outcome(lambda r: reference_hash(r, at_text), row)
