"""Every module that declares one of Loom's own tables, so alembic and tests see them all."""

import importlib

MODEL_MODULES = ("loom.identity.models", "loom.schema.models", "loom.events", "loom.audit.models",
                 "loom.records.comments", "loom.records.files", "loom.ui.models")


def import_all() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
