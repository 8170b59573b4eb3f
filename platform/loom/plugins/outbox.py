"""The outbox reader: plugins consume outbox events through the ``outbox_consumers`` hook.

Each round claims the events that are due inside one write transaction (SQLite: the write
lock, so one deliverer at a time; PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so deliverers in
other processes take other events). Each event's consumers run in a savepoint of that
transaction: records a consumer writes through the record service join it, and commit
together with the event's "delivered" mark, or roll back alone when a consumer fails.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from loom.db import utcnow, write_transaction
from loom.events import outbox
from loom.plugins import plugin_name

log = logging.getLogger(__name__)

#: an event is dead after this many failed deliveries
MAX_ATTEMPTS = 8
#: the wait after the first failure; doubled after each further one, up to MAX_BACKOFF
FIRST_BACKOFF = dt.timedelta(seconds=30)
MAX_BACKOFF = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Event:
    """One outbox event, as a consumer receives it."""

    id: int
    topic: str
    entity: str | None
    record_id: int | None
    actor: str
    payload: dict[str, Any]
    created_at: dt.datetime
    #: failed deliveries so far (0 on the first)
    attempts: int


@dataclass(frozen=True)
class Consumer:
    """``handle(event)`` for events whose topic matches ``pattern`` (fnmatch: ``record.*``)."""

    plugin: str
    pattern: str
    handle: Callable[[Event], Any]

    def wants(self, topic: str) -> bool:
        return fnmatch.fnmatchcase(topic, self.pattern)


@dataclass
class Delivery:
    """What one round did, by event id."""

    delivered: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return len(self.delivered) + len(self.retried) + len(self.dead)


def consumers(manager) -> list[Consumer]:
    """Every plugin's consumers (``outbox_consumers`` hook), each checked."""
    found = []
    for impl in reversed(manager.hook.outbox_consumers.get_hookimpls()):
        plugin = plugin_name(manager, impl.plugin)
        for entry in impl.function() or ():
            if not (isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[0], str)
                    and callable(entry[1])):
                raise TypeError(f"outbox_consumers of {plugin} must return (topic pattern, callable) "
                                f"pairs, not {entry!r}")
            found.append(Consumer(plugin, entry[0], entry[1]))
    return found


def backoff(attempts: int) -> dt.timedelta:
    """The wait before the next try of an event that failed ``attempts`` times."""
    return min(FIRST_BACKOFF * 2 ** (attempts - 1), MAX_BACKOFF)


def _claim(conn: sa.Connection, now: dt.datetime, limit: int) -> list[sa.Row]:
    query = (sa.select(outbox).where(outbox.c.status == "pending", outbox.c.available_at <= now)
             .order_by(outbox.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(conn.execute(query))


def deliver_pending(engine: sa.Engine, manager, limit: int = 100, *, now: dt.datetime | None = None,
                    max_attempts: int = MAX_ATTEMPTS) -> Delivery:
    """Deliver up to ``limit`` due events (pending, ``available_at`` reached), oldest first,
    to every consumer whose pattern matches. An event all its consumers took is
    ``delivered`` (so is one no consumer wants); one a consumer failed on is tried again
    after a backoff, with ``last_error`` naming the plugin and error, and is ``dead`` after
    ``max_attempts`` failures. A retry calls every matching consumer again: consumers
    must be idempotent."""
    now = now or utcnow()
    registered = consumers(manager)
    report = Delivery()
    with write_transaction(engine) as conn:
        for row in _claim(conn, now, limit):
            event = Event(row.id, row.topic, row.entity, row.record_id, row.actor, row.payload, row.created_at,
                          row.attempts)
            failure = _run_consumers(conn, event, [c for c in registered if c.wants(event.topic)])
            if failure is None:
                conn.execute(outbox.update().where(outbox.c.id == event.id).values(status="delivered"))
                report.delivered.append(event.id)
                continue
            attempts = event.attempts + 1
            dead = attempts >= max_attempts
            conn.execute(outbox.update().where(outbox.c.id == event.id).values(
                attempts=attempts, last_error=failure[:2000], status="dead" if dead else "pending",
                available_at=now if dead else now + backoff(attempts)))
            (report.dead if dead else report.retried).append(event.id)
    return report


def _run_consumers(conn: sa.Connection, event: Event, wanted: list[Consumer]) -> str | None:
    """Run ``wanted`` on ``event`` in a savepoint; None when all took it, else what failed."""
    try:
        with conn.begin_nested():
            for consumer in wanted:
                try:
                    consumer.handle(event)
                except Exception as error:
                    log.exception("outbox consumer of %s failed on event %s (%s)", consumer.plugin, event.id,
                                  event.topic)
                    raise _ConsumerFailed(f"{consumer.plugin}: {type(error).__name__}: {error}") from error
    except _ConsumerFailed as failed:
        return str(failed)
    return None


class _ConsumerFailed(Exception):
    pass
