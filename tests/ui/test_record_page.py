"""The record page as a person reads it: related lists named and counted, a dash for an
empty value, the system as the author of what Loom made, each label once, and a way to
start a related record with the link filled in."""

from __future__ import annotations

import re

from loom.principal import Principal
from loom.records.door import record_context
from loom.records.service import RecordService

from .conftest import PASSWORD, sign_in


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _office(loom_app, make_user, make_entity, apply_metadata):
    """A generated app: offices, the staff of each, and visits that name an office twice."""
    apply_metadata(
        make_entity("office", [{"name": "name", "type": "string"}, {"name": "city", "type": "string"},
                               {"name": "remarks", "type": "text", "label": {"en": "Remarks", "zh": "附注"}}],
                    label={"en": "Office", "zh": "办公室"}, label_plural={"en": "Offices", "zh": "各办公室"},
                    form={"sections": [{"label": "Office", "fields": ["name", "city"]},
                                       {"label": {"en": "Remarks", "zh": "附注"}, "fields": ["remarks"]}]}),
        make_entity("clerk", [{"name": "name", "type": "string"},
                              {"name": "office", "type": "link", "target": "office", "required": True}],
                    label={"en": "Clerk", "zh": "职员"}, label_plural={"en": "Clerks", "zh": "职员们"}),
        make_entity("visit", [{"name": "subject", "type": "string"},
                              {"name": "origin", "type": "link", "target": "office"},
                              {"name": "destination", "type": "link", "target": "office"}]),
        {"kind": "role", "name": "reader", "permissions": {"office": {"actions": ["read"]},
                                                           "clerk": {"actions": ["read"]},
                                                           "visit": {"actions": ["read"]}}},
    )
    make_user("boss", superuser=True, password=PASSWORD)
    make_user("reader", roles=["reader"], password=PASSWORD)
    with loom_app.app_context():
        system = record_context(Principal.system("seed"))
        office, other = RecordService(system, "office").bulk_create([{"name": "Hangzhou"}, {"name": "Suzhou"}])
        RecordService(system, "clerk").bulk_create([{"name": f"Clerk {i}", "office": office} for i in range(3)])
        RecordService(system, "clerk").bulk_create([{"name": "Elsewhere", "office": other}])
        RecordService(system, "visit").bulk_create([{"subject": "Audit", "origin": office, "destination": other}])
    return office


def test_related_lists_are_headed_by_the_plural_label_and_a_count(loom_app, make_user, make_entity, apply_metadata):
    office = _office(loom_app, make_user, make_entity, apply_metadata)
    page = sign_in(loom_app, "boss").get(f"/r/office/{office}").get_data(as_text=True)
    clerks = re.search(r'id="related-clerk-office".*?</h2>', page, re.S).group(0)
    assert _text(clerks).endswith("Clerks (3)")
    # an entity linking here two ways names the link beside its count
    origin = re.search(r'id="related-visit-origin".*?</h2>', page, re.S).group(0)
    assert _text(origin).endswith("Visit (1) · Origin")
    assert "Customer:" not in page and "Office: 3" not in page
    chinese = sign_in(loom_app, "boss")
    chinese.post("/language", {"locale": "zh_CN"})
    zh = chinese.get(f"/r/office/{office}").get_data(as_text=True)
    assert _text(re.search(r'id="related-clerk-office".*?</h2>', zh, re.S).group(0)).endswith("职员们 (3)")


def test_empty_values_show_a_dash_and_what_loom_made_names_the_system(loom_app, make_user, make_entity,
                                                                     apply_metadata):
    office = _office(loom_app, make_user, make_entity, apply_metadata)
    page = sign_in(loom_app, "boss").get(f"/r/office/{office}").get_data(as_text=True)
    values = dict(re.findall(r"<dt>([^<]+)</dt>\s*<dd>(.*?)</dd>", page, re.S))
    assert _text(values["City"]) == "—" and _text(values["Owner"]) == "—"
    assert _text(values["Created by"]) == "System" and _text(values["Updated by"]) == "System"


def test_a_section_named_as_its_only_field_shows_the_name_once(loom_app, make_user, make_entity, apply_metadata):
    office = _office(loom_app, make_user, make_entity, apply_metadata)
    page = _text(sign_in(loom_app, "boss").get(f"/r/office/{office}").get_data(as_text=True))
    assert page.count("Remarks") == 1


def test_the_demo_customer_shows_notes_once(page_client, demo):
    customer = _text(page_client("admin").get(f"/r/customer/{demo['customers'][0]}").get_data(as_text=True))
    assert customer.count("Notes") == 1


def test_a_related_list_starts_a_new_record_with_the_link_filled_in(loom_app, make_user, make_entity,
                                                                     apply_metadata):
    office = _office(loom_app, make_user, make_entity, apply_metadata)
    boss = sign_in(loom_app, "boss")
    page = boss.get(f"/r/office/{office}").get_data(as_text=True)
    assert f'href="/r/clerk/new?office={office}"' in page and "New Clerk" in page
    form = boss.get(f"/r/clerk/new?office={office}").get_data(as_text=True)
    assert f'name="office" value="{office}"' in form and 'value="Hangzhou"' in form
    saved = boss.post("/r/clerk/new", {"name": "Newcomer", "office": str(office)})
    assert saved.status_code == 303
    assert "Clerks (4)" in _text(boss.get(f"/r/office/{office}").get_data(as_text=True))
    # someone who may not create clerks is not offered to
    reader = sign_in(loom_app, "reader").get(f"/r/office/{office}").get_data(as_text=True)
    assert "/r/clerk/new" not in reader and "New Clerk" not in reader


def test_a_prefilled_link_to_a_record_out_of_reach_is_left_empty(loom_app, make_user, make_entity, apply_metadata):
    office = _office(loom_app, make_user, make_entity, apply_metadata)
    boss = sign_in(loom_app, "boss")
    for wrong in ("999999", "abc", ""):
        form = boss.get(f"/r/clerk/new?office={wrong}")
        assert form.status_code == 200
        assert 'name="office" value=""' in form.get_data(as_text=True)
    assert boss.get(f"/r/clerk/new?office={office}&owner=1&id=5").status_code == 200
