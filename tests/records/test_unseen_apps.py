"""Business logic on apps nobody wrote: random entities, random computed fields over
random expressions (through a link too), random records. Whatever the metadata, a write is
stored (201) with exactly what the expression gives, rounded to the field, or refused with
422 when the value cannot be held; never a 500. The stored value can be found again with a
list filter on the computed field, as users filter their lists."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.expressions.test_sql_agrees_with_python import VALUES, Expressions, entity_fields

_apps = itertools.count()
#: where a computed value of each expression type is stored
FIELD_FOR = {"number": {"type": "decimal", "precision": 18, "scale": 4}, "text": {"type": "string"},
             "boolean": {"type": "boolean"}, "date": {"type": "date"}}
PLACES = Decimal("0.0001")


def _json(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _as_stored(value):
    """What the API shows for a computed value (decimals to the field's 4 places)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, dt.date):
        return value.isoformat()
    rounded = Decimal(value).quantize(PLACES, ROUND_HALF_UP)
    return str(abs(rounded) if rounded == 0 else rounded)


def _record(draw, fields, label):
    return {name: draw(st.none() | VALUES[kind], f"{label} {name}") for name, kind in fields}


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_apps_store_what_their_expressions_give(apply_metadata, loom_client, loom_app, data):
    n = next(_apps)
    partner_fields = data.draw(entity_fields("p"), "partner fields")
    fields = data.draw(entity_fields("s"), "subject fields")
    texts = data.draw(st.lists(Expressions(fields, partner_fields).any(), min_size=1, max_size=3), "expressions")
    partner, subject = f"partner{n}", f"subject{n}"
    # each expression's type decides the computed field's: compile once to learn it
    from loom.expressions import compile_expression
    from loom.schema.service import model_from_documents

    plain = [{"name": name, "type": kind} for name, kind in fields]
    documents = [
        {"kind": "entity", "name": partner,
         "fields": [{"name": name, "type": kind} for name, kind in partner_fields] + [{"name": "label", "type": "string"}]},
        {"kind": "entity", "name": subject,
         "fields": plain + [{"name": "partner", "type": "link", "target": partner}]},
    ]
    probe = model_from_documents(documents)
    kinds = [compile_expression(text, probe.entity(subject), probe).type for text in texts]
    computed = [{"name": f"c{i}", **FIELD_FOR[kind], "compute": text}
                for i, (text, kind) in enumerate(zip(texts, kinds, strict=True)) if kind in FIELD_FOR]
    documents[1]["fields"] += computed
    apply_metadata(*documents)
    model = loom_app.extensions["loom"].metadata.live().model

    partners = {}
    for i in range(data.draw(st.integers(0, 2), "partners")):
        values = _record(data.draw, partner_fields, f"partner {i}")
        reply = loom_client.post(f"/api/v1/{partner}", json={k: _json(v) for k, v in values.items()})
        assert reply.status_code == 201, reply.get_json()
        made = reply.get_json()["data"]
        partners[made["id"]] = {**values, **{name: made[name] for name, kind in partner_fields if kind == "string"}}
    for i in range(data.draw(st.integers(1, 3), "records")):
        values = {**_record(data.draw, fields, f"record {i}"),
                  "partner": data.draw(st.sampled_from([None, *partners]), f"record {i} partner")}
        reply = loom_client.post(f"/api/v1/{subject}", json={k: _json(v) for k, v in values.items()})
        assert reply.status_code in (201, 422), reply.get_json()
        if reply.status_code == 422:  # only a value the field cannot hold
            assert {e["code"] for e in reply.get_json()["errors"]} <= {"too_many_digits", "too_long", "invalid"}
            continue
        stored = reply.get_json()["data"]
        for name, kind in fields:  # text is stored as Loom keeps it (trimmed)
            if kind == "string":
                values[name] = stored[name]
        for f in computed:
            expression = model.entity(subject).field(f["name"]).compute_expr
            expected = _as_stored(expression.evaluate(values, lookup=lambda _e, i: partners.get(i)))
            assert stored[f["name"]] == expected, (f["compute"], values, stored[f["name"]], expected)
            if expected is None:
                continue
            found = loom_client.get(f"/api/v1/{subject}?filter[{f['name']}][eq]={quote(str(expected).lower() if isinstance(expected, bool) else str(expected))}")
            assert found.status_code == 200, found.get_json()
            assert stored["id"] in {r["id"] for r in found.get_json()["data"]}, (f["compute"], expected)
