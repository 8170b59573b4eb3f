"""Child rows of a table field, written through the API."""

from __future__ import annotations


def test_rows_that_leave_out_different_fields_are_stored_with_their_defaults(apply_metadata, make_entity,
                                                                            loom_client):
    line = make_entity("visit_line", [{"name": "item", "type": "string"},
                                      {"name": "qty", "type": "integer", "default": 1},
                                      {"name": "note", "type": "text"}], child=True)
    visit = make_entity("visit", [{"name": "title", "type": "string"},
                                  {"name": "lines", "type": "table", "target": "visit_line"}])
    apply_metadata(line, visit)
    created = loom_client.post("/api/v1/visit", json={"title": "a", "lines": [
        {"item": "bolt"}, {"qty": 4, "note": "n"}, {"item": "nut", "qty": 2}]})
    assert created.status_code == 201, created.get_json()
    lines = loom_client.get(f"/api/v1/visit/{created.get_json()['data']['id']}").get_json()["data"]["lines"]
    assert [(r["item"], r["qty"], r["note"]) for r in lines] == [("bolt", 1, None), (None, 4, "n"), ("nut", 2, None)]
