"""The JSON API reads JSON bodies only: a body a browser can send across sites without
asking (text/plain, a form, multipart) is refused with 415 on every API write route,
which closes login CSRF (a cross-site form signing the victim in as the attacker)."""

from __future__ import annotations

import re

import pytest

GADGET = {"kind": "entity", "name": "gadget", "fields": [{"name": "title", "type": "string"}]}
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")
CROSS_SITE_BODIES = [("text/plain", '{"username": "wang", "password": "correct horse"}'),
                     ("application/x-www-form-urlencoded", "username=wang&password=correct+horse"),
                     ("multipart/form-data; boundary=b", '--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--b--\r\n'),
                     ("", "{}")]


def test_a_cross_site_text_plain_login_does_not_sign_in(apply_metadata, make_user, anonymous_client, loom_engine):
    make_user("wang", password="correct horse")
    forged = anonymous_client.post("/api/v1/_auth/login", data='{"username": "wang", "password": "correct horse"}',
                                   content_type="text/plain")
    assert forged.status_code == 415
    assert "Content-Type: application/json" in forged.get_json()["detail"]
    assert "Set-Cookie" not in forged.headers
    assert anonymous_client.get("/api/v1/_auth/me").status_code == 401
    real = anonymous_client.post("/api/v1/_auth/login", json={"username": "wang", "password": "correct horse"})
    assert real.status_code == 200


def test_every_api_write_route_refuses_bodies_that_are_not_json(loom_app, apply_metadata, make_user, client_for):
    from loom.identity.auth import API_PREFIX, SAFE_METHODS

    apply_metadata(GADGET)
    make_user("root", superuser=True)
    root = client_for("root")
    record = root.post("/api/v1/gadget", json={"title": "kept"}).get_json()["data"]["id"]
    values = {"entity": "gadget", "record_id": record, "field_name": "title"}
    tried = 0
    for rule in loom_app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        accepted = getattr(loom_app.view_functions[rule.endpoint], "loom_body_types", frozenset())
        for method in sorted(rule.methods - SAFE_METHODS):
            url = _ARGUMENT.sub(lambda m: str(values.get(m.group(2), 1 if m.group(1) == "int" else "x")), rule.rule)
            for content_type, body in CROSS_SITE_BODIES:
                if content_type.split(";")[0] in accepted:
                    continue  # the route takes this type on purpose (a file upload)
                response = root.open(url, method=method, data=body, content_type=content_type or None)
                assert response.status_code == 415, (method, url, content_type, response.status_code)
                assert response.mimetype == "application/problem+json"
                tried += 1
    assert tried >= 4 * 12
    assert root.get("/api/v1/gadget").get_json()["data"][0]["title"] == "kept"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/merge-patch+json"])
def test_json_media_types_are_read(apply_metadata, make_user, client_for, content_type):
    apply_metadata(GADGET)
    make_user("root", superuser=True)
    made = client_for("root").post("/api/v1/gadget", data='{"title": "ok"}', content_type=content_type)
    assert made.status_code == 201


def test_writes_without_a_body_need_no_content_type(apply_metadata, make_user, client_for):
    apply_metadata(GADGET)
    make_user("root", superuser=True)
    root = client_for("root")
    record = root.post("/api/v1/gadget", json={"title": "gone"}).get_json()["data"]["id"]
    assert root.delete(f"/api/v1/gadget/{record}").status_code == 204
