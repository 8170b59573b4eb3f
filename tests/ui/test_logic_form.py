"""Business logic on screen: a computed field has no input on the form, a form that sends
one anyway does not set it, the saved record shows what Loom computed, and a broken rule
is shown on the form with its own message."""

from __future__ import annotations

import re

from .conftest import PASSWORD, sign_in


def test_a_form_saves_computed_values_and_shows_a_broken_rule(loom_app, apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("invoice", [
            {"name": "subject", "type": "string"},
            {"name": "quantity", "type": "integer"},
            {"name": "price", "type": "money"},
            {"name": "total", "type": "money", "compute": "quantity * price"},
        ], title_field="subject", rules=[{"when": "quantity > 100", "message": {"en": "At most 100 per invoice"},
                                          "fields": ["quantity"]}]),
        {"kind": "role", "name": "clerk", "permissions": {"invoice": {"actions": ["read", "create", "update"]}}},
    )
    make_user("kim", roles=["clerk"], password=PASSWORD)
    kim = sign_in(loom_app, "kim")
    form = kim.get("/r/invoice/new").get_data(as_text=True)
    assert 'id="f-quantity"' in form and 'id="f-total"' not in form
    created = kim.post("/r/invoice/new", {"subject": "Lamps", "quantity": "3", "price": "2.50", "total": "999"},
                       htmx="record-form")
    record_id = int(re.search(r"/r/invoice/(\d+)", created.headers["HX-Location"]).group(1))
    page = kim.get(f"/r/invoice/{record_id}").get_data(as_text=True)
    assert "7.50" in page and "999" not in page
    refused = kim.post("/r/invoice/new", {"subject": "Many", "quantity": "101", "price": "1"}, htmx="record-form")
    assert "At most 100 per invoice" in refused.get_data(as_text=True)
