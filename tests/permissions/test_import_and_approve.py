"""The ``import`` and ``approve`` actions as Loom has them today.

Importing is a screen (``/r/{entity}/_import``): it takes both ``import`` and ``create``
(every row is created through the record service), at every step — the form, the upload,
the run, and the background import itself. ``approve`` is declared in roles and explained by
``loom perm explain``; nothing approves yet."""

from __future__ import annotations

import io
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from loom.cli import main
from loom.ui.importing import run_import

from .conftest import ScreenClient

PASSWORD = "correct horse battery"
GIZMO = {"kind": "entity", "name": "gizmo", "title_field": "name", "fields": [
    {"name": "name", "type": "string", "required": True},
    {"name": "size", "type": "integer"},
    {"name": "region", "type": "select", "options": [{"value": "east"}, {"value": "north"}]},
]}


def role(name, *actions, **grant):
    return {"kind": "role", "name": name, "permissions": {"gizmo": {"actions": list(actions), **grant}}}


ROLES = [role("importer", "read", "create", "import"), role("creator", "read", "create"),
         role("import_only", "read", "import")]
CSV = b"name,size\nFirst,1\nSecond,2\n"


@pytest.fixture
def gizmos(apply_metadata, make_user, loom_app):
    apply_metadata(GIZMO, *ROLES)
    for name in ("importer", "creator", "import_only"):
        make_user(name, roles=[name], password=PASSWORD)
    return loom_app


def stored(app):
    with app.extensions["loom"].engine.connect() as conn:
        return conn.execute(sa.text("SELECT name, size FROM e_gizmo ORDER BY id")).all()


def jobs(app):
    with app.extensions["loom"].engine.connect() as conn:
        return conn.execute(sa.text("SELECT id, status, message FROM loom_import_jobs ORDER BY id")).all()


def upload(client):
    return client.post("/r/gizmo/_import", {"file": (io.BytesIO(CSV), "gizmos.csv")},
                       content_type="multipart/form-data")


def wait_until_finished(app, job_id):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = next(j.status for j in jobs(app) if j.id == job_id)
        if status not in ("queued", "running"):
            return status
        time.sleep(0.05)
    raise AssertionError("the import did not finish")


@pytest.mark.parametrize("username", ["creator", "import_only"])
def test_without_both_import_and_create_nothing_of_the_import_screen_is_open(gizmos, username):
    client = ScreenClient(gizmos, username, PASSWORD)
    assert client.get("/r/gizmo/_import").status_code == 403
    assert upload(client).status_code == 403
    assert jobs(gizmos) == [] and stored(gizmos) == []


def test_the_list_offers_no_import_to_whoever_may_create_only(gizmos):
    client = ScreenClient(gizmos, "creator", PASSWORD)
    assert "/r/gizmo/_import" not in client.get("/r/gizmo").get_data(as_text=True)


def test_the_list_offers_no_import_to_whoever_may_import_but_not_create(gizmos):
    client = ScreenClient(gizmos, "import_only", PASSWORD)
    assert "/r/gizmo/_import" not in client.get("/r/gizmo").get_data(as_text=True)


def test_with_import_and_create_a_file_is_imported(gizmos):
    client = ScreenClient(gizmos, "importer", PASSWORD)
    assert "/r/gizmo/_import" in client.get("/r/gizmo").get_data(as_text=True)
    assert client.get("/r/gizmo/_import").status_code == 200
    uploaded = upload(client)
    assert uploaded.status_code == 303
    (job_id, status, _), = jobs(gizmos)
    assert status == "mapping"
    assert client.get(uploaded.headers["Location"]).status_code == 200
    assert stored(gizmos) == []  # the preview undid its attempt
    started = client.post(f"/r/gizmo/_import/{job_id}", {"column-0": "name", "column-1": "size"})
    assert started.status_code == 303
    assert wait_until_finished(gizmos, job_id) == "done"
    assert stored(gizmos) == [("First", 1), ("Second", 2)]


def test_an_import_whose_right_was_withdrawn_meanwhile_does_not_run(gizmos, apply_metadata):
    client = ScreenClient(gizmos, "importer", PASSWORD)
    assert upload(client).status_code == 303
    (job_id, _, _), = jobs(gizmos)
    apply_metadata(GIZMO, role("importer", "read", "create"), *ROLES[1:])
    assert client.post(f"/r/gizmo/_import/{job_id}", {"column-0": "name", "column-1": "size"}).status_code == 403
    assert jobs(gizmos)[0].status == "mapping"
    # an import already queued checks again when it runs, as the user it runs for
    principal = gizmos.extensions["loom"].identity.principal_for("importer")
    with gizmos.extensions["loom"].engine.begin() as conn:
        conn.execute(sa.text("UPDATE loom_import_jobs SET status = 'running' WHERE id = :id"), {"id": job_id})
    run_import(gizmos, job_id, principal, "en")
    (_, status, message), = jobs(gizmos)
    assert status == "failed" and "may not import gizmo" in message.lower()
    assert stored(gizmos) == []


# -- approve -----------------------------------------------------------------------------

@pytest.fixture
def explain(loom_database_url, loom_app, monkeypatch):
    """``explain(*args)``: ``loom perm explain`` on the test's database -> (exit code, output)."""
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", loom_app.instance_path)
    monkeypatch.setenv("LOOM_SECRET_KEY", "test-secret")
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(main, ["perm", "explain", *args], catch_exceptions=False)
        return result.exit_code, result.output
    return run


@pytest.fixture
def approvers(apply_metadata, make_user, loom_client):
    apply_metadata(
        GIZMO,
        role("approver", "read", "approve", scope={"where": {"region": {"eq": "east"}}}),
        {"kind": "role", "name": "senior", "inherits": ["approver"]},
        role("clerk", "read", "update"),
    )
    make_user("amy", roles=["approver"])
    make_user("sam", roles=["senior"])
    make_user("carl", roles=["clerk"])
    ids = {}
    for region in ("east", "north"):
        made = loom_client.post("/api/v1/gizmo", json={"name": region, "region": region})
        assert made.status_code == 201
        ids[region] = made.get_json()["data"]["id"]
    return ids


def test_approve_is_granted_by_roles_and_explained_with_the_role_and_its_scope(approvers, explain):
    code, output = explain("amy", "gizmo", "approve")
    assert code == 0, output
    assert "ALLOWED: approve on gizmo" in output
    assert "by role approver: scope where {'region': {'eq': 'east'}}" in output
    # inherited: the grant is named by the role that holds it
    code, output = explain("sam", "gizmo", "approve")
    assert code == 0 and "inherited roles: approver" in output and "by role approver: scope where" in output


def test_approve_is_refused_naming_what_the_role_grants_instead(approvers, explain):
    code, output = explain("carl", "gizmo", "approve")
    assert code == 1, output
    assert "REFUSED: no role of carl grants approve on gizmo" in output
    assert "clerk grants only: read, update" in output


def test_approve_on_a_record_outside_the_scope_is_explained_as_not_existing(approvers, explain):
    code, output = explain("amy", "gizmo", "approve", "--record", str(approvers["east"]))
    assert code == 0 and f"record {approvers['east']}: within scope (through approver)" in output
    code, output = explain("amy", "gizmo", "approve", "--record", str(approvers["north"]))
    assert code == 1 and f"record {approvers['north']}: OUT OF SCOPE" in output
