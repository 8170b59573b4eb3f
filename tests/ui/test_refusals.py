"""A screen's refusal writes the same ``denied`` audit entry as the API's: the action, the
entity, the record and the reason."""

from __future__ import annotations

import sqlalchemy as sa

from .conftest import PASSWORD, sign_in


def _denied(loom_app) -> list[tuple]:
    with loom_app.extensions["loom"].engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, actor, entity, record_id, detail FROM loom_audit "
                                    "WHERE outcome = 'denied' ORDER BY seq")).all()
    return [(r.action, r.actor, r.entity, r.record_id, r.detail) for r in rows]


def test_a_screen_refusal_is_audited_like_the_apis(loom_app, apply_metadata, make_entity, make_user, client_for):
    apply_metadata(
        make_entity("ledger", [{"name": "title", "type": "string"}], title_field="title"),
        {"kind": "role", "name": "viewer", "permissions": {"ledger": {"actions": ["read"]}}},
    )
    make_user("admin", superuser=True, password=PASSWORD)
    make_user("viewer", roles=["viewer"], password=PASSWORD)
    record = client_for("admin").post("/api/v1/ledger", json={"title": "books"}).get_json()["data"]["id"]
    # the API's entry, for comparison
    assert client_for("viewer").patch(f"/api/v1/ledger/{record}", json={"title": "x"}).status_code == 403
    api_entry = _denied(loom_app)[-1]
    assert api_entry[:4] == ("record.update", "viewer", "ledger", record)

    viewer = sign_in(loom_app, "viewer")
    assert viewer.get(f"/r/ledger/{record}/edit").status_code == 403
    assert _denied(loom_app)[-1][:4] == ("record.update", "viewer", "ledger", record)
    assert _denied(loom_app)[-1][4] == api_entry[4]  # the same reason
    before = len(_denied(loom_app))
    submitted = viewer.post(f"/r/ledger/{record}/edit", {"title": "x", "version": "1"}, htmx="record-form")
    assert submitted.status_code == 403
    assert len(_denied(loom_app)) == before + 1  # logged once, not twice
    assert _denied(loom_app)[-1][:4] == ("record.update", "viewer", "ledger", record)
    assert viewer.get("/r/ledger/new").status_code == 403
    assert _denied(loom_app)[-1][:4] == ("record.create", "viewer", "ledger", None)
    assert viewer.get("/r/ledger/_import").status_code == 403
    assert _denied(loom_app)[-1][:4] == ("record.import", "viewer", "ledger", None)
    assert viewer.post(f"/r/ledger/{record}/delete", {"version": "1"}).status_code == 403
    assert _denied(loom_app)[-1][:4] == ("record.delete", "viewer", "ledger", record)
