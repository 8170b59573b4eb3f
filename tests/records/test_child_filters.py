"""Filtering records by their child rows: ``filter[table.field][op]`` matches a record when
one of its rows matches, with the rows' field permissions applied like any other."""

from __future__ import annotations

import pytest


@pytest.fixture
def kits(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("part", [{"name": "code", "type": "string"}], title_field="code"),
        make_entity("kit_row", [{"name": "part", "type": "link", "target": "part"},
                                {"name": "count", "type": "integer"},
                                {"name": "cost", "type": "decimal", "precision": 10, "scale": 2}], child=True),
        make_entity("kit", [{"name": "label", "type": "string"},
                            {"name": "rows", "type": "table", "target": "kit_row"}], title_field="label"),
        {"kind": "role", "name": "packer", "permissions": {
            "kit": {"actions": ["read", "create"]}, "part": {"actions": ["read", "create"]},
            "kit_row": {"actions": ["read", "create"], "fields": {"cost": "none"}}}},
    )
    make_user("pat", roles=["packer"])


def test_a_record_matches_when_one_of_its_rows_does(kits, client_for):
    pat = client_for("pat")
    bolt, nut, gear = (pat.post("/api/v1/part", json={"code": c}).get_json()["data"]["id"] for c in ("bolt", "nut", "gear"))
    for label, rows in (("A", [(bolt, 2), (nut, 4)]), ("B", [(nut, 1)]), ("C", [(gear, 9), (bolt, 1)]), ("D", [])):
        reply = pat.post("/api/v1/kit", json={"label": label, "rows": [{"part": p, "count": n} for p, n in rows]})
        assert reply.status_code == 201

    def labels(query):
        reply = pat.get(f"/api/v1/kit?sort=label&{query}")
        assert reply.status_code == 200, reply.get_json()
        return [k["label"] for k in reply.get_json()["data"]]

    assert labels(f"filter[rows.part][eq]={bolt}") == ["A", "C"]
    assert labels(f"filter[rows.part][in]={nut},{gear}") == ["A", "B", "C"]
    assert labels("filter[rows.count][gte]=4") == ["A", "C"]
    assert labels(f"filter[rows.part][eq]={bolt}&filter[rows.count][gte]=2") == ["A", "C"]  # each on any row
    assert labels(f"filter[rows.part][eq]={bolt}&filter[label][ne]=A") == ["C"]
    # each record once, and the count agrees
    page = pat.get(f"/api/v1/kit?filter[rows.part][in]={bolt},{nut}&count=exact").get_json()
    assert page["count"] == 3 and len(page["data"]) == 3


@pytest.mark.parametrize(("query", "message"), [
    ("filter[rows.cost][gt]=1", "unknown field 'cost'"),            # may not read the rows' cost: no oracle
    ("filter[rows.nope][eq]=1", "unknown field 'nope'"),
    ("filter[label.x][eq]=1", "only a table field's rows can be filtered"),
    ("filter[rows.count][contains]=1", "operator 'contains' does not apply"),
    ("filter[rows.count][eq]=many", "filter[rows.count][eq]"),
])
def test_bad_or_forbidden_row_filters_get_a_400_naming_them(kits, client_for, query, message):
    reply = client_for("pat").get(f"/api/v1/kit?{query}")
    assert reply.status_code == 400
    assert message in reply.get_json()["detail"]
    assert reply.get_json()["errors"][0]["field"].startswith("filter[")


def test_the_api_description_offers_the_row_filters_the_caller_may_use(kits, client_for):
    from openapi_spec_validator import validate

    spec = client_for("pat").get("/api/openapi.json").get_json()
    validate(spec)
    names = {p["name"] for p in spec["paths"]["/api/v1/kit"]["get"]["parameters"]}
    assert {"filter[rows.part]", "filter[rows.count]", "filter[label]"} <= names
    assert "filter[rows.cost]" not in names and "filter[rows.id]" not in names
