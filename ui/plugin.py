"""The screens as a built-in plugin: the host registers this module in every app (by
name, from ``loom.plugins.BUILTIN_PLUGINS``), and it hands the app the page blueprint,
the pages open without signing in, its tables and its navigation links, through the same
hooks an installed plugin uses."""

from __future__ import annotations

from loom import NavLink, hookimpl
from loom.ui import importing, lists, pages, screens, widgets
from loom.ui.i18n import lazy_gettext


@hookimpl
def startup(app):
    # what the templates call, from the modules that define it
    app.jinja_env.globals.update(display=screens.display, shown=screens.shown, local_time=screens.local_time,
                                 input_type=widgets.input_type, input_value=widgets.input_value, step=widgets.step,
                                 input_attributes=widgets.input_attributes,
                                 bulk_fields=lists.bulk_fields, page_sizes=lists.PAGE_SIZES,
                                 status_label=importing.status_label)


@hookimpl
def register_blueprints():
    return [pages]


@hookimpl
def public_endpoints():
    # the start page shows the sign-in form to a visitor; switching the language is the
    # browser session's own choice, before signing in too
    return ["pages.home", "pages.static", "pages.sign_in", "pages.sign_in_submit", "pages.switch_language"]


@hookimpl
def read_only_endpoints():
    # signing in with a password is its own credential; signing out ends a session, which a
    # token has none of; the language is this browser's; the chain check is a read sent as POST
    return ["pages.sign_in_submit", "pages.sign_out", "pages.switch_language", "pages.audit_verify"]


@hookimpl
def model_modules():
    return ["loom.ui.models"]


@hookimpl
def navigation_links(principal):
    from loom.audit.api import may_read_audit
    from loom.integrations.admin import may_manage_deliveries
    from loom.ui.ownership import may_manage_users
    from loom.ui.plugin_settings import may_see as may_see_plugin_settings

    links = []
    if may_read_audit(principal):
        links.append(NavLink(lazy_gettext("Audit log"), endpoint="pages.audit_log"))
    if may_manage_deliveries(principal):
        links.append(NavLink(lazy_gettext("Deliveries"), endpoint="pages.deliveries"))
    if may_see_plugin_settings(principal):
        links.append(NavLink(lazy_gettext("Plugin settings"), endpoint="pages.plugin_settings_list"))
    if may_manage_users(principal):
        links.append(NavLink(lazy_gettext("Transfer records"), endpoint="pages.transfer_all_form"))
    return links


@hookimpl
def record_panels(entity, record, principal):
    from loom.ui.deliveries import record_panel
    from loom.ui.external_ids import record_panel as external_ids_panel

    return record_panel(entity, record, principal) + external_ids_panel(entity, record)
