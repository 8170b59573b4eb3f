"""A read-only token changes nothing, through any route: every state-changing route of the
app (API and screens, a route added later included) refuses it with 403, logs the
refusal, and leaves every table as it was."""

from __future__ import annotations

import re

import sqlalchemy as sa

from loom.identity.auth import READ_ONLY_ALLOWED, SAFE_METHODS, SIGNED_ENDPOINTS

GADGET = {"kind": "entity", "name": "gadget", "fields": [{"name": "title", "type": "string"}]}
#: a role and a team share the name, so ``<name>`` means something real in either route
CLERK = {"kind": "role", "name": "clerk", "admin": ["users", "teams", "roles"],
         "permissions": {"gadget": {"actions": ["read", "create", "update", "delete", "import", "export"]}}}
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table but the audit log's own, which a refusal adds to."""
    tables = [t for t in sa.inspect(engine).get_table_names() if not t.startswith("loom_audit")]
    with engine.connect() as conn:
        return {t: sorted(map(tuple, conn.execute(sa.text(f'SELECT * FROM "{t}"'))), key=repr) for t in tables}


def _denials(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM loom_audit WHERE outcome = 'denied' "
                                    "AND action = 'access' AND actor = 'root'")).scalar()


def test_a_read_only_token_of_a_superuser_is_refused_on_every_write_route(loom_app, apply_metadata, make_user,
                                                                          client_for, loom_engine):
    apply_metadata(GADGET, CLERK)
    make_user("root", superuser=True)
    other = make_user("someone", roles=["clerk"], team="clerk")
    writer = client_for("root")
    record = writer.post("/api/v1/gadget", json={"title": "kept"}).get_json()["data"]["id"]
    assert writer.post(f"/api/v1/gadget/{record}/_comments", json={"body": "hello"}).status_code == 201
    assert writer.post("/r/gadget/_views", data={"name": "mine", "query": "sort=title"}).status_code in (200, 303)
    token = loom_app.extensions["loom"].identity.create_token("someone", actor="test")
    reader = client_for("root", read_only=True)
    assert reader.get("/api/v1/gadget").status_code == 200  # reads work, and the token's first use is behind us

    values = {"entity": "gadget", "record_id": record, "user_id": other, "token_id": token.id,
              "role": "clerk", "name": "clerk", "field_name": "title", "field_path": "title"}
    before, denied_before = _snapshot(loom_engine), _denials(loom_engine)
    tried = []
    for rule in loom_app.url_map.iter_rules():
        for method in sorted(rule.methods - SAFE_METHODS):
            # signed endpoints (webhooks) read no token: their signature is their credential
            if rule.endpoint in loom_app.extensions["loom"].read_only_endpoints or rule.endpoint in SIGNED_ENDPOINTS:
                continue
            url = _ARGUMENT.sub(lambda m: str(values.get(m.group(2), 1 if m.group(1) == "int" else "x")), rule.rule)
            response = reader.open(url, method=method, json={"title": "changed", "body": "x", "name": "x",
                                                             "role": "clerk", "password": "a new password"})
            assert response.status_code == 403, (method, url, response.status_code)
            if url.startswith("/api/"):
                assert "read-only token" in response.get_json()["detail"], (method, url)
            tried.append((method, rule.endpoint))

    assert len(tried) >= 20 and ("PUT", "admin.put_role") in tried and ("POST", "pages.save_view") in tried
    assert _snapshot(loom_engine) == before
    assert _denials(loom_engine) - denied_before == len(tried)


def test_only_reads_sent_as_post_and_signing_in_or_out_are_open_to_a_read_only_token(loom_app):
    """A route joins this list only when a read-only token may use it: changing it is a decision
    (the screens name theirs through the read_only_endpoints hook)."""
    assert READ_ONLY_ALLOWED == {"auth.login", "auth.logout", "audit.verify_chain"}
    assert loom_app.extensions["loom"].read_only_endpoints == {
        "auth.login", "pages.sign_in_submit", "auth.logout", "pages.sign_out",
        "pages.switch_language", "audit.verify_chain", "pages.audit_verify"}


def test_a_read_only_token_may_verify_the_audit_chain(apply_metadata, make_user, client_for):
    apply_metadata({"kind": "role", "name": "auditor", "admin": ["audit"]})
    make_user("inspector", roles=["auditor"])
    reader = client_for("inspector", read_only=True)
    verdict = reader.post("/api/v1/_audit/_verify")
    assert verdict.status_code == 200 and verdict.get_json()["ok"] is True
