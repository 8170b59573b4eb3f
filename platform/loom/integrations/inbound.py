"""The ``webhook.handle`` action: the worker's run of a stored inbound call's handler.

Every accepted call of a webhook with a handler is stored with a delivery of this action
(``loom.plugins.webhooks``): a standby the request removes once its handler ends, made due
at once when the handler fails, and left for the worker when the process dies before the
handler ends. The action rebuilds the call from its stored row (body, harmless headers,
query, signed time) and runs the handler as the webhook's system principal. A handler
that refuses the call (a ``LoomError``: the sender's mistake) is a permanent failure and
the call is ``refused``; any other exception is tried again, the call staying ``queued``.
A replayed delivery (deliveries admin) runs the handler again even on a handled call.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from loom.db import reading
from loom.errors import LoomError
from loom.integrations.actions import Action, ActionCall, PermanentFailure, register_action
from loom.plugins.webhooks import (
    ERROR_WIDTH,
    HANDLE_ACTION,
    WebhookCall,
    handler_key,
    inbound_calls,
    principal_of,
    record_outcome,
    storable_reply,
)


def handle(call: ActionCall) -> Any:
    """Run the handler of the stored call ``arguments["inbound_id"]``; what it replied."""
    inbound_id = call.arguments.get("inbound_id")
    own = handler_key(inbound_id) if isinstance(inbound_id, int) else None
    replayed = own is not None and call.idempotency_key.startswith(own + ":replay:")
    if own is None or not (call.idempotency_key == own or replayed):
        raise PermanentFailure(f"{HANDLE_ACTION} runs only the deliveries Loom writes for the inbound calls it "
                               "stores, not a rule's")
    loom = call.app.extensions["loom"]
    with reading(loom.engine) as conn:
        row = conn.execute(sa.select(inbound_calls).where(inbound_calls.c.id == inbound_id)).first()
    if row is None:
        raise PermanentFailure(f"there is no inbound call {inbound_id}")
    if row.status in ("handled", "refused") and not replayed:  # the request's own run ended after all
        return {"inbound_id": inbound_id, "status": row.status}
    webhook = loom.webhooks.get((row.plugin, row.name))
    if webhook is None or webhook.handler is None:
        raise PermanentFailure(f"there is no webhook handler at /hooks/{row.plugin}/{row.name} any more "
                               "(was its plugin turned off?)")
    received = WebhookCall(row.plugin, row.name, bytes(row.body), dict(row.headers or {}), row.signed_at,
                           principal_of(row.plugin, row.name), dict(row.query or {}), inbound_id)
    try:
        reply = webhook.handler(received)
    except LoomError as error:
        record_outcome(loom.engine, inbound_id, "refused", error=error.detail)
        raise PermanentFailure(f"the handler refused the call: {error.detail}"[:ERROR_WIDTH]) from None
    except Exception as error:
        record_outcome(loom.engine, inbound_id, "queued", error=type(error).__name__)
        raise
    stored = storable_reply(reply)
    record_outcome(loom.engine, inbound_id, "handled", reply=stored)
    return stored


register_action(Action(HANDLE_ACTION, handle, description="Run a webhook's handler on a stored inbound call",
                       arguments={"type": "object", "properties": {"inbound_id": {"type": "integer", "minimum": 1}},
                                  "required": ["inbound_id"], "additionalProperties": False}))
