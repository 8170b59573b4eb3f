"""Problem replies (RFC 9457, ``application/problem+json``): the one shape every error
takes over HTTP, for the app's error handlers, the sign-in check and the screens alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import g, jsonify

from loom.errors import status_code

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, type_: str = "about:blank", errors=None, *,
            code: str | None = None, params: Mapping[str, Any] | None = None):
    """An RFC 9457 problem reply, with Loom's ``code`` and ``params`` beside the detail (by
    default the code the status stands for, see ``loom.errors.status_code``)."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail,
                            "code": code or status_code(status), "params": dict(params or {})}
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
