"""Loom's screens (htmx). For now: the start page, which points to the API."""

from loom.ui.pages import pages

__all__ = ["pages"]
