"""Responses that download a file (exports, reports): the one place a download's
Content-Type and Content-Disposition are set, so every one declares its type, and the
charset of a text file, exactly once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Response

#: each download format's full Content-Type; given as ``content_type``, which Werkzeug
#: takes as it is (a ``mimetype`` of text/* gets a second charset appended)
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson",  # JSON text is UTF-8 by definition: no charset parameter
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def download(body: bytes | str | Iterable[Any], filename: str, fmt: str) -> Response:
    """A response that saves ``body`` as ``filename`` in format ``fmt`` (csv, jsonl or
    xlsx), kept out of caches: every download holds records or log entries."""
    response = Response(body, content_type=CONTENT_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
