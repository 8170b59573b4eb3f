"""Inbound webhooks: public endpoints a plugin declares (``webhooks`` hook), served at
``POST /hooks/<plugin>/<name>``. They take no session or token (so no CSRF check either):
each call proves itself with an HMAC-SHA256 signature over its timestamp and body, made
with a secret held in the plugin's settings. Unsigned, wrongly signed and stale calls are
refused with 401, and a signed call is taken once: the same call sent again (a replay of a
captured request, within the minutes its timestamp is accepted) is refused with 409.
Every call, refused or not, is audited."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, utcnow, write_transaction
from loom.errors import BadRequest, Conflict, LoomError, NotFound
from loom.principal import Principal

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Loom-Signature"
#: how old (or how far ahead of our clock) a signed timestamp may be
TOLERANCE_SECONDS = 300

webhooks = Blueprint("webhooks", __name__)


class WebhookReceipt(Base):
    """A signed call taken, by its signature, kept while its timestamp would be accepted."""

    __tablename__ = "loom_webhook_receipts"

    #: SHA-256 of the webhook's address and the call's signature header
    signature: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)


receipts = WebhookReceipt.__table__


class Replayed(Conflict):
    title = "Webhook call received already"
    code = "conflict"


def take_once(engine: sa.Engine, plugin: str, name: str, header: str) -> None:
    """Record a verified call, refusing (409) one taken already. Receipts older than the
    accepted clock difference (both ways) are dropped: such a call fails the time check."""
    key = hashlib.sha256(f"{plugin}/{name}/{header.strip()}".encode()).hexdigest()
    now = utcnow()
    try:
        with write_transaction(engine) as conn:
            conn.execute(receipts.delete().where(
                receipts.c.received_at < now - dt.timedelta(seconds=2 * TOLERANCE_SECONDS)))
            conn.execute(receipts.insert().values(signature=key, received_at=now))
    except sa.exc.IntegrityError:
        raise Replayed("this call was received already; a sender signs each call it sends anew") from None


@dataclass(frozen=True)
class Webhook:
    """An inbound webhook of ``plugin`` (the name its settings are declared under), served
    at ``/hooks/<plugin>/<name>``. ``secret`` names the plugin setting holding the shared
    secret; ``handler(call)`` gets a ``WebhookCall`` and returns a JSON-able reply, or None
    (204)."""

    plugin: str
    name: str
    secret: str
    handler: Callable[[WebhookCall], Any]


@dataclass(frozen=True)
class WebhookCall:
    """A signed call, as its handler sees it. ``principal`` is the system principal the
    handler acts as (``system:webhook:<plugin>.<name>``) when it writes records."""

    plugin: str
    name: str
    body: bytes
    headers: Mapping[str, str]
    timestamp: int
    principal: Principal
    query: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON; a body that is not JSON is the sender's mistake (400)."""
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BadRequest(f"the webhook body is not JSON: {error}") from None


class SignatureRefused(LoomError):
    status = 401
    type = "https://loom.dev/problems/webhook-signature"
    title = "Webhook signature refused"
    code = "unauthorized"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Loom-Signature`` value for ``body`` sent at ``timestamp``: what a sender
    (or a test) computes."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(header: str | None, body: bytes, secret: str, *, now: float | None = None) -> int:
    """Check a signature header; the signed timestamp, or ``SignatureRefused`` saying why.
    Several ``v1`` values may be sent (a sender rotating its secret): one must match."""
    if not header:
        raise SignatureRefused(f"the call is not signed: send {SIGNATURE_HEADER}: t=<unix time>,v1=<hex HMAC-SHA256 "
                               "of '<t>.' followed by the body>")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    stamp = (parts.get("t") or [""])[0]
    if not stamp.isdigit() or not parts.get("v1"):
        raise SignatureRefused(f"{SIGNATURE_HEADER} must read t=<unix time>,v1=<hex digest>")
    timestamp = int(stamp)
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureRefused(f"the signed timestamp is more than {TOLERANCE_SECONDS // 60} minutes from now; "
                               "sign each call when sending it")
    expected = sign(secret, body, timestamp).partition(",v1=")[2]
    # compare_digest on every candidate: the time taken says nothing about how much matched
    if not any(hmac.compare_digest(expected.encode("ascii"), candidate.encode("ascii", "replace"))
               for candidate in parts["v1"]):
        raise SignatureRefused("the signature does not match the body and timestamp")
    return timestamp


def collect(answers: Iterable[Any]) -> dict[tuple[str, str], Webhook]:
    """The webhooks plugins declare, by (plugin, name); two with one address are refused."""
    found: dict[tuple[str, str], Webhook] = {}
    for webhook in answers:
        if not isinstance(webhook, Webhook):
            raise TypeError(f"the webhooks hook must return loom.Webhook objects, not {webhook!r}")
        key = (webhook.plugin, webhook.name)
        if key in found:
            raise ValueError(f"two webhooks are declared at /hooks/{webhook.plugin}/{webhook.name}")
        found[key] = webhook
    return found


def _audit(webhook_principal: Principal, plugin: str, name: str, outcome: str, **detail: Any) -> None:
    current_app.extensions["loom"].audit.add_alone("webhook.receive", principal=webhook_principal,
                                                   outcome=outcome, detail={"plugin": plugin, "name": name, **detail})


def _secret(settings, plugin: str, key: str) -> str | None:
    """The webhook's secret from its plugin's settings; None when it is not set or cannot
    be read (sealed under another secret key: logged, for the admin to set it again)."""
    if plugin not in settings.schemas:
        return None
    try:
        return settings.values(plugin).get(key)
    except LoomError:
        log.exception("the secret of the webhooks of plugin %s cannot be read", plugin)
        return None


@webhooks.post("/hooks/<plugin>/<name>")
def receive(plugin: str, name: str):
    loom = current_app.extensions["loom"]
    webhook = loom.webhooks.get((plugin, name))
    if webhook is None:
        raise NotFound(f"there is no webhook at /hooks/{plugin}/{name}")
    principal = Principal.system(f"webhook:{plugin}.{name}")
    body = request.get_data(cache=True)
    try:
        secret = _secret(loom.settings, plugin, webhook.secret)
        if not secret:
            log.warning("webhook /hooks/%s/%s refused a call: its secret (setting %s.%s) is not set",
                        plugin, name, plugin, webhook.secret)
            raise SignatureRefused("this webhook has no secret configured yet, so no call can be accepted")
        timestamp = verify(request.headers.get(SIGNATURE_HEADER), body, secret)
        take_once(loom.engine, plugin, name, request.headers[SIGNATURE_HEADER])
    except (SignatureRefused, Replayed) as refusal:
        _audit(principal, plugin, name, "denied", reason=refusal.detail)
        raise
    call = WebhookCall(plugin, name, body, dict(request.headers), timestamp, principal, dict(request.args))
    try:
        reply = webhook.handler(call)
    except LoomError as error:
        _audit(principal, plugin, name, "denied", reason=error.detail, status=error.status)
        raise
    except Exception as error:
        _audit(principal, plugin, name, "error", error=type(error).__name__)
        raise
    _audit(principal, plugin, name, "ok", bytes=len(body))
    if reply is None:
        return "", 204
    if isinstance(reply, current_app.response_class):
        return reply
    return jsonify(reply)
