"""Plugins' own tables: each plugin may ship an alembic revision tree
(``migration_folders`` hook). Loom runs it after its own tree, through the same alembic
environment, recording it in a version table of its own (``alembic_version_<plugin>``).

A version table per plugin, rather than one branch in Loom's: a database keeps a
plugin's revision after the plugin is uninstalled, and alembic refuses to upgrade a tree
whose recorded revision it cannot find. Kept apart, Loom's own upgrade never depends on
which plugins happen to be installed, as Indico does with its plugins' trees.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import as_file
from pathlib import Path
from typing import Any

import pluggy
import sqlalchemy as sa

from loom.db import alembic_config
from loom.db import upgrade as upgrade_loom

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def plugin_trees(plugins: pluggy.PluginManager) -> dict[str, Any]:
    """Each plugin's revision folder, by plugin name (checked: a short lower-case name,
    declared once)."""
    trees: dict[str, Any] = {}
    for answer in plugins.hook.migration_folders():
        for name, folder in answer or ():
            if not _NAME.match(name):
                raise ValueError(f"a plugin's migration tree must be named in lower case letters, digits "
                                 f"and _ (it names the table alembic_version_<name>), not {name!r}")
            if name in trees:
                raise ValueError(f"two plugins ship migrations named '{name}'")
            trees[name] = folder
    return trees


def version_table(name: str) -> str:
    return f"alembic_version_{name}"


@contextmanager
def _config(connection: sa.Connection, name: str, folder: Any) -> Iterator[Any]:
    with as_file(folder) if not isinstance(folder, str | Path) else _path(folder) as path:
        config = alembic_config(connection)
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", str(path))
        config.attributes["version_table"] = version_table(name)
        config.attributes["plugin_tree"] = name
        yield config


@contextmanager
def _path(folder: str | Path) -> Iterator[Path]:
    yield Path(folder)


def upgrade_plugins(engine: sa.Engine, plugins: pluggy.PluginManager) -> list[str]:
    """Bring every plugin's tables up to the head of its tree; the names of the trees."""
    from alembic import command

    trees = plugin_trees(plugins)
    for name, folder in trees.items():
        with engine.begin() as connection, _config(connection, name, folder) as config:
            command.upgrade(config, "heads")
    return list(trees)


def downgrade_plugin(engine: sa.Engine, plugins: pluggy.PluginManager, name: str, revision: str = "base") -> None:
    """Take plugin ``name``'s tables back to ``revision`` (``base``: drop them all), before
    uninstalling it."""
    from alembic import command

    trees = plugin_trees(plugins)
    if name not in trees:
        raise LookupError(f"no installed plugin ships migrations named '{name}' "
                          f"(trees: {', '.join(sorted(trees)) or 'none'})")
    with engine.begin() as connection, _config(connection, name, trees[name]) as config:
        command.downgrade(config, revision)


def upgrade(engine: sa.Engine, plugins: pluggy.PluginManager | None = None) -> None:
    """Loom's own tables, then each plugin's: what ``loom init`` and ``loom serve`` run."""
    upgrade_loom(engine)
    if plugins is not None:
        upgrade_plugins(engine, plugins)
