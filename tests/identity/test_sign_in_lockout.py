"""The sign-in lock-out holds under parallel attempts, and says nothing about whether a
user exists: unknown names get the same work, the same replies and the same lock."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from loom.identity.service import MAX_FAILED_LOGINS

LOGIN = "/api/v1/_auth/login"
PARALLEL = 12


def _audit_actions(engine: sa.Engine, action: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM loom_audit WHERE action = :a"), {"a": action}).scalar()


def _in_parallel(app, attempts: list[dict[str, str]]) -> list[int]:
    """Send every sign-in at once (each from its own client), the statuses in order."""
    start = threading.Barrier(len(attempts))

    def attempt(body):
        client = app.test_client()
        start.wait()
        return client.post(LOGIN, json=body).status_code
    with ThreadPoolExecutor(len(attempts)) as pool:
        return list(pool.map(attempt, attempts))


@pytest.mark.parametrize("username", ["wang", "nobody"])
def test_parallel_wrong_passwords_set_exactly_one_lock(loom_app, make_user, loom_engine, username):
    make_user("wang", password="correct horse")
    statuses = _in_parallel(loom_app, [{"username": username, "password": f"wrong {i}"} for i in range(PARALLEL)])
    # exactly MAX_FAILED_LOGINS attempts are counted and answered; every later one meets the lock
    assert sorted(statuses) == [401] * MAX_FAILED_LOGINS + [429] * (PARALLEL - MAX_FAILED_LOGINS)
    assert _audit_actions(loom_engine, "auth.locked") == 1
    assert _audit_actions(loom_engine, "auth.sign_in_failed") == PARALLEL
    right = loom_app.test_client().post(LOGIN, json={"username": "wang", "password": "correct horse"})
    assert right.status_code == (429 if username == "wang" else 200)


def test_a_right_password_racing_the_lock_gets_in_only_before_it(loom_app, make_user, loom_engine):
    make_user("wang", password="correct horse")
    client = loom_app.test_client()
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert client.post(LOGIN, json={"username": "wang", "password": "wrong"}).status_code == 401
    attempts = [{"username": "wang", "password": "wrong"}] * 4 + [{"username": "wang", "password": "correct horse"}] * 4
    statuses = _in_parallel(loom_app, attempts)
    with loom_engine.connect() as conn:
        sessions = conn.execute(sa.text("SELECT count(*) FROM loom_sessions")).scalar()
    assert statuses[4:].count(200) == sessions
    if sessions == 0:  # the lock came first: nobody got in, and it was set once
        assert statuses.count(401) == 1 and statuses.count(429) == 7
        assert _audit_actions(loom_engine, "auth.locked") == 1


def test_unknown_and_known_usernames_answer_alike(loom_app, make_user, loom_engine):
    make_user("wang", password="correct horse")
    client = loom_app.test_client()
    client.post(LOGIN, json={"username": "warm-up", "password": "x" * 10})

    def attempts(username):
        replies, seconds = [], []
        for _ in range(MAX_FAILED_LOGINS + 2):
            started = time.perf_counter()
            response = client.post(LOGIN, json={"username": username, "password": "not the password"})
            seconds.append(time.perf_counter() - started)
            replies.append((response.status_code, response.get_json()["title"], "Retry-After" in response.headers))
        return replies, seconds

    known, known_seconds = attempts("wang")
    unknown, unknown_seconds = attempts("nobody")
    assert known == unknown
    assert [status for status, _, _ in known] == [401] * MAX_FAILED_LOGINS + [429, 429]
    # the same password check runs for both: compare the answered attempts, with room to spare
    counted = slice(0, MAX_FAILED_LOGINS)
    known_median, unknown_median = (statistics.median(s[counted]) for s in (known_seconds, unknown_seconds))
    assert unknown_median > known_median / 4, (known_median, unknown_median)
    with loom_engine.connect() as conn:
        stored = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM loom_sign_in_failures"))
                          for v in row)
    assert "nobody" not in stored and "wang" not in stored  # names are kept only as hashes


def test_a_new_password_lifts_the_lock(loom_app, make_user, client_for):
    user_id = make_user("wang", password="correct horse")
    make_user("root", superuser=True)
    client = loom_app.test_client()
    for _ in range(MAX_FAILED_LOGINS):
        client.post(LOGIN, json={"username": "wang", "password": "wrong"})
    assert client.post(LOGIN, json={"username": "wang", "password": "correct horse"}).status_code == 429
    reset = client_for("root").patch(f"/api/v1/_admin/users/{user_id}", json={"password": "another horse"})
    assert reset.status_code == 204
    assert client.post(LOGIN, json={"username": "wang", "password": "another horse"}).status_code == 200


def test_old_failures_are_forgotten(loom_app, make_user, loom_engine):
    make_user("wang", password="correct horse")
    client = loom_app.test_client()
    for _ in range(MAX_FAILED_LOGINS - 1):
        client.post(LOGIN, json={"username": "wang", "password": "wrong"})
    client.post(LOGIN, json={"username": "nobody", "password": "wrong"})
    with loom_engine.begin() as conn:
        conn.execute(sa.text("UPDATE loom_sign_in_failures SET last_failed_at = '2000-01-01 00:00:00'"))
    # one more failure of wang starts a new count, and removes the forgotten row of nobody
    assert client.post(LOGIN, json={"username": "wang", "password": "wrong"}).status_code == 401
    assert client.post(LOGIN, json={"username": "wang", "password": "correct horse"}).status_code == 200
    with loom_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loom_sign_in_failures")).scalar() == 0


def test_the_lock_says_the_same_wait_in_its_text_and_its_retry_after(loom_app, make_user):
    make_user("wang", password="correct horse")
    client = loom_app.test_client()
    for _ in range(MAX_FAILED_LOGINS):
        client.post(LOGIN, json={"username": "wang", "password": "wrong"})
    locked = client.post(LOGIN, json={"username": "wang", "password": "wrong"})
    assert locked.status_code == 429
    seconds = int(locked.headers["Retry-After"])
    assert 0 < seconds <= 15 * 60
    minutes = -(-seconds // 60)
    assert f"try again in {minutes} minute" in locked.get_json()["detail"]
