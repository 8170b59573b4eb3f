"""The audit entry of a refusal that reaches an error handler without one, for the API and
the screens alike: a screen's 403 is logged exactly as the API's.

A refusal of an action on an entity (``EntityAccess.require``) carries the action and the
entity, and is logged as the record service logs its own: ``record.<action>`` with the
entity, the record id of the request and the reason. Any other refusal (administration,
the audit log) is logged as ``access`` with the method, path and reason.
"""

from __future__ import annotations

from flask import current_app, g, request

from loom.errors import LoomError


def log_refusal(exc: LoomError) -> None:
    """Log ``exc`` (a 403) as refused for the signed-in principal, once."""
    if exc.status != 403 or getattr(exc, "audited", False) or g.get("principal") is None:
        return
    audit = current_app.extensions["loom"].audit
    action, entity = getattr(exc, "action", None), getattr(exc, "entity", None)
    if action and entity:
        record_id = (request.view_args or {}).get("record_id")
        audit.add_alone(f"record.{action}", principal=g.principal, entity=entity,
                        record_id=record_id if isinstance(record_id, int) else None, outcome="denied",
                        detail={"reason": exc.detail})
    else:
        audit.add_alone("access", principal=g.principal, outcome="denied",
                        detail={"method": request.method, "path": request.path, "reason": exc.detail})
    exc.audited = True
