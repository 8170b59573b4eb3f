"""Signing in, sessions, tokens and CSRF: the API never falls back to anonymous access."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from loom.identity.service import MAX_FAILED_LOGINS


@pytest.fixture
def app_with_customer(apply_metadata, customer_doc, make_user):
    apply_metadata(customer_doc)
    make_user("wang", password="correct horse", superuser=True)


def topics(engine):
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text("SELECT topic FROM loom_outbox ORDER BY id"))]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nonsense", "Basic d2FuZzpwdw==", "Token abc"])
def test_requests_without_a_valid_credential_get_401(app_with_customer, anonymous_client, header):
    headers = {"Authorization": header} if header else {}
    for method, url in [("get", "/api/v1/customer"), ("post", "/api/v1/customer"), ("get", "/api/openapi.json"),
                        ("get", "/api/v1/_meta/entities"), ("get", "/api/v1/customer/1"),
                        ("get", "/api/v1/_admin/users")]:
        response = getattr(anonymous_client, method)(url, headers=headers, json={})
        assert response.status_code == 401, (method, url)
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_and_revoked_tokens_are_refused(app_with_customer, loom_app, anonymous_client, loom_engine):
    identity = loom_app.extensions["loom"].identity
    expiring = identity.create_token("wang", expires_days=1)
    revoked = identity.create_token("wang")
    for new in (expiring, revoked):
        ok = anonymous_client.get("/api/v1/customer", headers={"Authorization": f"Bearer {new.token}"})
        assert ok.status_code == 200
    with loom_engine.begin() as conn:
        conn.execute(sa.text("UPDATE loom_api_tokens SET expires_at = :past WHERE id = :id"),
                     {"past": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1), "id": expiring.id})
    identity.revoke_token(revoked.id, actor="test")
    for new in (expiring, revoked):
        refused = anonymous_client.get("/api/v1/customer", headers={"Authorization": f"Bearer {new.token}"})
        assert refused.status_code == 401
        assert "unknown, expired or revoked" in refused.get_json()["detail"]
    assert topics(loom_engine).count("token.first_used") == 2
    assert "token.revoked" in topics(loom_engine)


def test_tokens_are_stored_hashed(app_with_customer, loom_app, loom_engine):
    token = loom_app.extensions["loom"].identity.create_token("wang").token
    with loom_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash, prefix FROM loom_api_tokens")).one()
    assert token not in stored.token_hash and len(stored.token_hash) == 64
    assert token.startswith(stored.prefix)


def test_read_only_token_cannot_write(app_with_customer, client_for):
    reader = client_for("wang", read_only=True)
    assert reader.get("/api/v1/customer").status_code == 200
    response = reader.post("/api/v1/customer", json={"name": "x"})
    assert response.status_code == 403
    assert "read-only token" in response.get_json()["detail"]


def test_session_sign_in_csrf_and_sign_out(app_with_customer, anonymous_client, loom_engine):
    client = anonymous_client
    response = client.post("/api/v1/_auth/login", json={"username": "wang", "password": "correct horse"})
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    csrf = response.get_json()["data"]["csrf_token"]

    assert client.get("/api/v1/customer").status_code == 200
    forged = client.post("/api/v1/customer", json={"name": "forged"})
    assert forged.status_code == 400 and "CSRF" in forged.get_json()["title"]
    made = client.post("/api/v1/customer", json={"name": "real"}, headers={"X-CSRFToken": csrf})
    assert made.status_code == 201

    assert client.post("/api/v1/_auth/logout", headers={"X-CSRFToken": csrf}).status_code == 204
    assert client.get("/api/v1/customer").status_code == 401
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loom_sessions")).scalar() == 0
    assert {"auth.login", "auth.logout"} <= set(topics(loom_engine))


def test_an_old_session_cookie_is_dead_after_sign_out(app_with_customer, loom_app):
    first = loom_app.test_client()
    first.post("/api/v1/_auth/login", json={"username": "wang", "password": "correct horse"})
    stolen = first.get_cookie("session").value
    csrf = first.get("/api/v1/_auth/me").get_json()["data"]["csrf_token"]
    first.post("/api/v1/_auth/logout", headers={"X-CSRFToken": csrf})
    replay = loom_app.test_client()
    replay.set_cookie("session", stolen)
    assert replay.get("/api/v1/customer").status_code == 401


def test_cookies_are_secure_over_https(app_with_customer, anonymous_client):
    response = anonymous_client.post("/api/v1/_auth/login", json={"username": "wang", "password": "correct horse"},
                                     base_url="https://loom.example")
    assert "Secure" in response.headers["Set-Cookie"]


def test_repeated_failures_lock_the_account(app_with_customer, anonymous_client, loom_engine):
    unknown = anonymous_client.post("/api/v1/_auth/login", json={"username": "nobody", "password": "x" * 10})
    wrong = anonymous_client.post("/api/v1/_auth/login", json={"username": "wang", "password": "wrong one"})
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_json()["detail"] == wrong.get_json()["detail"] == "wrong username or password"
    for _ in range(MAX_FAILED_LOGINS - 1):
        anonymous_client.post("/api/v1/_auth/login", json={"username": "wang", "password": "wrong one"})
    locked = anonymous_client.post("/api/v1/_auth/login", json={"username": "wang", "password": "correct horse"})
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 60
    assert topics(loom_engine).count("auth.login_failed") == MAX_FAILED_LOGINS + 2
    assert "auth.locked" in topics(loom_engine)
    with loom_engine.begin() as conn:
        conn.execute(sa.text("UPDATE loom_sign_in_failures SET locked_until = :past"),
                     {"past": dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)})
    again = anonymous_client.post("/api/v1/_auth/login", json={"username": "wang", "password": "correct horse"})
    assert again.status_code == 200


def test_passwords_are_argon2_hashes(app_with_customer, loom_engine):
    with loom_engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM loom_users WHERE username = 'wang'")).scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


def test_bad_login_bodies_are_400(app_with_customer, anonymous_client):
    for body in (None, [], {"username": "wang"}, {"username": 1, "password": 2}):
        response = anonymous_client.post("/api/v1/_auth/login", json=body)
        assert response.status_code == 400


def test_the_start_page_lists_only_what_the_user_may_read(apply_metadata, make_user, client_for, anonymous_client):
    apply_metadata({"kind": "entity", "name": "open_thing", "fields": [{"name": "a", "type": "string"}]},
                   {"kind": "entity", "name": "secret_thing", "fields": [{"name": "a", "type": "string"}]},
                   {"kind": "role", "name": "r", "permissions": {"open_thing": {"actions": ["read"]}}})
    make_user("u", roles=["r"])
    page = client_for("u").get("/").get_data(as_text=True)
    assert "Open thing" in page and "Secret thing" not in page
    anonymous = anonymous_client.get("/")
    assert anonymous.status_code == 200 and "thing" not in anonymous.get_data(as_text=True)
