"""The deliveries screens, for superusers: what integration rules sent or are sending,
filtered by status, rule, plugin, action, record and time; one delivery with its attempts
and the context its mapping is rendered from; retrying one or a selection; replaying a
time range after a count of what it would send. And the record page's "Deliveries" panel.

Each calls ``loom.integrations.admin`` (the API does too), so the screens and the API
find, retry and replay the same way and write the same audit entries.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from flask import current_app, flash, g, render_template, request, url_for
from markupsafe import Markup

from loom import Panel
from loom.errors import BadRequest
from loom.integrations import admin
from loom.integrations.api import require_delivery_admin, rule_budgets
from loom.metadata.model import Entity
from loom.ui.audit import entity_label
from loom.ui.i18n import gettext, lazy_gettext, ngettext
from loom.ui.pages import pages, redirect_to, render_page
from loom.ui.screens import context, local_moment
from loom.ui.widgets import form_id

#: the status tabs of the list, in the order a delivery goes through them
STATUS_TABS = ("pending", "failed", "running", "dead", "succeeded")
STATUS_LABELS = {"pending": lazy_gettext("Pending"), "failed": lazy_gettext("Failed"),
                 "running": lazy_gettext("Running"), "dead": lazy_gettext("Dead"),
                 "succeeded": lazy_gettext("Succeeded")}
#: a pending delivery that has failed before, in a row (the tab says "Failed")
PENDING_AGAIN = lazy_gettext("Pending, to retry")
#: what an attempt came to
OUTCOME_LABELS = {"succeeded": lazy_gettext("Succeeded"), "failed": lazy_gettext("Failed, to be retried"),
                  "permanent": lazy_gettext("Refused for good"), "dead": lazy_gettext("Failed, last attempt"),
                  "lost": lazy_gettext("Lost (the worker stopped)")}
#: how much of an error the list shows
SHORT_ERROR = 120


def _engine():
    return current_app.extensions["loom"].engine


def status_label(delivery: dict[str, Any]) -> str:
    """A delivery's status as a person reads it (a pending one that failed says so)."""
    status = delivery["status"]
    return str(PENDING_AGAIN if delivery.get("failed") else STATUS_LABELS.get(status, status))


def short(text: str | None, size: int = SHORT_ERROR) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= size else text[:size - 1] + "…"


def record_url(delivery: dict[str, Any]) -> str | None:
    """The record page of the delivery's record, where its entity still exists."""
    entity, record_id = delivery.get("entity"), delivery.get("record_id")
    if not entity or record_id is None or entity not in context().live.model.entities:
        return None
    return url_for("pages.record_view", entity=entity, record_id=record_id)


def _local(name: str, raw: str) -> str:
    """A date or a time typed into the screen (without a zone: the screens' time zone), as
    the ISO text the filters take; anything else is left for the filters to refuse."""
    try:
        moment = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        return raw
    return (local_moment(moment) if moment.tzinfo is None else moment).isoformat()


def _typed(args) -> dict[str, str]:
    """The screen's filter arguments, empty ones left out, times read in the screens' zone."""
    values = {k: v for k, v in args.items() if v != "" and k in (*admin.FILTERS, "cursor", "limit")}
    for name in ("since", "until"):
        if name in values:
            values[name] = _local(name, values[name])
    return values


def _helpers() -> dict[str, Any]:
    return {"status_label": status_label, "status_labels": STATUS_LABELS, "status_tabs": STATUS_TABS,
            "outcome_labels": OUTCOME_LABELS, "short": short, "record_url": record_url,
            "entity_label": entity_label}


@pages.get("/deliveries")
def deliveries():
    """Deliveries, newest first, with the API's filters; the URL keeps them."""
    require_delivery_admin()
    shown = {k: v for k, v in request.args.items() if v != "" and k in admin.FILTERS}
    query = admin.DeliveryQuery.parse(_typed(request.args))
    found, next_cursor = admin.list_deliveries(_engine(), query)
    more_args = {**shown, "cursor": next_cursor} if next_cursor else None
    template = "_deliveries_rows.html" if request.args.get("cursor") and request.headers.get("HX-Request") \
        else "deliveries.html"
    rest = {k: v for k, v in shown.items() if k != "status"}
    return render_page(template, deliveries=found, filters=shown, rest=rest, more_args=more_args,
                       title=gettext("Deliveries"), **_helpers())


@pages.get("/deliveries/<int:delivery_id>")
def delivery_view(delivery_id: int):
    """One delivery: its values, every attempt, and the context its mapping is rendered from."""
    require_delivery_admin()
    found = admin.delivery(_engine(), delivery_id)
    shown = {name: json.dumps(found[name], ensure_ascii=False, indent=2, sort_keys=True, default=str)
             for name in ("context", "result") if found.get(name) is not None}
    return render_page("deliveries_detail.html", delivery=found, shown=shown,
                       retriable=found["status"] == "dead" or found["failed"],
                       title=gettext("Delivery %(id)s", id=delivery_id), **_helpers())


def _chosen_ids() -> list[int]:
    one = request.form.get("one")
    raw = [one] if one else request.form.getlist("ids")
    ids = [i for i in (form_id(value) for value in raw) if i is not None]
    if not ids:
        raise BadRequest(gettext("Select one or more deliveries first."))
    return admin.parse_ids(ids)


def _kept_filters() -> dict[str, str]:
    """The list's filters the form carried along (``keep.<name>``), to go back to them."""
    kept = {name: request.form.get(f"keep.{name}", "") for name in admin.FILTERS}
    return {k: v for k, v in kept.items() if v}


@pages.post("/deliveries/retry")
def deliveries_retry():
    """Retry the delivery of the row's button (``one``), or every selected one (``ids``);
    back to the list as it was filtered, or to the delivery's page."""
    require_delivery_admin()
    ids = _chosen_ids()
    result = admin.retry(_engine(), current_app.extensions["loom"].audit, ids, principal=g.principal,
                         budgets=rule_budgets())
    if result.retried:
        flash(ngettext("%(num)s delivery will be tried again.", "%(num)s deliveries will be tried again.",
                       len(result.retried)), "success")
    if result.skipped:
        flash(gettext("Not retried (only dead deliveries and those that failed can be): %(list)s",
                      list=", ".join(f"#{i} {STATUS_LABELS.get(s, s)}" for i, s in result.skipped)), "warning")
    if request.form.get("back") == "delivery" and len(ids) == 1:
        return redirect_to(url_for("pages.delivery_view", delivery_id=ids[0]))
    return redirect_to(url_for("pages.deliveries", **_kept_filters()))


def _replay_values(args) -> dict[str, str]:
    values = {k: v for k, v in args.items() if v != "" and k in ("since", "until", *admin.REPLAY_FILTERS)}
    for name in ("since", "until"):
        if name in values:
            values[name] = _local(name, values[name])
    return values


@pages.get("/deliveries/replay")
def replay_form():
    """Replay a time range: choose it (and narrow it by rule, plugin, action or record),
    see how many deliveries it would send again, then send them."""
    require_delivery_admin()
    given = {k: v for k, v in request.args.items() if v != "" and k in ("since", "until", *admin.REPLAY_FILTERS)}
    count = None
    if given.get("since") or given.get("until"):
        count = admin.count_replay(_engine(), admin.ReplayRange.parse(_replay_values(request.args)))
    return render_page("deliveries_replay.html", given=given, count=count, limit=admin.MAX_REPLAY,
                       title=gettext("Replay deliveries"), **_helpers())


@pages.post("/deliveries/replay")
def replay():
    require_delivery_admin()
    span = admin.ReplayRange.parse(_replay_values(request.form))
    new_ids = admin.replay(_engine(), current_app.extensions["loom"].audit, span, principal=g.principal,
                           budgets=rule_budgets())
    flash(ngettext("%(num)s delivery will be sent again.", "%(num)s deliveries will be sent again.",
                   len(new_ids)), "success")
    return redirect_to(url_for("pages.deliveries", status="pending"))


# -- the record page's panel ------------------------------------------------------------------

def record_panel(entity: Entity, record: dict[str, Any], principal) -> list[Panel]:
    """The record's newest deliveries, for who may see deliveries, where it has any."""
    record_id = record.get("id")
    if not admin.may_manage_deliveries(principal) or not isinstance(record_id, int):
        return []
    found, more = admin.record_deliveries(_engine(), entity.name, record_id)
    if not found:
        return []
    body = render_template("_deliveries_panel.html", deliveries=found, more=more, entity=entity.name,
                           record_id=record_id, **_helpers())
    return [Panel(gettext("Deliveries"), Markup(body), key="deliveries")]
