"""The metadata over HTTP: ``/api/v1/_metadata``. An editor reads the live version and
its documents, changes some, and sends the change back with the version it started from;
a change made on a version that is no longer live is refused with 409, naming what
changed meanwhile (``MetadataService.change``), so two admins never silently overwrite
each other.

Both need the ``metadata`` admin right (or a superuser). Role documents are also
administration: putting or removing one needs the ``roles`` right as well, and the same
rule as ``PUT /api/v1/_admin/roles/{name}``: the role may carry, before and after, no
admin right the caller lacks.
"""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from loom.errors import BadRequest
from loom.identity.admin import admin_policy, admin_rights, authorise
from loom.permissions import Policy
from loom.schema.changes import DocumentEdits

metadata_api = Blueprint("metadata_api", __name__, url_prefix="/api/v1/_metadata")


def _service():
    return current_app.extensions["loom"].metadata


@metadata_api.get("")
def live_metadata():
    """The live version's number and documents: what a change starts from."""
    authorise("metadata")
    live = _service().live()
    return jsonify({"data": {"version": live.number, "documents": [dict(d) for d in live.model.documents]}})


@metadata_api.post("/changes")
def change_metadata():
    """``{"base_version": N, "put": [documents], "remove": [[kind, name]]}``: publish the
    change made on version N, or 409 when N is no longer live."""
    authorise("metadata")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest('send a JSON object: {"base_version": N, "put": [...], "remove": [[kind, name]]}')
    base_version = body.get("base_version")
    edits = DocumentEdits.parse({key: value for key, value in body.items() if key != "base_version"})
    service = _service()
    model = service.changed_model(edits, base_version)
    roles = sorted(name for kind, name in edits.keys if kind == "role")
    if roles:
        # what the roles carry live (before) and in the change (after), inherited rights included
        before, after = admin_policy(), Policy(model)
        carries = frozenset().union(*(admin_rights(before, [r]) | admin_rights(after, [r]) for r in roles))
        authorise("roles", carries=carries)
    plan = service.apply(model, author=g.principal.name, source="api", principal=g.principal,
                         base_version=base_version)
    return jsonify({"data": {"version": plan.to_version, "from_version": plan.from_version,
                             "summary": list(plan.summary)}})
