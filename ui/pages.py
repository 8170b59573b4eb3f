"""Page blueprint: the start page listing the live entities."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

pages = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                  static_url_path="/static/loom")


@pages.get("/")
def home():
    live = current_app.extensions["loom"].metadata.live()
    entities = [e for e in live.model.entities.values() if not e.child]
    return render_template("home.html", entities=entities, version=live.number)
