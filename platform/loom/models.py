"""Every module that declares one of Loom's own tables, so alembic and tests see them all:
the engine's, and those the built-in plugins name (``model_modules`` hook)."""

import importlib

MODEL_MODULES = ("loom.identity.models", "loom.schema.models", "loom.events", "loom.audit.models",
                 "loom.records.comments", "loom.records.files", "loom.records.numbering",
                 "loom.records.external_ids",
                 "loom.plugins.settings",
                 "loom.plugins.webhooks", "loom.integrations.models")


def import_all(plugins=None) -> None:
    """Import every model module: the engine's and those of ``plugins`` (a plugin manager;
    by default one with the built-in plugins only, whose tables belong to Loom's own
    migration tree)."""
    from loom.plugins import flatten, plugin_manager

    manager = plugins if plugins is not None else plugin_manager(discover=False)
    for name in (*MODEL_MODULES, *flatten(manager.hook.model_modules())):
        importlib.import_module(name)
