"""The ``http.request`` action: an outbound webhook. It sends the rule's JSON body to a URL
and says how the other end answered: a 2xx is done, a 4xx other than 408 and 429 is a
permanent failure (the request as such was refused), anything else is tried again.

Every request carries the delivery's ``Idempotency-Key``, ``X-Loom-Delivery`` and
``X-Loom-Timestamp``; with ``signing_key`` it is signed the way Loom's inbound webhooks
check (``loom.plugins.webhooks``): ``X-Loom-Signature: t=<timestamp>,v1=<hex HMAC-SHA256
of "<timestamp>." followed by the body bytes>``, so one Loom instance can call another's
``/hooks/<plugin>/<name>``. The signing secrets are named in the settings of ``http``
(``signing_keys``, each value sealed) and rules refer to them by name only.

This module is also the built-in plugin declaring those settings.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import ssl
import time
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from loom.hookspecs import hookimpl
from loom.integrations.actions import ActionCall, PermanentFailure
from loom.plugins.webhooks import SIGNATURE_HEADER, sign


@functools.cache
def _tls() -> ssl.SSLContext:
    """One verifying TLS context for every request: making one (reading the CA bundle)
    costs about 20 ms, which a client made per delivery would pay each time."""
    return httpx.create_ssl_context()


#: the settings the signing secrets live in: ``loom plugin set http signing_keys='{"erp": "..."}'``
SETTINGS = "http"
SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": {"en": "Outbound webhooks", "zh": "出站 Webhook"},
    "description": {"en": "Secrets the http.request action of integration rules signs its requests with.",
                    "zh": "集成规则的 http.request 动作用来为请求签名的密钥。"},
    "properties": {
        "signing_keys": {
            "type": "object",
            "title": {"en": "Signing keys", "zh": "签名密钥"},
            "description": {"en": "Named secrets http.request signs with (argument signing_key: <name>), "
                                  "at least 16 characters each",
                            "zh": "http.request 签名所用的具名密钥（参数 signing_key: <名称>），每个至少 16 个字符"},
            "propertyNames": {"pattern": "^[A-Za-z0-9_.-]{1,100}$"},
            "additionalProperties": {"type": "string", "minLength": 16, "secret": True},
            "default": {},
        },
    },
    "additionalProperties": False,
}

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 60
#: how much of a reply the delivery keeps as its result
BODY_KEPT = 2000
#: how much of a refusing reply an error quotes
BODY_QUOTED = 300
MAX_REDIRECTS = 5
#: header names whose values are never quoted in an error (besides the signing secret)
_SENSITIVE = ("authorization", "cookie", "key", "token", "secret", "password", "signature")


class RequestFailed(Exception):
    """A request worth sending again: the other end was unreachable, slow, busy or broken."""


def request(call: ActionCall) -> dict[str, Any]:
    """Send the request ``call.arguments`` describe; ``{"status", "body"}`` of a 2xx reply
    (the body's first 2,000 characters)."""
    arguments = call.arguments
    method = str(arguments.get("method") or "POST").upper()
    if method not in METHODS:
        raise PermanentFailure(f"method {method!r} is not one http.request sends; use one of {', '.join(METHODS)}")
    url = _url(arguments.get("url"))
    shown = _shown_url(url)
    timeout = _timeout(arguments.get("timeout", DEFAULT_TIMEOUT))
    body = _json_body(arguments["body"]) if arguments.get("body") is not None else b""
    timestamp = int(time.time())
    try:
        headers = httpx.Headers(_string_map(arguments.get("headers"), "headers"))
    except UnicodeEncodeError:
        raise PermanentFailure("header names and values must be ASCII text") from None
    secrets = [value for name, value in headers.items() if any(word in name.lower() for word in _SENSITIVE)]
    secrets += [url.password] if url.password else []
    if body:
        headers["Content-Type"] = "application/json"
    headers["Idempotency-Key"] = call.idempotency_key
    headers["X-Loom-Delivery"] = str(call.delivery_id)
    headers["X-Loom-Timestamp"] = str(timestamp)
    if arguments.get("signing_key"):
        secret = _signing_secret(call, str(arguments["signing_key"]))
        secrets.append(secret)
        headers[SIGNATURE_HEADER] = sign(secret, body, timestamp)

    def same_host_only(redirected: httpx.Request) -> None:
        target = redirected.url
        if (target.scheme, target.host, target.port) != (url.scheme, url.host, url.port):
            origin = f"{target.scheme}://{target.host}" + (f":{target.port}" if target.port else "")
            raise PermanentFailure(f"{method} {shown} was redirected to another host ({origin}), which "
                                   "http.request does not follow: point the rule at the final address")

    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS, verify=_tls(),
                          event_hooks={"request": [same_host_only]}) as client, \
                client.stream(method, url, content=body or None, headers=headers) as reply:
            status, reason = reply.status_code, reply.reason_phrase
            text = _start_of(reply, deadline)
    except httpx.TimeoutException:
        raise RequestFailed(f"{method} {shown} got no answer within {timeout:g} seconds") from None
    except httpx.TooManyRedirects:
        raise PermanentFailure(f"{method} {shown} was redirected more than {MAX_REDIRECTS} times") from None
    except httpx.LocalProtocolError:
        # its message quotes the offending header, which may be a credential
        raise PermanentFailure(f"{method} {shown} is not a valid HTTP request: a header name or value holds "
                               "characters HTTP does not allow") from None
    except httpx.TransportError as error:
        problem = _redacted(str(error) or type(error).__name__, secrets)
        raise RequestFailed(f"{method} {shown} could not be sent: {problem}") from None
    except httpx.HTTPError as error:
        raise RequestFailed(f"{method} {shown} failed: {type(error).__name__}") from None
    if 200 <= status < 300:
        return {"status": status, "body": text[:BODY_KEPT]}
    quoted = _redacted(text[:BODY_QUOTED].strip(), secrets)
    said = f": {quoted}" if quoted else ""
    if 400 <= status < 500 and status not in (408, 429):
        raise PermanentFailure(f"{method} {shown} was refused with {status} {reason}{said}")
    raise RequestFailed(f"{method} {shown} answered {status} {reason}{said}")


def _start_of(reply: httpx.Response, deadline: float) -> str:
    """The start of the reply as text: enough of it for what is kept, read by the deadline
    (a reply may be large, or trickle in), the rest never read."""
    head = b""
    for chunk in reply.iter_bytes():
        head += chunk
        if len(head) >= 4 * BODY_KEPT:  # UTF-8 takes at most four bytes a character
            break
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the reply took too long", request=reply.request)
    try:
        return head.decode(reply.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return head.decode("utf-8", errors="replace")


def _url(value: Any) -> httpx.URL:
    try:
        url = httpx.URL(value) if isinstance(value, str) else None
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise PermanentFailure(f"the url {_shown_value(value)} is not an http:// or https:// address")
    return url


def _shown_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _shown_url(url: httpx.URL) -> str:
    """The address as errors name it: without a user name, password or query string, which
    may hold credentials."""
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def _timeout(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise PermanentFailure(f"timeout must be a number of seconds, not {_shown_value(value)}") from None
    if not 0 < seconds <= MAX_TIMEOUT:
        raise PermanentFailure(f"timeout must be more than 0 and at most {MAX_TIMEOUT} seconds, not {seconds:g}")
    return seconds


def _string_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PermanentFailure(f"{name} must map names to text")
    return dict(value)


def _plain(value: Any) -> Any:
    """What the standard JSON encoder does not take, as Loom's JSON writes it."""
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def _json_body(value: Any) -> bytes:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_plain).encode("utf-8")
    except (TypeError, ValueError) as error:
        raise PermanentFailure(f"the body cannot be sent as JSON: {error}") from None


def _signing_secret(call: ActionCall, name: str) -> str:
    """The secret named ``name``: from the settings the call carries, else from the app's
    settings of ``http`` (Loom's own actions are given no plugin settings)."""
    if "signing_keys" in call.settings:
        keys = call.settings["signing_keys"] or {}
    else:
        keys = call.app.extensions["loom"].settings.values(SETTINGS).get("signing_keys") or {}
    secret = keys.get(name)
    if not secret:
        known = ", ".join(sorted(keys)) or "none"
        raise PermanentFailure(f"no signing key named {name!r} is set (set ones: {known}); add it with "
                               f"loom plugin set {SETTINGS} signing_keys='{{\"{name}\": \"...\"}}'")
    return secret


def _redacted(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:  # shorter is no secret, and would mask every such letter
            text = text.replace(secret, "***")
    return text


@hookimpl
def plugin_settings_schema():
    return (SETTINGS, SETTINGS_SCHEMA)
