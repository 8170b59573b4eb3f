"""Giving records to another owner: the record page's Transfer form, the list's
"Transfer selected to ..." and the administrator's "Transfer all records of a user".

Each calls the record service's transfers (``loom.records.ownership``), as the signed-in
user: the ``transfer`` action, the update scope and an active new owner are checked
there, all or none of the records move, and each move is logged.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, request, url_for
from werkzeug.datastructures import MultiDict

from loom.errors import BadRequest, LoomError, NotFound, ValidationError
from loom.identity.admin import admin_policy, admin_rights, authorise
from loom.records.service import RecordService
from loom.records.transfers import owned_counts, transfer_everything
from loom.ui.i18n import gettext, ngettext
from loom.ui.links import TITLE_PREFIX, read_link
from loom.ui.lists import _bulk_reply, _selected_ids
from loom.ui.messages import message_text
from loom.ui.navigation import nav_order
from loom.ui.pages import pages, redirect_to, render_page
from loom.ui.screens import context, display_names, record_title, service
from loom.ui.widgets import form_id


def may_manage_users(principal) -> bool:
    """Whether ``principal`` may use the screen that moves every record of a user: an
    administrator of users (the records moved are still only those they may transfer)."""
    if principal is None or principal.read_only:
        return False
    return principal.is_superuser or principal.is_system or "users" in admin_rights(admin_policy(), principal.roles)


def _user_name(user_id: int | None) -> str:
    if user_id is None:
        return ""
    return display_names({user_id}).get(user_id) or f"#{user_id}"


def _owner_id(record: dict[str, Any], field: str) -> int | None:
    value = record.get(field)
    return value.get("id") if isinstance(value, dict) else value


def _new_owner(f: Any, name: str) -> int | str | None:
    """The user the form's box ``name`` names: the id of the one picked from the list (an
    int, so that a username made of digits is never taken for it), or the text typed."""
    to = read_link(f, request.form, name)
    if isinstance(to, str) and TITLE_PREFIX + name in request.form and form_id(to) is not None:
        return form_id(to)
    return to


def _given_to(records: list[dict[str, Any]], to: Any) -> str:
    """The name of whom the records were given to, as the transfer found them."""
    owner = _owner_id(records[0], "owner") if records else None
    return _user_name(owner) if owner is not None else str(to)


def _still_readable(svc: RecordService, record_id: int) -> bool:
    try:
        svc.require_readable(record_id)
    except LoomError:
        return False
    return True


def _transfer_form(svc: RecordService, record: dict[str, Any], form: MultiDict | None = None,
                   errors: list[str] | None = None, status: int = 200):
    owner_field = svc.entity.field(svc.entity.owner_field)
    chosen = None
    if form is not None and form.get("_title.to"):
        chosen = {"id": form.get("to", ""), "title": form.get("_title.to")}
    return render_page("transfer.html", status, entity=svc.entity, record=record, owner_field=owner_field,
                       title=record_title(svc.entity, record),
                       owner=_user_name(_owner_id(record, svc.entity.owner_field) or _owner_id(record, "owner")),
                       chosen=chosen, errors=errors or [])


@pages.get("/r/<entity>/<int:record_id>/transfer")
def transfer_form(entity: str, record_id: int):
    """The form that gives one record to another owner, for who may transfer it."""
    svc = service(entity)
    svc.require("transfer", record_id)
    record = svc.get(record_id)
    return _transfer_form(svc, record)


@pages.post("/r/<entity>/<int:record_id>/transfer")
def transfer_record(entity: str, record_id: int):
    svc = service(entity)
    svc.require("transfer", record_id)
    owner_field = svc.entity.field(svc.entity.owner_field)
    try:
        to = _new_owner(owner_field, "to")
        records = svc.transfer([record_id], to)
    except ValidationError as exc:
        record = svc.get(record_id)
        errors = [message_text(e) for e in exc.errors] or [message_text(exc.as_entry())]
        return _transfer_form(svc, record, request.form, errors, exc.status)
    flash(gettext("Transferred to %(user)s.", user=_given_to(records, to)), "success")
    if _still_readable(svc, record_id):
        return redirect_to(url_for("pages.record_view", entity=entity, record_id=record_id))
    return redirect_to(url_for("pages.list_view", entity=entity))


@pages.post("/r/<entity>/_bulk/transfer")
def bulk_transfer(entity: str):
    """"Transfer selected to ...": every selected record, or none."""
    svc = service(entity)
    svc.require("transfer")
    owner_field = svc.entity.field(svc.entity.owner_field)
    to = _new_owner(owner_field, "transfer_to")
    if to is None:
        raise BadRequest(gettext("Choose who should own the records."))
    # all or none: a refusal (one record out of reach, an inactive user) leaves every record as it was
    records = svc.transfer(_selected_ids(), to)
    return _bulk_reply(len(records), [], ngettext("Transferred %(num)s record to %(user)s.",
                                                  "Transferred %(num)s records to %(user)s.", len(records),
                                                  user=_given_to(records, to)))


# -- every record of a user ------------------------------------------------------------------

def _users() -> list[dict[str, Any]]:
    users = current_app.extensions["loom"].identity.list_users()
    return sorted(users, key=lambda u: (not u["is_active"], (u["display_name"] or u["username"]).lower()))


def _chosen_user(users: list[dict[str, Any]], raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    found = next((u for u in users if str(u["id"]) == raw), None)
    if found is None:
        raise NotFound(gettext("There is no such user."))
    return found


@pages.get("/admin/transfer")
def transfer_all_form():
    """Transfer all records of one user (one who leaves) to another: pick both, see how
    many records of each entity would move, then move them."""
    authorise("users")
    users = _users()
    source = _chosen_user(users, request.args.get("from"))
    target = _chosen_user(users, request.args.get("to"))
    counts = []
    if source is not None:
        model = context().live.model
        found = owned_counts(context(), source["id"])
        counts = [(entity, found[entity.name]) for entity in nav_order(model.entities.values())
                  if entity.name in found]
    return render_page("transfer_all.html", users=users, source=source, target=target, counts=counts)


@pages.post("/admin/transfer")
def transfer_all():
    authorise("users")
    users = _users()
    source = _chosen_user(users, request.form.get("from"))
    target = _chosen_user(users, request.form.get("to"))
    if source is None or target is None:
        raise BadRequest(gettext("Choose whose records to transfer, and to whom."))
    moved = transfer_everything(context(), source["id"], target["id"])
    total = sum(moved.values())
    flash(ngettext("Transferred %(num)s record of %(from)s to %(to)s.",
                   "Transferred %(num)s records of %(from)s to %(to)s.", total,
                   **{"from": source["display_name"] or source["username"],
                      "to": target["display_name"] or target["username"]}), "success")
    return redirect_to(url_for("pages.transfer_all_form", **{"from": source["id"], "to": target["id"]}))
