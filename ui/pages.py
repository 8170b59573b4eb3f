"""Page blueprint: the start page listing the live entities."""

from __future__ import annotations

from flask import Blueprint, g, render_template

pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                  static_url_path="/static/loom")


@pages.get("/")
def home():
    """The start page: the entities the signed-in user may read (none before sign-in)."""
    from loom.records.api import record_context
    from loom.records.service import RecordService

    if g.get("principal") is None:
        return render_template("home.html", entities=None, version=None)
    context = record_context()
    entities = [e for e in context.live.model.entities.values()
                if not e.child and RecordService(context, e.name).access.allowed("read")]
    return render_template("home.html", entities=entities, version=context.live.number)
