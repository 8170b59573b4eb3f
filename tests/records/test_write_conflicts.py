"""Two writes that meet head-on in the database: PostgreSQL ends one of them (a deadlock it
broke). That write is refused with 409 ``write_conflict`` (send it again), rolled back
whole; the other is saved; never a 500 with a database error in it."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

import loom


class CrossLocker:
    """While a note is updated, lock the other note too: two updates of the two notes at once
    each hold one row and wait for the other's, the textbook deadlock."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=20)
        self.armed = True

    @loom.hookimpl
    def before_record_update(self, entity, record, changes, principal, connection):
        if entity.name != "note" or not self.armed:
            return
        self.barrier.wait()  # both updates hold their own row now
        other = 2 if record["id"] == 1 else 1
        connection.execute(sa.text("SELECT id FROM e_note WHERE id = :id FOR UPDATE"), {"id": other})


@pytest.fixture
def loom_plugins():
    return [CrossLocker()]


def test_a_deadlock_is_a_conflict_to_send_again(loom_engine, apply_metadata, make_entity, loom_app, client_for,
                                                make_user, loom_plugins):
    if loom_engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns: two writes never hold a row each")
    apply_metadata(make_entity("note", [{"name": "text", "type": "string"}]))
    make_user("ann", superuser=True)
    setup = client_for("ann")
    ids = [setup.post("/api/v1/note", json={"text": f"note {i}"}).get_json()["data"]["id"] for i in (1, 2)]
    assert ids == [1, 2]
    replies = {}

    def change(record_id):
        client = client_for("ann")
        replies[record_id] = client.patch(f"/api/v1/note/{record_id}", json={"text": f"changed {record_id}"})

    threads = [threading.Thread(target=change, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    loom_plugins[0].armed = False
    statuses = sorted(r.status_code for r in replies.values())
    assert statuses == [200, 409], {i: r.get_json() for i, r in replies.items()}
    loser = next(i for i, r in replies.items() if r.status_code == 409)
    problem = replies[loser].get_json()
    assert problem["code"] == "write_conflict" and "send it again" in problem["detail"]
    assert "deadlock" not in str(problem).lower()  # nothing of the database's own words
    # the loser's change was rolled back whole: its note is as it was, at version 1
    stored = setup.get(f"/api/v1/note/{loser}").get_json()["data"]
    assert (stored["text"], stored["version"]) == (f"note {loser}", 1)
    # sent again, it is saved
    again = setup.patch(f"/api/v1/note/{loser}", json={"text": "again"})
    assert again.status_code == 200, again.get_json()
