"""Compare-and-set publishing: a change made on a version that is no longer live is refused
with 409 naming what changed meanwhile, and of two changes made on one version exactly one
is published, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from loom.cli import main
from loom.errors import BadRequest, Conflict, MetadataError, NotFound
from loom.schema import service as service_module
from loom.schema.service import MetadataService

THING = {"kind": "entity", "name": "thing", "fields": [{"name": "title", "type": "string"}]}
GADGET = {"kind": "entity", "name": "gadget", "fields": [{"name": "code", "type": "string"}]}
READER = {"kind": "role", "name": "reader", "permissions": {"thing": {"actions": ["read"]}}}
CLERK = {"kind": "role", "name": "clerk", "permissions": {"thing": {"actions": ["read", "create"]}}}


def with_field(entity, name, type_="string"):
    return {**entity, "fields": [*entity["fields"], {"name": name, "type": type_}]}


@pytest.fixture
def metadata(loom_engine):
    """The metadata service on a fresh database holding version 1: THING, READER, CLERK."""
    service = MetadataService(loom_engine)
    service.change({"put": [THING, READER, CLERK]}, 0, author="setup")
    return service


def conflict_entries(errors):
    """What a conflict's entries say about each document (beside the code every entry has)."""
    return [{key: e[key] for key in ("kind", "name", "change", "in_your_change", "message")} for e in errors]


def stored(service, number):
    return {(d["kind"], d["name"]): d for d in service.documents_of(number)}


def table_names(engine):
    return set(sa.inspect(engine).get_table_names())


def test_a_change_on_the_live_version_puts_and_removes_documents_by_kind_and_name(metadata, loom_engine):
    plan = metadata.change({"put": [with_field(THING, "colour"), GADGET], "remove": [["role", "clerk"]]}, 1,
                           author="alice")
    assert (plan.from_version, plan.to_version) == (1, 2)
    assert stored(metadata, 2) == {("entity", "thing"): with_field(THING, "colour"), ("entity", "gadget"): GADGET,
                                   ("role", "reader"): READER}
    assert {"colour"} <= {c["name"] for c in sa.inspect(loom_engine).get_columns("e_thing")}
    assert "e_gadget" in table_names(loom_engine)
    latest = metadata.history()[0]
    assert (latest.number, latest.author, latest.source) == (2, "alice", "change")
    assert metadata.live().number == 2 and "clerk" not in metadata.live().model.roles


def test_a_change_that_changes_nothing_publishes_nothing(metadata):
    plan = metadata.change({"put": [THING]}, 1, author="alice")
    assert plan.is_empty and plan.to_version == 1
    assert len(metadata.history()) == 1


def test_a_change_on_an_old_version_is_refused_naming_what_changed_meanwhile(metadata, loom_engine):
    # alice and bob both start from version 1; alice publishes first
    metadata.change({"put": [{**READER, "permissions": {"thing": {"actions": ["read", "export"]}}}, GADGET],
                     "remove": [["role", "clerk"]]}, 1, author="alice")
    before = stored(metadata, 2)
    with pytest.raises(Conflict) as refused:
        metadata.change({"put": [{**READER, "label": "Readers"}, with_field(THING, "secret")]}, 1, author="bob")
    error = refused.value
    assert error.status == 409
    assert conflict_entries(error.errors) == [
        {"kind": "entity", "name": "gadget", "change": "added", "in_your_change": False,
         "message": "entity gadget added since version 1"},
        {"kind": "role", "name": "clerk", "change": "removed", "in_your_change": False,
         "message": "role clerk removed since version 1"},
        {"kind": "role", "name": "reader", "change": "changed", "in_your_change": True,
         "message": "role reader changed since version 1"},
    ]
    assert "version 2 is live now (published by alice)" in error.detail
    assert "entity gadget added, role clerk removed, role reader changed" in error.detail
    # nothing of bob's change was published
    assert [v.number for v in metadata.history()] == [2, 1]
    assert stored(metadata, 2) == before
    assert "secret" not in {c["name"] for c in sa.inspect(loom_engine).get_columns("e_thing")}


def test_a_stale_change_is_refused_even_when_its_documents_were_left_alone(metadata):
    """The documented choice: no rebase. bob widens the clerk role while alice, meanwhile,
    added a salary field to the entity the clerk may write: together they would grant what
    neither looked at."""
    metadata.change({"put": [with_field(THING, "salary", "money")]}, 1, author="alice")
    with pytest.raises(Conflict) as refused:
        metadata.change({"put": [{**CLERK, "permissions": {"thing": {"actions": ["read", "create", "update"]}}}]},
                        1, author="bob")
    assert conflict_entries(refused.value.errors) == [{"kind": "entity", "name": "thing", "change": "changed",
                                     "in_your_change": False, "message": "entity thing changed since version 1"}]
    assert metadata.live().model.roles["clerk"].grants["thing"].actions == frozenset({"read", "create"})


def test_the_same_change_made_again_on_the_new_version_goes_through(metadata):
    metadata.change({"put": [GADGET]}, 1, author="alice")
    with pytest.raises(Conflict):
        metadata.change({"remove": [["role", "reader"]]}, 1, author="bob")
    plan = metadata.change({"remove": [["role", "reader"]]}, 2, author="bob")
    assert plan.to_version == 3
    assert set(stored(metadata, 3)) == {("entity", "thing"), ("entity", "gadget"), ("role", "clerk")}


def test_a_version_whose_documents_came_back_by_rollback_is_not_a_conflict(metadata):
    metadata.change({"put": [GADGET]}, 1, author="alice")
    metadata.rollback(1, author="alice")
    assert metadata.live().number == 3
    plan = metadata.change({"remove": [["role", "clerk"]]}, 1, author="bob")
    assert plan.to_version == 4 and set(stored(metadata, 4)) == {("entity", "thing"), ("role", "reader")}


def test_of_two_changes_made_at_once_on_one_version_exactly_one_is_published(metadata, monkeypatch, loom_engine):
    """Both start together; each publish then takes a while (its migration is slowed), so a
    check made outside the publish lock would let both through."""
    run = service_module.Migration.run

    def slow_run(self):
        time.sleep(0.3)
        return run(self)
    monkeypatch.setattr(service_module.Migration, "run", slow_run)
    start = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def publish(author, document):
        start.wait()
        try:
            outcomes[author] = metadata.change({"put": [document]}, 1, author=author).to_version
        except Exception as error:  # noqa: BLE001 - the outcome is what is checked
            outcomes[author] = error
    threads = [threading.Thread(target=publish, args=("alice", GADGET)),
               threading.Thread(target=publish, args=("bob", with_field(THING, "colour")))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    published = [a for a, o in outcomes.items() if o == 2]
    refused = [a for a, o in outcomes.items() if isinstance(o, Conflict)]
    assert len(published) == 1 and len(refused) == 1, outcomes
    assert [v.number for v in metadata.history()] == [2, 1]
    assert metadata.history()[0].author == published[0]
    assert outcomes[refused[0]].errors[0]["change"] in ("added", "changed")
    has_gadget = "e_gadget" in table_names(loom_engine)
    has_colour = "colour" in {c["name"] for c in sa.inspect(loom_engine).get_columns("e_thing")}
    assert (has_gadget, has_colour) == ((True, False) if published == ["alice"] else (False, True))


@pytest.mark.parametrize(("edits", "base", "error", "says"), [
    ({"put": [{"kind": "role"}]}, 1, BadRequest, "put[0].name"),
    ({"put": {"kind": "role", "name": "x"}}, 1, BadRequest, "put"),
    ({"remove": ["role clerk"]}, 1, BadRequest, "remove[0]"),
    ({"put": [], "patch": []}, 1, BadRequest, "patch"),
    ({"put": []}, -1, BadRequest, "base_version"),
    ({"put": []}, True, BadRequest, "base_version"),
    ({"put": []}, "1", BadRequest, "base_version"),
    ({"put": []}, 7, NotFound, "no metadata version 7"),
    ({"remove": [["role", "auditor"]]}, 1, MetadataError, "there is no role named auditor in version 1"),
    ({"put": [READER, READER]}, 1, MetadataError, "put[1]: role reader is put twice"),
    ({"put": [READER], "remove": [["role", "reader"]]}, 1, MetadataError, "both put and removed"),
    ({"put": [{"kind": "role", "name": "spy", "permissions": {"nothing": {"actions": ["read"]}}}]}, 1,
     MetadataError, "put[0] (role spy): permissions.nothing: no entity named 'nothing'"),
    ({"put": [{**THING, "fields": [{"name": "title", "type": "strng"}]}]}, 1, MetadataError, "put[0] (entity thing)"),
    ({"remove": [["entity", "thing"]]}, 1, MetadataError, "no entity named 'thing'"),
])
def test_malformed_or_impossible_edits_are_refused_and_publish_nothing(metadata, edits, base, error, says):
    with pytest.raises(error) as refused:
        metadata.change(edits, base, author="mallory")
    assert says in refused.value.detail + str(refused.value.errors)
    assert [v.number for v in metadata.history()] == [1]


def test_apply_takes_the_same_base_version_and_still_works_without(metadata, loom_engine):
    model = metadata.changed_model({"put": [GADGET]}, 1)
    assert metadata.apply(model, author="alice", base_version=1).to_version == 2
    with pytest.raises(Conflict):
        metadata.apply(metadata.changed_model({"remove": [["role", "clerk"]]}, 1), author="bob", base_version=1)
    # without a base version, apply publishes over whatever is live, as it always has: here
    # it takes alice's gadget away again (its table set aside with its data)
    assert metadata.apply(metadata.changed_model({"remove": [["role", "clerk"]]}, 1), author="bob").to_version == 3
    assert {"e_gadget", "_x3_e_gadget"} & table_names(loom_engine) == {"_x3_e_gadget"}
    assert set(stored(metadata, 3)) == {("entity", "thing"), ("role", "reader")}


# -- the API -----------------------------------------------------------------------------

CHANGES = "/api/v1/_metadata/changes"
ADMINS = [
    {"kind": "role", "name": "publisher", "admin": ["metadata"]},
    {"kind": "role", "name": "role_publisher", "admin": ["metadata", "roles"]},
    {"kind": "role", "name": "role_admin", "admin": ["roles"]},
    {"kind": "role", "name": "people_admin", "admin": ["users"]},
]


@pytest.fixture
def api(loom_app, apply_metadata, make_user, client_for):
    """Version 1 (THING, READER, CLERK and the admin roles) and a client per admin."""
    apply_metadata(THING, READER, CLERK, *ADMINS)
    make_user("root", superuser=True)
    for name in ("publisher", "role_publisher", "role_admin"):
        make_user(name, roles=[name])
    make_user("plain", roles=["reader"])
    return client_for


def test_the_api_reads_the_live_version_and_publishes_a_change_made_on_it(api, loom_app):
    root = api("root")
    live = root.get("/api/v1/_metadata").get_json()["data"]
    assert live["version"] == 1
    assert {(d["kind"], d["name"]) for d in live["documents"]} >= {("entity", "thing"), ("role", "reader")}
    response = root.post(CHANGES, json={"base_version": live["version"], "put": [GADGET],
                                        "remove": [["role", "clerk"]]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["data"] == {"version": 2, "from_version": 1,
                                           "summary": ["+ entity gadget (1 fields)", "- role clerk"]}
    latest = loom_app.extensions["loom"].metadata.history()[0]
    assert (latest.author, latest.source) == ("root", "api")


def test_the_api_refuses_a_stale_change_with_409_problem_json(api):
    root = api("root")
    assert root.post(CHANGES, json={"base_version": 1, "put": [GADGET]}).status_code == 200
    response = root.post(CHANGES, json={"base_version": 1, "put": [with_field(THING, "colour")]})
    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["type"] == "https://loom.dev/problems/conflict"
    assert "version 2 is live now" in problem["detail"] and "entity gadget added" in problem["detail"]
    assert [(e["kind"], e["name"], e["change"]) for e in problem["errors"]] == [("entity", "gadget", "added")]
    assert root.get("/api/v1/_metadata").get_json()["data"]["version"] == 2


@pytest.mark.parametrize(("user", "body", "status", "says"), [
    # no metadata right: nothing at all
    ("plain", {"base_version": 1, "put": [GADGET]}, 403, "admin: [metadata]"),
    ("role_admin", {"base_version": 1, "put": [GADGET]}, 403, "admin: [metadata]"),
    # metadata alone does not reach role documents
    ("publisher", {"base_version": 1, "put": [{**READER, "label": "R"}]}, 403, "admin: [roles]"),
    ("publisher", {"base_version": 1, "remove": [["role", "clerk"]]}, 403, "admin: [roles]"),
    # with roles too: still no role that carries (now or after) a right the caller lacks
    ("role_publisher", {"base_version": 1, "put": [{**READER, "admin": ["users"]}]}, 403, "users"),
    ("role_publisher", {"base_version": 1, "put": [{**READER, "inherits": ["people_admin"]}]}, 403, "users"),
    ("role_publisher", {"base_version": 1, "remove": [["role", "people_admin"]]}, 403, "users"),
    # what each may do
    ("publisher", {"base_version": 1, "put": [GADGET]}, 200, "+ entity gadget"),
    ("role_publisher", {"base_version": 1, "put": [{**READER, "admin": ["metadata"]}]}, 200, "role reader"),
])
def test_the_api_needs_the_metadata_right_and_never_gives_out_more(api, user, body, status, says, loom_app):
    response = api(user).post(CHANGES, json=body)
    assert response.status_code == status, response.get_json()
    assert says in str(response.get_json())
    versions = loom_app.extensions["loom"].metadata.history()
    assert len(versions) == (2 if status == 200 else 1)


def test_reading_the_metadata_needs_the_right_too(api):
    assert api("plain").get("/api/v1/_metadata").status_code == 403
    assert api("publisher").get("/api/v1/_metadata").status_code == 200


@pytest.mark.parametrize(("body", "status", "says"), [
    ([GADGET], 400, "JSON object"),
    ({"put": [GADGET]}, 400, "base_version is required"),
    ({"base_version": "1", "put": [GADGET]}, 400, "base_version"),
    ({"base_version": 1, "put": GADGET}, 400, "put"),
    ({"base_version": 1, "puts": [GADGET]}, 400, "puts"),
    ({"base_version": 9, "put": [GADGET]}, 404, "no metadata version 9"),
    ({"base_version": 1, "put": [{**GADGET, "fields": "code"}]}, 422, "put[0] (entity gadget)"),
])
def test_the_api_says_what_is_wrong_with_a_body(api, body, status, says):
    response = api("root").post(CHANGES, json=body)
    assert response.status_code == status, response.get_json()
    assert says in str(response.get_json())


def test_a_read_only_token_cannot_change_the_metadata(api, client_for):
    response = client_for("root", read_only=True).post(CHANGES, json={"base_version": 1, "put": [GADGET]})
    assert response.status_code == 403


# -- the command line --------------------------------------------------------------------

def test_loom_metadata_apply_with_a_base_version_refuses_a_stale_folder(loom_database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("LOOM_SECRET_KEY", "cli-test")
    runner = CliRunner()

    def loom(*args, code=0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    loom("init")
    first = tmp_path / "first"
    first.mkdir()
    (first / "thing.yaml").write_text(yaml.safe_dump(THING))
    loom("metadata", "apply", str(first))
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    assert "(version 1; publish them edited with --base-version 1)" in loom("metadata", "export", str(mine))
    loom("metadata", "export", str(theirs))
    (theirs / "entity" / "gadget.yaml").write_text(yaml.safe_dump(GADGET))
    assert "published version 2" in loom("metadata", "apply", str(theirs), "--base-version", "1")
    (mine / "role").mkdir()
    (mine / "role" / "reader.yaml").write_text(yaml.safe_dump(READER))
    refused = loom("metadata", "apply", str(mine), "--base-version", "1", code=1)
    assert "entity gadget added" in refused and "version 2 is live now" in refused
    assert "Traceback" not in refused
    # made again on version 2, it goes through
    (theirs / "role").mkdir()
    (theirs / "role" / "reader.yaml").write_text(yaml.safe_dump(READER))
    assert "published version 3" in loom("metadata", "apply", str(theirs), "--base-version", "2")
