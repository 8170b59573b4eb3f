"""The transactional outbox: an event row per change, written in the same transaction as
the change; ``loom.plugins.outbox`` delivers them to plugins' consumers after commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, BigId, insert_many, utcnow


class OutboxEvent(Base):
    __tablename__ = "loom_outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    #: e.g. record.created, record.updated, record.deleted, metadata.published
    topic: Mapped[str] = mapped_column(sa.String(100), index=True)
    entity: Mapped[str | None] = mapped_column(sa.String(100))
    record_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    actor: Mapped[str] = mapped_column(sa.String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    #: pending -> delivered, or dead after too many failures
    status: Mapped[str] = mapped_column(sa.String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    available_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


outbox = OutboxEvent.__table__
#: built once, so writing an event does not build and key a new statement every time
_INSERT = outbox.insert()


def emit(connection: sa.Connection, *, topic: str, actor: str, payload: dict[str, Any],
         entity: str | None = None, record_id: int | None = None) -> None:
    """Write one event in the caller's transaction."""
    emit_many(connection, topic=topic, actor=actor, entity=entity, events=[(record_id, payload)])


def emit_many(connection: sa.Connection, *, topic: str, actor: str, entity: str | None,
              events: Sequence[tuple[int | None, dict[str, Any]]]) -> None:
    """Write one event per ``(record_id, payload)`` in the caller's transaction, with one
    statement for all of them (a bulk create of 1,000 records writes 1,000 events); they
    are delivered in the order given."""
    if not events:
        return
    now = utcnow()
    insert_many(connection, outbox, [{"created_at": now, "topic": topic, "entity": entity, "record_id": record_id,
                                  "actor": actor, "payload": payload, "status": "pending", "attempts": 0,
                                  "available_at": now} for record_id, payload in events], _INSERT)
