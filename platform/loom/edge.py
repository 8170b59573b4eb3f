"""Hostile input stopped at the edge of every request, before any view or service sees it.

Databases refuse some text outright (PostgreSQL takes no NUL; UTF-8 cannot hold a UTF-16
surrogate without its partner), Python's JSON parser recurses once per nesting level, and
URL integers can exceed every integer column. Each of these, left to reach a service, ends
in a 500 somewhere; here they are refused once, for every route, with a 400 that names
the parameter, header or JSON member to fix.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from flask import Flask, Response, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import NotFound, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from loom.errors import BadRequest, error_entry

#: a client's X-Request-Id is kept only when it is a plain token that fits the audit column
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,63}$")
#: text no database column takes: NUL, and surrogates without their partner
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: deeper JSON than any record, role or filter needs; deeper is refused before it costs anything
MAX_JSON_DEPTH = 64
INT64 = 2**63


def bad_input(where: str, message: str) -> BadRequest:
    """A 400 naming ``where`` (a parameter, header or JSON member) and what to fix."""
    where = _UNSTORABLE.sub("\ufffd", where)
    return BadRequest(f"{where}: {message}", errors=[error_entry(where, "bad_parameter", message, parameter=where)])


def _refuse_unstorable(where: str, text: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    if found.group() == "\x00":
        raise bad_input(where, "cannot contain the NUL character")
    raise bad_input(where, "contains a UTF-16 surrogate without its partner; send valid Unicode text")


def request_id() -> str:
    """The request's id: the client's ``X-Request-Id`` when it is a sane token, else a new one."""
    sent = request.headers.get("X-Request-Id", "")
    return sent if _REQUEST_ID.match(sent) else uuid.uuid4().hex


def check_request() -> None:
    """Refuse a request whose path, query, headers or form carry text no column can hold."""
    _refuse_unstorable("path", request.path)
    for key, value in request.args.items(multi=True):
        _refuse_unstorable(key[:100], key)
        _refuse_unstorable(key[:100], value)
    for key, value in request.headers.items():
        _refuse_unstorable(f"header {key[:100]}", value)
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.mimetype in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        # a multipart part's name may be missing or undecodable (werkzeug then gives None)
        for key, value in request.form.items(multi=True):
            if key is None:
                raise bad_input("form", "every part of the form needs a name")
            _refuse_unstorable(key[:100], key)
            _refuse_unstorable(key[:100], value)
        for key, upload in request.files.items(multi=True):
            if key is None:
                raise bad_input("form", "every part of the form needs a name")
            _refuse_unstorable(key[:100], key)
            _refuse_unstorable(f"{key[:100]} file name", upload.filename or "")


def refuse_long_stream() -> None:
    """Refuse with 413 a body sent without Content-Length (chunked) that is longer than
    MAX_CONTENT_LENGTH. Werkzeug cuts such a stream at the limit without a word when the
    server ends the stream itself (granian, gunicorn), and a view would read half a
    body; a body within the limit is kept for the view to read."""
    if request.content_length is not None or request.max_content_length is None \
            or "wsgi.input_terminated" not in request.environ \
            or "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    request.get_data(cache=True)  # at most the limit
    if request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()


def _within_depth(value: Any) -> bool:
    """Whether no container in ``value`` lies ``MAX_JSON_DEPTH`` or more levels deep."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth >= MAX_JSON_DEPTH:
            return False
        members = item.values() if isinstance(item, dict) else item
        stack.extend((member, depth + 1) for member in members if isinstance(member, dict | list))
    return True


def check_json(value: Any, text: str | bytes | None = None) -> None:
    """Refuse a parsed JSON document nested deeper than ``MAX_JSON_DEPTH`` or holding a
    string (or member name) no column can hold; the error names the member's path.

    Given the ``text`` it was parsed from, and that text has no escape sequence and no
    surrogate, no string in it can hold what a column cannot (JSON text cannot carry a
    raw NUL): only the depth is checked, without naming every member's path."""
    if text is not None and isinstance(value, dict | list) and _plain(text):
        if _within_depth(value):
            return
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _refuse_unstorable(path or "body", item)
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise bad_input("body", f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, member in item.items():
                    inner = f"{path}.{key}" if path else key
                    _refuse_unstorable(inner[:200], key)
                    stack.append((member, inner[:200], depth + 1))
            else:
                stack.extend((member, f"{path}[{i}]"[:200], depth + 1) for i, member in enumerate(item))


#: orjson hands these to ``default`` (Flask's conversions) instead of writing them its own
#: way, so a reply reads the same whichever encoder wrote it
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _plain(text: str | bytes) -> bool:
    """Whether JSON ``text`` has no escape sequence, no NUL and no surrogate (bytes with an
    0xED byte, which starts a surrogate in UTF-8 but also some Hangul, count as not)."""
    if isinstance(text, bytes | bytearray):
        if b"\\u" in text or b"\x00" in text or b"\xed" in text:  # UTF-8 surrogates start with ED
            return False
        return True
    return "\\u" not in text and _UNSTORABLE.search(text) is None


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, reading request bodies defensively: too deep a document or text no
    column can hold is a 400 (a ``LoomError``, which ``get_json(silent=True)`` lets through).

    Replies are written by orjson, about ten times faster than the standard library on a
    list page (docs/benchmarks.md); what orjson does not take (an integer beyond 64 bits,
    say) and calls with formatting options go to the standard encoder, so the text is the
    same JSON either way."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs:
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def _encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=_ORJSON_OPTIONS)
        except TypeError:
            return super().dumps(obj, separators=(",", ":")).encode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        if self.compact is False or (self.compact is None and self._app.debug):
            return super().response(obj)
        return self._app.response_class(self._encode(obj) + b"\n", mimetype=self.mimetype)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise bad_input("body", f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
        check_json(value, s)
        return value


class BoundedInt(IntegerConverter):
    """``<int:...>`` in a URL: a whole number that fits a 64-bit id column; a longer one
    matches no route (404), instead of reaching the database and overflowing there."""

    def __init__(self, map, fixed_digits=0, min=None, max=INT64 - 1, signed=False):  # noqa: A002
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)

    def to_python(self, value: str) -> int:
        # NotFound, not ValidationError: werkzeug answers a failed conversion of a non-GET
        # route with 405; and the length check spares int() a number of thousands of digits
        if len(value.lstrip("0")) > 19 or int(value) >= INT64:
            raise NotFound("there is no such record: ids are whole numbers below 2^63")
        return super().to_python(value)


def install(app: Flask) -> None:
    """Put the checks in front of every request; call before any other ``before_request``."""
    app.json = JSONProvider(app)
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.url_map.converters["int"] = BoundedInt

    @app.before_request
    def _edge() -> None:
        g.request_id = request_id()
        refuse_long_stream()
        check_request()
