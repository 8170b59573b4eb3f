"""The plugin host: a pluggy manager with Loom's hook specifications, loaded with the
built-in plugins and the plugins installed under the ``loom.plugins`` entry-point group.

Built-in features that fit the hooks (the screens, the settings of ``http.request``) are
plugins too. They are named here as module names and imported by name, so the engine has
no import edge to them: the layers point one way, from the plugins down to the engine.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from importlib.metadata import entry_points
from typing import Any

import pluggy

from loom import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "loom.plugins"
#: modules registered as plugins in every app, before the installed ones
BUILTIN_PLUGINS = ("loom.ui.plugin", "loom.integrations.http")


def plugin_manager(extra: Iterable[object] = (), *, discover: bool = True, enabled: Iterable[str] | None = None,
                   disabled: Iterable[str] | None = None) -> pluggy.PluginManager:
    """A manager with the built-in plugins, the installed plugins that are on (unless
    ``discover`` is false; see ``installed_plugins``), and the ``extra`` plugin objects (used
    by tests and embedding code). An object given in ``extra`` that discovery registered
    already is not registered twice. A plugin implementing a hook Loom does not declare (a
    misspelt name) is refused here, at once. The plugins' field types, document kinds and
    rule actions are registered before it is returned."""
    manager = pluggy.PluginManager("loom")
    manager.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    if discover:
        for name, plugin in installed_plugins(enabled, disabled):
            manager.register(plugin, name=name)
    for plugin in extra:
        if not manager.is_registered(plugin):
            manager.register(plugin)
    manager.check_pending()
    register_metadata_extensions(manager)
    register_rule_actions(manager)
    return manager


def _names(value: Iterable[str] | str | None, setting: str) -> frozenset[str]:
    if value is None:
        value = os.environ.get(f"LOOM_{setting}", "")
    if isinstance(value, str):
        value = value.split(",")
    return frozenset(name.strip() for name in value if name.strip())


def installed_plugins(enabled: Iterable[str] | str | None = None,
                      disabled: Iterable[str] | str | None = None) -> Iterator[tuple[str, object]]:
    """The plugins installed under the ``loom.plugins`` entry-point group that are on, as
    (entry-point name, plugin). Every installed plugin is on, except those named in
    ``disabled`` (by default ``LOOM_PLUGINS_DISABLED``) and those that declare
    ``loom_enabled_by_default = False`` (an example, a plugin for one kind of site) unless
    named in ``enabled`` (by default ``LOOM_PLUGINS_ENABLED``)."""
    enabled, disabled = _names(enabled, "PLUGINS_ENABLED"), _names(disabled, "PLUGINS_DISABLED")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in disabled:
            continue
        plugin = entry.load()
        if getattr(plugin, "loom_enabled_by_default", True) or entry.name in enabled:
            yield entry.name, plugin


def register_metadata_extensions(manager: pluggy.PluginManager) -> None:
    """Add the field types and document kinds ``manager``'s plugins declare to the metadata
    language's registries, which are the process's: registering one again does nothing,
    and a name already taken by something else raises, naming it."""
    from loom.metadata import register_document_kind, register_field_type

    for new_type in flatten(manager.hook.field_types()):
        register_field_type(new_type)
    for kind in flatten(manager.hook.document_kinds()):
        register_document_kind(kind)


def register_rule_actions(manager: pluggy.PluginManager) -> None:
    """Add the actions ``manager``'s plugins declare (``rule_actions``) to the registry of
    actions, which is the process's, each under its plugin's name: the one its settings are
    declared under (the settings its actions are given), else ``plugin_name``. Registering
    one again does nothing; a name taken by another plugin (or by Loom) raises, naming both."""
    from loom.integrations.actions import Action, ActionError, action, register_action

    for impl in reversed(manager.hook.rule_actions.get_hookimpls()):
        owner = _settings_name(manager, impl.plugin) or plugin_name(manager, impl.plugin)
        for declared in impl.function() or ():
            if not isinstance(declared, Action):
                raise ActionError(f"the rule_actions hook of plugin {owner} must return loom.Action objects, "
                                  f"not {declared!r}")
            current = action(declared.name)
            if current is not None and current.plugin != owner:
                raise ActionError(f"action {declared.name!r} of plugin {owner} is already registered by "
                                  f"{current.plugin}; one of them must choose another name")
            register_action(replace(declared, plugin=owner))


def _settings_name(manager: pluggy.PluginManager, plugin: object) -> str | None:
    """The name ``plugin`` declares its settings under (``plugin_settings_schema``), if any."""
    for impl in manager.hook.plugin_settings_schema.get_hookimpls():
        if impl.plugin is plugin:
            answer = impl.function()
            if isinstance(answer, tuple | list) and answer and isinstance(answer[0], str):
                return answer[0]
    return None


def plugin_name(manager: pluggy.PluginManager, plugin: object) -> str:
    """How logs and listings name ``plugin``: its entry-point name, its module name, or
    its class name for a plugin object."""
    name = manager.get_name(plugin) or ""
    if name.isdigit():  # pluggy names an object without __name__ by its id
        return type(plugin).__name__
    return name


def call_each(hook: pluggy.HookCaller, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call each implementation of ``hook`` on its own, as (plugin name, answer) for the
    answers that are not None, in pluggy's order. One that raises is logged and left out:
    for hooks whose answers decorate a page, where one plugin's bug must not take the
    page (or the other plugins' contributions) down with it."""
    answers = []
    for impl in reversed(hook.get_hookimpls()):
        try:
            answer = impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception:
            log.exception("the %s hook of plugin %s failed; its contribution is left out", hook.name,
                          impl.plugin_name)
            continue
        if answer is not None:
            answers.append((impl.plugin_name, answer))
    return answers


def flatten(answers: Iterable[Iterable[Any] | None]) -> Iterator[Any]:
    """The items of each plugin's list answer, in plugin order (None answers skipped)."""
    for answer in answers:
        if answer is not None:
            yield from answer


__all__ = ["BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "call_each", "flatten", "installed_plugins", "plugin_manager",
           "plugin_name",
           "register_metadata_extensions", "register_rule_actions"]
