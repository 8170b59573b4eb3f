"""Inbound webhooks: public endpoints a plugin declares (``webhooks`` hook), served at
``POST /hooks/<plugin>/<name>``. They take no session or token (so no CSRF check either):
each call proves itself with an HMAC-SHA256 signature over its timestamp and body, made
with a secret held in the plugin's settings. Unsigned, wrongly signed and stale calls are
refused with 401, and a signed call is taken once: the same call sent again (a replay of a
captured request, within the minutes its timestamp is accepted) is refused with 409.
Every call, refused or not, is audited.

A call that passes is stored before anything else happens (``loom_inbound_calls``), in one
transaction with its receipt, one delivery for each enabled rule triggered by the webhook,
and a standby delivery of the webhook's handler (``webhook.handle``, due five minutes
later). Only once that transaction commits is the call answered with a 2xx, so an answered
call is never lost. The handler then runs at once, in the request: when it ends, its
outcome is recorded and the standby removed; when it fails, the standby is made due in 30
seconds and the worker runs the handler again. A process that dies while the handler runs
leaves the standby, which the worker runs five minutes later."""

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

from loom.db import Base, BigId, after_commit, utcnow, write_transaction
from loom.errors import BadRequest, Conflict, LoomError, NotFound
from loom.integrations import triggers
from loom.integrations.context import wake_workers
from loom.integrations.models import deliveries
from loom.principal import Principal

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Loom-Signature"
#: how old (or how far ahead of our clock) a signed timestamp may be
TOLERANCE_SECONDS = 300
#: the headers of a call that are stored and handed to rules: none that proves or grants anything
KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Request-Id", "Idempotency-Key", "X-Loom-Delivery")
#: every status a stored call can be in: ``received`` (no handler: its rules' deliveries do
#: the work), ``handled``, ``refused`` (the handler said no: the sender's mistake), ``queued``
#: (the handler failed; the worker runs it again)
STATUSES = ("received", "handled", "refused", "queued")
#: the action of a handler's delivery (``loom.integrations.inbound``)
HANDLE_ACTION = "webhook.handle"
#: when the standby delivery of a handler is due if the handler never ends (the process died)
STANDBY_DELAY = dt.timedelta(minutes=5)
#: when the worker first tries a handler that failed in the request again
RETRY_DELAY = dt.timedelta(seconds=30)
#: attempts the worker makes at a handler, after the one in the request
HANDLER_ATTEMPTS = 8
#: longest error text kept on a handler's delivery
ERROR_WIDTH = 2000

webhooks = Blueprint("webhooks", __name__)


class WebhookReceipt(Base):
    """A signed call taken, by its signature, kept while its timestamp would be accepted."""

    __tablename__ = "loom_webhook_receipts"

    #: SHA-256 of the webhook's address and the call's signature header
    signature: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)


receipts = WebhookReceipt.__table__


class InboundCall(Base):
    """A signed call accepted, stored before it is handled: what the sender sent (its
    signature and any credential left out) and what came of it."""

    __tablename__ = "loom_inbound_calls"
    __table_args__ = (sa.Index("ix_loom_inbound_calls_webhook", "plugin", "name", "received_at"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    plugin: Mapped[str] = mapped_column(sa.String(100))
    name: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    content_type: Mapped[str | None] = mapped_column(sa.String(200))
    #: the headers named in ``KEPT_HEADERS`` the call had
    headers: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    #: the query string's parameters
    query: Mapped[dict[str, str]] = mapped_column(sa.JSON)
    #: the unix time the sender signed
    signed_at: Mapped[int] = mapped_column(sa.BigInteger)
    #: one of ``STATUSES``
    status: Mapped[str] = mapped_column(sa.String(20))
    #: what the handler answered (JSON), once handled
    reply: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    #: why the handler refused the call, or the type of the exception it failed with
    error: Mapped[str | None] = mapped_column(sa.Text)
    handled_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


inbound_calls = InboundCall.__table__


class Replayed(Conflict):
    title = "Webhook call received already"
    code = "conflict"


class NotStored(LoomError):
    status = 503
    type = "https://loom.dev/problems/webhook-not-stored"
    title = "Webhook call not stored"
    code = "not_stored"


def take_once(conn: sa.Connection, plugin: str, name: str, header: str, now: dt.datetime) -> None:
    """Record a verified call in the caller's transaction, refusing (409) one taken already.
    Receipts older than the accepted clock difference (both ways) are dropped: such a call
    fails the time check. A receipt is kept only if the transaction commits."""
    key = hashlib.sha256(f"{plugin}/{name}/{header.strip()}".encode()).hexdigest()
    conn.execute(receipts.delete().where(receipts.c.received_at < now - dt.timedelta(seconds=2 * TOLERANCE_SECONDS)))
    try:
        conn.execute(receipts.insert().values(signature=key, received_at=now))
    except sa.exc.IntegrityError:  # the caller's transaction rolls back
        raise Replayed("this call was received already; a sender signs each call it sends anew") from None


@dataclass(frozen=True)
class Webhook:
    """An inbound webhook of ``plugin`` (the name its settings are declared under), served
    at ``/hooks/<plugin>/<name>``. ``secret`` names the plugin setting holding the shared
    secret; ``handler(call)`` gets a ``WebhookCall`` and returns a JSON-able reply, or None
    (204). A webhook without a handler only stores its calls for the rules it triggers
    (202)."""

    plugin: str
    name: str
    secret: str
    handler: Callable[[WebhookCall], Any] | None = None


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
    #: the id of the stored call (``loom_inbound_calls``)
    id: int | None = None

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


# -- storing a call ----------------------------------------------------------------------

def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers of a call that are stored: those in ``KEPT_HEADERS`` it has."""
    return {name: headers[name] for name in KEPT_HEADERS if headers.get(name) is not None}


def principal_of(plugin: str, name: str) -> Principal:
    """The system principal a webhook's handler acts as."""
    return Principal.system(f"webhook:{plugin}.{name}")


def handler_key(call_id: int) -> str:
    """The idempotency key of the delivery of a stored call's handler."""
    return f"{HANDLE_ACTION}:inbound:{call_id}"


def parsed_body(body: bytes) -> Any:
    """A call's body as rules see it: its JSON, or ``{"text": ...}`` when it is not JSON."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"text": body.decode("utf-8", "replace")}


def _rules_by_webhook(model: Any) -> dict[str, tuple[Any, ...]]:
    found: dict[str, tuple[Any, ...]] = {}
    for rule in model.of_kind("rule").values():
        if rule.enabled and rule.trigger.event == "webhook" and rule.trigger.webhook:
            found[rule.trigger.webhook] = (*found.get(rule.trigger.webhook, ()), rule)
    return found


def webhook_rules(loom: Any, plugin: str, name: str) -> tuple[Any, ...]:
    """The enabled rules of the live metadata triggered by the webhook ``plugin/name``."""
    live = loom.metadata.live()
    return live.derive("webhook_rules", lambda: _rules_by_webhook(live.model)).get(f"{plugin}/{name}", ())


def _handler_delivery(call_id: int, plugin: str, name: str, now: dt.datetime) -> dict[str, Any]:
    """The ``loom_deliveries`` row that runs the handler of a stored call: a standby, due
    once the handler had ample time to end in the request."""
    return {"created_at": now, "rule": f"webhook:{plugin}/{name}"[:100], "trigger": "webhook",
            "action": HANDLE_ACTION, "plugin": plugin, "entity": None, "record_id": None,
            "context": {"inbound_id": call_id, "with": {"inbound_id": call_id}, "chain": []},
            "run_as": principal_of(plugin, name).name, "depth": 0, "idempotency_key": handler_key(call_id),
            "status": "pending", "attempts": 0, "max_attempts": HANDLER_ATTEMPTS, "backoff": "exponential",
            "backoff_seconds": int(RETRY_DELAY.total_seconds()), "available_at": now + STANDBY_DELAY,
            "lease_owner": None, "lease_until": None, "last_error": None, "result": None, "finished_at": None}


def store(loom: Any, webhook: Webhook, *, signature: str, body: bytes, content_type: str | None,
          headers: Mapping[str, str], query: Mapping[str, str], timestamp: int) -> int:
    """Store a verified call, in one transaction: its receipt (refusing a replay), the call,
    a delivery for each rule the webhook triggers and the standby of its handler. The id of
    the stored call."""
    plugin, name = webhook.plugin, webhook.name
    now = utcnow()
    kept = kept_headers(headers)
    rules = webhook_rules(loom, plugin, name)
    with write_transaction(loom.engine) as conn:
        take_once(conn, plugin, name, signature, now)
        call_id = conn.execute(inbound_calls.insert().values(
            received_at=now, plugin=plugin, name=name, body=body, content_type=content_type, headers=kept,
            query=dict(query), signed_at=timestamp, status="received",
            reply=None, error=None, handled_at=None)).inserted_primary_key[0]
        if rules:
            payload = parsed_body(body)
            triggers.write(conn, [
                triggers.delivery_row(rule, "webhook", None,
                                      {"body": payload, "headers": kept, "inbound_id": call_id,
                                       "with": triggers.plain_data(rule.arguments), "chain": []},
                                      f"{rule.name}:inbound:{call_id}", now)
                for rule in rules])
            after_commit(conn, wake_workers)
        if webhook.handler is not None:
            triggers.write(conn, [_handler_delivery(call_id, plugin, name, now)])
    return call_id


def storable_reply(reply: Any) -> Any:
    """A handler's reply as the stored call keeps it: JSON as it is, a response's JSON
    body, anything else as text."""
    if reply is None:
        return None
    if isinstance(reply, current_app.response_class):
        return reply.get_json(silent=True)
    try:
        json.dumps(reply)
    except (TypeError, ValueError):
        return str(reply)
    return reply


def record_outcome(engine: sa.Engine, call_id: int, status: str, *, reply: Any = None, error: str | None = None,
                   standby: str | None = None, failure: str | None = None) -> None:
    """Record what came of a stored call's handler (``handled``, ``refused`` or ``queued``).
    ``standby``: ``"drop"`` removes the handler's delivery (the handler ended; one a worker
    has claimed already is left to find the call handled), ``"soon"`` makes it due in 30
    seconds with ``failure`` as its last error."""
    now = utcnow()
    values: dict[str, Any] = {"status": status, "error": error}
    if status in ("handled", "refused"):
        values.update(reply=reply, handled_at=now)
    with write_transaction(engine) as conn:
        conn.execute(inbound_calls.update().where(inbound_calls.c.id == call_id).values(**values))
        waiting = sa.and_(deliveries.c.idempotency_key == handler_key(call_id), deliveries.c.status == "pending",
                          deliveries.c.attempts == 0)
        if standby == "drop":
            conn.execute(deliveries.delete().where(waiting))
        elif standby == "soon":
            conn.execute(deliveries.update().where(waiting).values(available_at=now + RETRY_DELAY,
                                                                  last_error=failure or error))
            after_commit(conn, wake_workers)


# -- the endpoint ------------------------------------------------------------------------

def _record(engine: sa.Engine, call_id: int, status: str, **outcome: Any) -> None:
    """``record_outcome`` for the request: a failure to record is logged, not answered,
    since the call is stored and its standby runs the handler again if need be."""
    try:
        record_outcome(engine, call_id, status, **outcome)
    except Exception:
        log.exception("the outcome (%s) of inbound call %s could not be recorded; its standby delivery runs "
                      "the handler again", status, call_id)


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
    principal = principal_of(plugin, name)
    body = request.get_data(cache=True)
    try:
        secret = _secret(loom.settings, plugin, webhook.secret)
        if not secret:
            log.warning("webhook /hooks/%s/%s refused a call: its secret (setting %s.%s) is not set",
                        plugin, name, plugin, webhook.secret)
            raise SignatureRefused("this webhook has no secret configured yet, so no call can be accepted")
        timestamp = verify(request.headers.get(SIGNATURE_HEADER), body, secret)
        call_id = store(loom, webhook, signature=request.headers[SIGNATURE_HEADER], body=body,
                        content_type=request.content_type, headers=request.headers, query=request.args,
                        timestamp=timestamp)
    except (SignatureRefused, Replayed) as refusal:
        _audit(principal, plugin, name, "denied", reason=refusal.detail)
        raise
    except Exception as error:
        log.exception("webhook /hooks/%s/%s: a call could not be stored", plugin, name)
        _audit(principal, plugin, name, "error", error=type(error).__name__, stored=False)
        raise NotStored("the call could not be stored, so it was not taken; send it again") from None
    if webhook.handler is None:
        _audit(principal, plugin, name, "ok", id=call_id, bytes=len(body), status="received")
        return jsonify({"id": call_id, "status": "received"}), 202
    call = WebhookCall(plugin, name, body, dict(request.headers), timestamp, principal, dict(request.args), call_id)
    try:
        reply = webhook.handler(call)
    except LoomError as error:
        _record(loom.engine, call_id, "refused", error=error.detail, standby="drop")
        _audit(principal, plugin, name, "denied", id=call_id, reason=error.detail, status=error.status)
        raise
    except Exception as error:
        log.exception("webhook /hooks/%s/%s: the handler failed on call %s; the worker tries it again", plugin,
                      name, call_id)
        _record(loom.engine, call_id, "queued", error=type(error).__name__, standby="soon",
                failure=f"{type(error).__name__}: {error}"[:ERROR_WIDTH])
        _audit(principal, plugin, name, "error", id=call_id, error=type(error).__name__, status="queued")
        return jsonify({"id": call_id, "status": "queued"}), 202
    _record(loom.engine, call_id, "handled", reply=storable_reply(reply), standby="drop")
    _audit(principal, plugin, name, "ok", id=call_id, bytes=len(body))
    if reply is None:
        return "", 204
    if isinstance(reply, current_app.response_class):
        return reply
    return jsonify(reply)
