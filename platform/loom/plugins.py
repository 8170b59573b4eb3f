"""The plugin host: a pluggy manager with Loom's hook specifications, loaded with the
plugins installed under the ``loom.plugins`` entry-point group."""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from loom import hookspecs

ENTRY_POINT_GROUP = "loom.plugins"


def plugin_manager(extra: Iterable[object] = (), *, discover: bool = True) -> pluggy.PluginManager:
    """A manager with every installed plugin, plus ``extra`` plugin objects (used by tests
    and embedding code)."""
    manager = pluggy.PluginManager("loom")
    manager.add_hookspecs(hookspecs)
    if discover:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        manager.register(plugin)
    return manager
