"""Problem replies (RFC 9457, ``application/problem+json``): the one shape every error
takes over HTTP, for the app's error handlers, the sign-in check and the screens alike."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, type_: str = "about:blank", errors=None):
    """An RFC 9457 problem reply."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    if g.get("request_id"):
        body["request_id"] = g.request_id
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM_JSON
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="loom"'
    return response
