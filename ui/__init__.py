"""Loom's screens: server-rendered pages with htmx, generated from the metadata.

Every screen reads and writes records through the record service, as the signed-in user.
Importing this package adds all screens to the ``pages`` blueprint. The screens are a
built-in plugin (``loom.ui.plugin``): the engine never imports this package; the plugin
host registers them in every app.
"""

# each adds its routes; flashes refreshes the message area after an htmx post
from loom.ui import (  # noqa: F401
    attachments,
    audit,
    deliveries,
    exporting,
    flashes,
    forms,
    importing,
    lists,
    ownership,
    plugin_settings,
    records,
    signin,
)
from loom.ui.pages import pages

__all__ = ["pages"]
