"""Panels plugins add to the record page (``record_panels`` hook)."""

from __future__ import annotations

from typing import Any

from flask import current_app, g

from loom import Panel
from loom.metadata.model import Entity
from loom.plugins import call_each


def record_panels(entity: Entity, record: dict[str, Any]) -> list[Panel]:
    """Every plugin's panels for ``record`` (as the signed-in user may read it), each with
    a key unique on the page. A plugin whose hook fails, or answers with something that is
    not a Panel, is logged and left out: the record page still shows."""
    hook = current_app.extensions["loom"].plugins.hook.record_panels
    panels: list[Panel] = []
    for plugin, answer in call_each(hook, entity=entity, record=record, principal=g.principal):
        for i, panel in enumerate(answer):
            if not isinstance(panel, Panel):
                current_app.logger.error("plugin %s answered record_panels with %r, not a loom.Panel; left out",
                                         plugin, type(panel).__name__)
                continue
            key = panel.key or f"{plugin}-{i}"
            panels.append(Panel(panel.title, panel.body, _slug(key)))
    return panels


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)
