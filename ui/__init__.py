"""Loom's screens: server-rendered pages with htmx, generated from the metadata.

Every screen reads and writes records through the record service, as the signed-in user.
Importing this package adds all screens to the ``pages`` blueprint.
"""

from loom.ui import attachments, audit, exporting, forms, importing, lists, records, signin  # noqa: F401  (each adds its routes)
from loom.ui import flashes  # noqa: F401  (refreshes the message area after an htmx post)
from loom.ui.navigation import add_nav_link
from loom.ui.pages import pages

__all__ = ["add_nav_link", "pages"]
