"""The record page's "External ids" panel: the record's ids in other systems
(``loom.records.external_ids``), shown to whoever sees the record page, only when it has any."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template
from markupsafe import Markup

from loom import Panel
from loom.metadata.model import Entity
from loom.records.external_ids import links_of
from loom.ui.i18n import gettext, pgettext


def record_panel(entity: Entity, record: dict[str, Any]) -> list[Panel]:
    """The panel of ``record`` (which the record page has read as its user may), or none
    when the record has no links."""
    record_id = record.get("id")
    if not isinstance(record_id, int):
        return []
    links = links_of(current_app.extensions["loom"].engine, entity.name, record_id)
    if not links:
        return []
    body = render_template("_external_ids_panel.html", links=links,
                           system_label=pgettext("external id", "System"),
                           id_label=pgettext("external id", "Id there"))
    return [Panel(gettext("External ids"), Markup(body), key="external-ids")]
