"""The public door to entity records: ``loom.record_service(entity, principal, connection)``.

The API, the screens, imports, the seed, comments, history and plugins all enter here, so
that every one of them passes the same permission checks, validation, hooks, outbox and
audit log. Given a connection, the service works inside that transaction: its writes are
savepoints that commit or roll back with it, and its reads see what it wrote.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g, has_app_context, has_request_context

from loom.errors import LoomError
from loom.permissions import Policy
from loom.principal import Principal
from loom.records.service import Context, RecordService


def record_context(principal: Principal | None = None, connection: sa.Connection | None = None, *,
                   app: Any = None) -> Context:
    """What a record service runs with: the app's live metadata and its permissions, the
    plugins, and who acts (by default the principal signed in to this request). ``app``
    is the Flask app (or its ``extensions['loom']``); by default the current one."""
    if app is None:
        if not has_app_context():
            raise LoomError("record_service needs the Loom app: call it inside the app's context "
                            "(with app.app_context():) or pass app=")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    loom: Any = app.extensions["loom"] if isinstance(app, Flask) else app
    if principal is None:
        principal = g.get("principal") if has_request_context() else None
        if principal is None:
            raise LoomError("record_service needs to know who acts: pass principal= (a user's "
                            "Principal, or Principal.system('your-plugin') for work of your own)")
    live = loom.metadata.live()
    return Context(engine=loom.engine, live=live, principal=principal, hooks=loom.plugins.hook,
                   cursors=loom.cursors, page_size=loom.page_size, max_page_size=loom.max_page_size,
                   policy=live.derive("policy", lambda: Policy(live.model)), audit=loom.audit,
                   connection=connection, time_zone=loom.time_zone)


def record_service(entity: str, principal: Principal | None = None, connection: sa.Connection | None = None,
                   *, app: Any = None) -> RecordService:
    """The record service of ``entity`` for ``principal`` (by default the signed-in one):
    only the actions, rows and fields its roles allow, every operation audited. With
    ``connection``, it works inside that connection's transaction (writes as savepoints,
    ``after_record_commit`` once the outermost transaction commits)."""
    return RecordService(record_context(principal, connection, app=app), entity)


__all__ = ["record_context", "record_service"]
