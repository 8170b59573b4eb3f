"""Schemathesis against the OpenAPI document each caller gets: every check, request by
request and as stateful sequences (create, then read, change, comment, delete what was
created), for a restricted user and a superuser. No reply may be a 5xx, or carry a status
or a body the document does not describe."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

#: every check but one: a list's cursor is opaque and signed, so no schema can say which
#: strings the server takes, nor can it cap the number of filter[...] parameters; a generated
#: one is (rightly) refused with a 400 the document lists
EXCLUDED = [positive_data_acceptance]

#: examples per operation, and stateful runs: enough to reach every route with hostile and
#: valid values, bounded so a run takes well under two minutes per database
EXAMPLES = 12
STATEFUL_RUNS = 8
SETTINGS = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


@pytest.fixture
def shop(apply_metadata, make_entity, make_user, client_for, loom_app):
    apply_metadata(
        make_entity("client", [
            {"name": "name", "type": "string", "required": True, "max_length": 80},
            {"name": "code", "type": "string", "unique": True, "max_length": 20},
            {"name": "level", "type": "select", "options": [{"value": "A"}, {"value": "B"}]},
            {"name": "credit", "type": "decimal", "precision": 10, "scale": 2, "min": 0},
            {"name": "since", "type": "date"},
        ], title_field="name"),
        make_entity("sale", [
            {"name": "title", "type": "string", "required": True, "max_length": 80},
            {"name": "client", "type": "link", "target": "client"},
            {"name": "placed_at", "type": "datetime"},
            {"name": "note", "type": "text"},
            {"name": "receipt", "type": "attachment", "max_size": 2048},
            {"name": "lines", "type": "table", "target": "sale_line"},
        ], title_field="title"),
        make_entity("sale_line", [
            {"name": "item", "type": "string", "required": True, "max_length": 40},
            {"name": "qty", "type": "integer", "min": 1},
            {"name": "price", "type": "decimal", "precision": 10, "scale": 2},
        ], child=True),
        {"kind": "role", "name": "clerk", "permissions": {
            "client": {"actions": ["read"], "fields": {"credit": "none"}},
            "sale": {"actions": ["read", "update"], "fields": {"title": "read", "client": "read"}}}},
    )
    make_user("admin", superuser=True)
    make_user("clara", roles=["clerk"])
    admin = client_for("admin")
    client = admin.post("/api/v1/client", json={"name": "Acme", "code": "AC", "credit": "10.00"}).get_json()["data"]
    admin.post("/api/v1/sale", json={"title": "First", "client": client["id"],
                                     "lines": [{"item": "bolt", "qty": 2, "price": "1.50"}]})
    return loom_app


def _token(loom_app, username: str) -> dict[str, str]:
    token = loom_app.extensions["loom"].identity.create_token(username).token
    return {"Authorization": f"Bearer {token}"}


def _schema(app, headers):
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers=headers)


@pytest.mark.parametrize("username", ["clara", "admin"])
def test_every_operation_answers_as_documented(shop, username):
    headers = _token(shop, username)
    schema = _schema(shop, headers)
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, **SETTINGS)
        def run(case):
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - every operation's findings, reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("username", ["clara", "admin"])
def test_sequences_of_operations_answer_as_documented(shop, username):
    headers = _token(shop, username)
    schema = _schema(shop, headers)

    @schema.auth()
    class Token:
        """The token as schemathesis's own auth, so its check of a missing or wrong
        credential (which must be a 401) can take it away."""

        def get(self, case, ctx):
            return headers["Authorization"]

        def set(self, case, data, ctx):
            case.headers = {**(case.headers or {}), "Authorization": data}

    class Calls(schema.as_state_machine()):
        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, excluded_checks=EXCLUDED, transport_kwargs=kwargs)

    Calls.run(settings=settings(max_examples=STATEFUL_RUNS, stateful_step_count=6, **SETTINGS))


def test_the_restricted_document_describes_only_what_the_caller_may_do(shop):
    headers = _token(shop, "clara")
    spec = shop.test_client().get("/api/openapi.json", headers=headers).get_json()
    assert set(spec["paths"]["/api/v1/client"]) == {"get"}
    assert "/api/v1/client/_bulk" not in spec["paths"] and "/api/v1/client/_export" not in spec["paths"]
    assert set(spec["paths"]["/api/v1/client/{id}"]) == {"parameters", "get"}
    assert set(spec["paths"]["/api/v1/sale/{id}"]) == {"parameters", "get", "patch"}
    assert set(spec["components"]["schemas"]["salePatch"]["properties"]) == {"placed_at", "note", "receipt", "lines",
                                                                              "owner", "version"}
    # uploads: only for the attachment field the caller may set, never for a read-only token
    assert "post" in spec["paths"]["/api/v1/sale/_files/receipt"]
    read_only = shop.extensions["loom"].identity.create_token("clara", read_only=True).token
    looking = shop.test_client().get("/api/openapi.json", headers={"Authorization": f"Bearer {read_only}"})
    assert "/api/v1/sale/_files/receipt" not in looking.get_json()["paths"]
    assert "credit" not in spec["components"]["schemas"]["client"]["properties"]
    patch = spec["paths"]["/api/v1/sale/{id}"]["patch"]["responses"]
    assert {"400", "401", "403", "404", "409", "412", "413", "415", "422"} <= set(patch)
