"""The message area after an htmx post: a user action answered with a fragment (a comment
posted, a form refused) replaces the messages too, so a "saved" from the page before does
not stay beside what the user just did, and a message flashed by the action shows."""

from __future__ import annotations

from flask import render_template, request

from loom.ui.pages import pages, wants_fragment

#: headers with which a reply goes elsewhere than the swapped fragment (it handles the messages itself)
ELSEWHERE = ("HX-Retarget", "HX-Redirect", "HX-Location", "HX-Refresh")


@pages.after_app_request
def _refresh_messages(response):
    if request.blueprint != "pages" or request.method == "GET" or not wants_fragment():
        return response
    if response.mimetype != "text/html" or response.direct_passthrough or response.status_code == 204:
        return response
    if any(header in response.headers for header in ELSEWHERE):
        return response
    body = response.get_data(as_text=True)
    if 'id="messages"' not in body:
        response.set_data(body + render_template("_messages_oob.html"))
    return response
