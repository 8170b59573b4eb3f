"""The auditor's screens: the log with filters, one entry with its before and after, the
chain check; and a record's history on the record page, for anyone who may read it."""

from __future__ import annotations

from typing import Any

from flask import current_app, g, request

from loom.audit import chain, reading
from loom.audit.api import require_auditor
from loom.errors import NotFound
from loom.metadata.model import Entity
from loom.ui.changes import describe_all, describe_entry
from loom.ui.i18n import gettext, label, lazy_gettext
from loom.ui.pages import pages, render_page
from loom.ui.screens import context, service

OUTCOME_LABELS = {"ok": lazy_gettext("ok"), "denied": lazy_gettext("denied"), "error": lazy_gettext("error")}

#: what each logged action means, for a person; an action not listed (a plugin's) shows its code
ACTION_LABELS = {
    "access": lazy_gettext("Request refused"),
    "alert": lazy_gettext("Alert"),
    "audit.archive": lazy_gettext("Audit log archived"),
    "audit.export": lazy_gettext("Audit log exported"),
    "audit.verify": lazy_gettext("Audit chain checked"),
    "auth.locked": lazy_gettext("Sign-in locked"),
    "auth.sign_in": lazy_gettext("Signed in"),
    "auth.sign_in_failed": lazy_gettext("Sign-in failed"),
    "auth.sign_out": lazy_gettext("Signed out"),
    "comment.create": lazy_gettext("Comment added"),
    "delivery.replay": lazy_gettext("Deliveries replayed"),
    "delivery.retry": lazy_gettext("Deliveries retried"),
    "metadata.publish": lazy_gettext("Metadata published"),
    "metadata.rollback": lazy_gettext("Metadata rolled back"),
    "metadata.storage": lazy_gettext("Tables rebuilt"),
    "record.approve": lazy_gettext("Record approved"),
    "record.commit_hook": lazy_gettext("After-save step failed"),
    "record.create": lazy_gettext("Record created"),
    "record.delete": lazy_gettext("Record deleted"),
    "record.export": lazy_gettext("Records exported"),
    "record.import": lazy_gettext("Records imported"),
    "record.read": lazy_gettext("Record read"),
    "record.update": lazy_gettext("Record changed"),
    "record.transfer": lazy_gettext("Record transferred"),
    "role.assign": lazy_gettext("Role assigned"),
    "role.unassign": lazy_gettext("Role removed"),
    "team.create": lazy_gettext("Team created"),
    "team.move": lazy_gettext("Team moved"),
    "token.create": lazy_gettext("API token created"),
    "token.first_use": lazy_gettext("API token first used"),
    "token.revoke": lazy_gettext("API token revoked"),
    "user.create": lazy_gettext("User created"),
    "user.update": lazy_gettext("User changed"),
}
#: the entities of Loom's own tables that entries name
SYSTEM_ENTITY_LABELS = {"user": lazy_gettext("User"), "team": lazy_gettext("Team")}


def action_label(action: str | None) -> str:
    """An entry's action as a person says it, in the interface language."""
    return str(ACTION_LABELS.get(action or "", action or ""))


def entity_label(name: str | None) -> str:
    """An entry's entity by its label (from the live metadata), else by its name."""
    if not name:
        return ""
    model = context().live.model
    if name in model.entities:
        return label(model.entity(name))
    return str(SYSTEM_ENTITY_LABELS.get(name, name))


def _labels() -> dict[str, Any]:
    """What the audit templates need to show codes as labels (and to suggest codes by label)."""
    model = context().live.model
    entities = {name: label(entity) for name, entity in model.entities.items() if not entity.child}
    entities.update({name: str(text) for name, text in SYSTEM_ENTITY_LABELS.items()})
    return {"outcomes": OUTCOME_LABELS, "action_label": action_label, "entity_label": entity_label,
            "action_labels": ACTION_LABELS, "entity_labels": entities}


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
                       title=gettext("Audit log"), **_labels())


@pages.get("/audit/<int:seq>")
def audit_entry(seq: int):
    require_auditor()
    entry = reading.get(_engine(), seq)
    if entry is None:
        raise NotFound(gettext("There is no audit entry %(seq)s.", seq=seq))
    return render_page("audit_entry.html", entry=entry, lines=describe_entry(entry.get("entity"), entry.get("changes")),
                       title=gettext("Audit entry %(seq)s", seq=seq), **_labels())


@pages.post("/audit/verify")
def audit_verify():
    """Walk the whole chain and show where it breaks, if it does."""
    require_auditor()
    verdict = chain.check(_engine(), current_app.extensions["loom"].audit, principal=g.principal)
    return render_page("_audit_verify.html", verdict=verdict)


def record_history(entity: Entity, record_id: int) -> list[dict[str, Any]]:
    """The record's changes for its timeline, newest first, as a person reads them (see
    ``loom.ui.changes``), limited to what the signed-in user may read (who has just read
    the record)."""
    svc = service(entity.name)
    history = svc.history(record_id, checked=True)
    for item, lines in zip(history, describe_all(entity, history), strict=True):
        item["lines"] = lines
    return list(reversed(history))
