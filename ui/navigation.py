"""The navigation: the entities the signed-in user may read, grouped by app, plus the
links plugins add for them (``navigation_links`` hook; the screens' own audit log link
comes through it too)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app, g, url_for

from loom.plugins import call_each
from loom.ui.i18n import current_locale, lazy_gettext

log = logging.getLogger(__name__)

#: app name -> its label; an app not listed here shows its name
APP_LABELS = {"crm": lazy_gettext("CRM"), "erp": lazy_gettext("ERP")}


def nav_order(entities) -> list:
    """Entities in their declared navigation order (``nav_order``, lowest first), then
    the others by name: the same in every language, never sorted by a translated label."""
    return sorted(entities, key=lambda e: (e.nav_order is None, e.nav_order or 0, e.name))


def plural_label(entity) -> str:
    """The label of several records of ``entity`` ("Customers") in the interface language:
    list headings, related lists and the navigation use it."""
    return entity.plural_title(current_locale())


@dataclass(frozen=True)
class NavEntity:
    name: str
    label: str
    url: str


def navigation() -> dict:
    """What the navigation shows for this request: ``groups`` (app label, entities) and
    ``links`` (extra links), cached on the request."""
    if "navigation" in g:
        return g.navigation
    result: dict = {"groups": [], "links": [], "admin_areas": frozenset()}
    principal = g.get("principal")
    if principal is not None:
        from loom.ui.screens import context

        ctx = context()
        groups: dict[str, list[NavEntity]] = {}
        for entity in nav_order(ctx.live.model.entities.values()):
            if entity.child or not _readable(ctx, entity):
                continue
            groups.setdefault(entity.app or "", []).append(
                NavEntity(entity.name, plural_label(entity), url_for("pages.list_view", entity=entity.name)))
        # apps in the order of their first entity; entities without an app last
        for app_name in sorted(groups, key=lambda a: a == ""):
            title = str(APP_LABELS.get(app_name, app_name.upper() if app_name else lazy_gettext("Other")))
            result["groups"].append((title, groups[app_name]))
        areas = frozenset(ctx.policy.admin(principal.roles)) if ctx.policy is not None else frozenset()
        if principal.is_superuser:
            areas = areas | {"*"}
        result["admin_areas"] = areas
        result["links"] = plugin_links(principal)
    g.navigation = result
    return result


def plugin_links(principal) -> list[tuple[str, str]]:
    """The links plugins show ``principal``, as (url, label). A plugin whose hook fails, or
    whose link cannot be built (an unknown endpoint), is logged and its link left out:
    the navigation is on every page, and one plugin's bug must not take the pages down."""
    hook = current_app.extensions["loom"].plugins.hook.navigation_links
    links = []
    for plugin, answer in call_each(hook, principal=principal):
        for link in answer:
            try:
                links.append((link.href(), str(link.label)))
            except Exception:
                log.exception("navigation link %r of plugin %s cannot be shown", link, plugin)
    return links


def _readable(ctx, entity) -> bool:
    from loom.records.service import RecordService

    return RecordService(ctx, entity.name).allowed("read")
