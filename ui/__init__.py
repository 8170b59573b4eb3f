"""Loom's htmx screens."""
