"""The auditor's screens: the log with filters, one entry with its before and after, the
chain check; and a record's history on the record page, for anyone who may read it."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request

from loom.audit import chain, reading
from loom.audit.api import may_read_audit, require_auditor
from loom.errors import NotFound
from loom.metadata.model import Entity
from loom.ui.changes import describe_all
from loom.ui.i18n import gettext, lazy_gettext
from loom.ui.navigation import add_nav_link
from loom.ui.pages import pages, render_page
from loom.ui.screens import service

OUTCOME_LABELS = {"ok": lazy_gettext("ok"), "denied": lazy_gettext("denied"), "error": lazy_gettext("error")}

add_nav_link("pages.audit_log", lambda: gettext("Audit log"), lambda principal, areas: may_read_audit(principal))


def _engine():
    return current_app.extensions["loom"].engine


@pages.get("/audit")
def audit_log():
    """The log, newest first; the filters are the API's, and the URL keeps them."""
    require_auditor()
    args = {k: v for k, v in request.args.items() if v}
    query = reading.AuditQuery.parse(args)
    entries, next_cursor = reading.search(_engine(), query)
    filters = {k: v for k, v in args.items() if k in reading.FILTERS}
    more_args = {**filters, "cursor": next_cursor} if next_cursor else None
    template = "_audit_rows.html" if request.args.get("cursor") and request.headers.get("HX-Request") else \
        "audit_log.html"
    return render_page(template, entries=entries, filters=filters, more_args=more_args,
                       outcomes=OUTCOME_LABELS, title=gettext("Audit log"))


@pages.get("/audit/<int:seq>")
def audit_entry(seq: int):
    require_auditor()
    entry = reading.get(_engine(), seq)
    if entry is None:
        raise NotFound(gettext("There is no audit entry %(seq)s.", seq=seq))
    return render_page("audit_entry.html", entry=entry, diff=_diff(entry.get("changes") or {}),
                       title=gettext("Audit entry %(seq)s", seq=seq))


@pages.post("/audit/verify")
def audit_verify():
    """Walk the whole chain and show where it breaks, if it does."""
    require_auditor()
    verdict = chain.check(_engine(), current_app.extensions["loom"].audit, principal=g.principal)
    return render_page("_audit_verify.html", verdict=verdict)


def _diff(changes: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(name, pair[0], pair[1]) for name, pair in changes.items() if isinstance(pair, list) and len(pair) == 2]


def record_history(entity: Entity, record_id: int) -> list[dict[str, Any]]:
    """The record's changes for its timeline, newest first, as a person reads them (see
    ``loom.ui.changes``), limited to what the signed-in user may read (who has just read
    the record)."""
    svc = service(entity.name)
    history = reading.record_history(svc, record_id, checked=True)
    for item, lines in zip(history, describe_all(entity, history), strict=True):
        item["lines"] = lines
    return list(reversed(history))
