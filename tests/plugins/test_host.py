"""The plugin host: built-in plugins always, installed ones by entry point, mistakes
refused at once, and the engine with no import edge to the screens."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pluggy
import pytest

import loom
from loom.models import import_all
from loom.plugins import BUILTIN_PLUGINS, plugin_manager

ROOT = Path(__file__).resolve().parents[2]


def test_built_in_plugins_are_registered_without_discovery():
    manager = plugin_manager(discover=False)
    assert sorted(manager.get_name(p) for p in manager.get_plugins()) == sorted(BUILTIN_PLUGINS)


def test_a_misspelt_hook_is_refused_when_the_app_is_built():
    class Typo:
        @loom.hookimpl
        def navigation_link(self, principal):  # the hook is navigation_links
            return []

    with pytest.raises(pluggy.PluginValidationError, match="navigation_link"):
        plugin_manager([Typo()], discover=False)


def test_a_plugin_given_twice_is_registered_once():
    class Once:
        @loom.hookimpl
        def public_endpoints(self):
            return ["once.view"]

    plugin = Once()
    manager = plugin_manager([plugin, plugin], discover=False)
    assert manager.hook.public_endpoints().count(["once.view"]) == 1


def test_model_modules_are_imported_before_alembic_looks(monkeypatch):
    class Tables:
        @loom.hookimpl
        def model_modules(self):
            return ["colorsys"]

    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    import_all(plugin_manager([Tables()], discover=False))
    assert "colorsys" in sys.modules
    from loom.db import Base

    assert "loom_saved_views" in Base.metadata.tables  # the screens' tables, named by their plugin


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("loom.ui"):
            names.add(node.value)  # importlib.import_module("loom.ui...") counts too
    return names


@pytest.mark.parametrize("folder", ["platform/loom", "metadata", "migrations"])
def test_the_engine_never_imports_the_screens(folder):
    """The screens sit on top, registered through the plugin host: the one place allowed
    to name them is the host's list of built-in plugins."""
    allowed = {ROOT / "platform/loom/plugins/__init__.py"}
    offenders = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path in allowed:
            continue
        found = [name for name in _imports(path) if name == "loom.ui" or name.startswith("loom.ui.")]
        if found:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(found)}")
    assert not offenders
