"""Which delivery is running in this thread: set by the worker around an action, read
where the action's own writes trigger rules, so a rule's writes do not retrigger rules
past their declared depth."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Running:
    """The delivery an action runs for: its rule, its depth, and the rules before it."""

    delivery_id: int
    rule: str
    depth: int
    #: the rules whose deliveries led here, first to last (this one's included)
    chain: tuple[str, ...]


_running: ContextVar[Running | None] = ContextVar("loom_running_delivery", default=None)


def running() -> Running | None:
    """The delivery whose action runs now in this context, if any."""
    return _running.get()


@contextmanager
def running_delivery(delivery_id: int, rule: str, depth: int, chain: tuple[str, ...] = ()) -> Iterator[Running]:
    """Mark the actions run inside as the delivery's."""
    current = Running(delivery_id, rule, depth, (*chain, rule))
    token = _running.set(current)
    try:
        yield current
    finally:
        _running.reset(token)


#: set when a commit wrote deliveries, so a worker in this process starts on them at once
#: instead of at its next poll
DELIVERIES_WRITTEN = threading.Event()


def wake_workers() -> None:
    DELIVERIES_WRITTEN.set()
