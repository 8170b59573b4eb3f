"""The audit log's API: for auditors (``admin: [audit]``) the whole log, its export and
the chain check; for everyone the history of a record they can read."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator

from flask import Blueprint, current_app, g, jsonify, request, stream_with_context

from loom.audit import chain, reading
from loom.downloads import download
from loom.errors import BadRequest, NotFound, error_entry
from loom.permissions import Forbidden, Policy

audit_api = Blueprint("audit", __name__, url_prefix="/api")


def _loom():
    return current_app.extensions["loom"]


def may_read_audit(principal) -> bool:
    """Whether ``principal`` may read the whole audit log."""
    if principal is None:
        return False
    if principal.is_superuser or principal.is_system:
        return True
    live = _loom().metadata.live()
    policy = live.derive("policy", lambda: Policy(live.model))
    return "audit" in policy.admin(principal.roles)


def require_auditor() -> None:
    if not may_read_audit(g.principal):
        raise Forbidden("reading the audit log needs a role with admin: [audit]", code="needs_admin",
                        params={"right": "audit"})


@audit_api.get("/v1/_audit")
def list_entries():
    """Entries, newest first, filtered by actor, entity, record_id, action (``record.*``
    for a prefix), outcome, since, until and ip."""
    require_auditor()
    data, next_cursor = reading.search(_loom().engine, reading.AuditQuery.parse(request.args))
    return jsonify({"data": data, "next_cursor": next_cursor})


@audit_api.get("/v1/_audit/<int:seq>")
def get_entry(seq: int):
    require_auditor()
    entry = reading.get(_loom().engine, seq)
    if entry is None:
        raise NotFound(f"there is no audit entry {seq}", code="no_audit_entry", params={"seq": seq})
    return jsonify(entry)


@audit_api.get("/v1/_audit/_head")
def head():
    """The newest entry's place and hash: note it down elsewhere to check later that the
    log was not cut back (``loom audit verify --expect SEQ:HASH``)."""
    require_auditor()
    data, _ = reading.search(_loom().engine, reading.AuditQuery([], limit=1))
    return jsonify({"seq": data[0]["id"], "hash": data[0]["hash"]} if data else {"seq": 0, "hash": None})


@audit_api.post("/v1/_audit/_verify")
def verify_chain():
    """Walk the whole chain; the result says which entry was edited, removed or moved."""
    require_auditor()
    return jsonify(chain.check(_loom().engine, _loom().audit, principal=g.principal).as_dict())


@audit_api.get("/v1/_audit/_export")
def export_entries():
    """The matching entries, oldest first, as CSV (default) or JSON Lines, streamed."""
    require_auditor()
    fmt = request.args.get("format", "csv")
    if fmt not in ("csv", "jsonl"):
        raise BadRequest("format must be csv or jsonl", errors=[error_entry("format", "bad_parameter", "use csv or jsonl", parameter="format")])
    loom = _loom()
    query = reading.AuditQuery.parse(request.args)
    filters = {k: v for k, v in request.args.items() if k in reading.FILTERS}
    # logged before the first entry is read: an export that cannot be logged sends nothing
    total = reading.pin(loom.engine, query)
    loom.audit.add_alone("audit.export", principal=g.principal, rows=total,
                         detail={"filters": filters, "format": fmt})

    def entries() -> Iterator[dict]:
        yield from itertools.islice(reading.stream(loom.engine, query), total)

    body = csv_lines(entries()) if fmt == "csv" else (
        json.dumps(e, ensure_ascii=False) + "\n" for e in entries())
    return download(stream_with_context(body), f"audit.{fmt}", fmt)


def csv_lines(entries: Iterable[dict]) -> Iterator[str]:
    """Entries as CSV, one column per field of an entry, in pieces of about 64 KiB."""
    from loom.csvfile import csv_lines as record_lines

    return record_lines(list(reading.COLUMNS), entries)
