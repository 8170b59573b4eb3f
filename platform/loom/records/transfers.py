"""Every record of one user, across entities: how many the caller could transfer, and
moving them all to another user in one transaction (a departing employee's customers,
contacts and orders). Each entity's records move through its record service's
``transfer_all`` (``loom.records.ownership``), with the caller's own permissions: only the
entities they may transfer, only the records in their update scope."""

from __future__ import annotations

from typing import Any

from loom.db import write_transaction
from loom.permissions import Forbidden
from loom.records.service import Context, RecordService


def _transferable(context: Context) -> list[RecordService]:
    """A record service for every entity the caller may transfer records of."""
    services = [RecordService(context, e.name) for e in context.live.model.entities.values() if not e.child]
    return [s for s in services if s.allowed("transfer") and s.allowed("update")]


def owned_counts(context: Context, user: Any) -> dict[str, int]:
    """Per entity the caller may transfer: how many of ``user``'s records they could
    transfer (entities without any left out)."""
    counts = {s.entity.name: s.owned_count(user) for s in _transferable(context)}
    return {name: n for name, n in counts.items() if n}


def transfer_everything(context: Context, from_user: Any, to: Any) -> dict[str, int]:
    """Give every record of ``from_user`` the caller may transfer, of every entity, to
    ``to`` in one transaction; returns how many moved per entity (none: nothing to do)."""
    services = _transferable(context)
    if not services:
        raise Forbidden("you may not transfer records of any entity", code="forbidden_action",
                        params={"action": "transfer", "entity": "*"})
    moved = {}
    with write_transaction(context.engine, join=context.connection):
        for service in services:
            n = service.transfer_all(from_user, to)
            if n:
                moved[service.entity.name] = n
    return moved
