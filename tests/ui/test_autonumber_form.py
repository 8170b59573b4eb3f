"""An autonumber field on screen: the new form has no input for it, a form that sends one
anyway does not set it, and the saved record shows the number Loom gave it."""

from __future__ import annotations

import re

from .conftest import PASSWORD, sign_in


def test_a_record_created_by_form_is_numbered_and_the_number_cannot_be_typed(loom_app, apply_metadata,
                                                                           make_entity, make_user):
    apply_metadata(
        make_entity("ticket", [{"name": "ref", "type": "string", "autonumber": "T-{seq:4}"},
                               {"name": "subject", "type": "string"}], title_field="subject"),
        {"kind": "role", "name": "desk", "permissions": {"ticket": {"actions": ["read", "create", "update"]}}},
    )
    make_user("kim", roles=["desk"], password=PASSWORD)
    kim = sign_in(loom_app, "kim")
    form = kim.get("/r/ticket/new").get_data(as_text=True)
    assert 'id="f-subject"' in form and 'id="f-ref"' not in form
    created = kim.post("/r/ticket/new", {"subject": "Printer on fire", "ref": "T-9999"}, htmx="record-form")
    record_id = int(re.search(r"/r/ticket/(\d+)", created.headers["HX-Location"]).group(1))
    page = kim.get(f"/r/ticket/{record_id}").get_data(as_text=True)
    assert "T-0001" in page and "T-9999" not in page
    edit = kim.get(f"/r/ticket/{record_id}/edit").get_data(as_text=True)
    assert 'id="f-ref"' not in edit and "T-0001" in edit
