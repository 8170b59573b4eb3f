"""The record service's gate: what its caller may do with the entity, asked by the API,
the screens, imports and plugins alike, and the connections its work runs on. A refusal
met here is audited wherever it was asked. Part of the record service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from loom.db import open_write, reading, write_transaction
from loom.metadata.model import Entity
from loom.permissions import EntityAccess, Forbidden


class Gate:
    """The checks of ``RecordService`` (which sets the attributes used here)."""

    entity: Entity
    access: EntityAccess
    context: Any
    model: Any

    access_for: Callable[[Entity], EntityAccess]
    _log_refusal: Callable[..., None]

    def _access(self, entity: Entity | str | None) -> EntityAccess:
        if entity is None:
            return self.access
        return self.access_for(self.model.entity(entity) if isinstance(entity, str) else entity)

    def allowed(self, action: str, entity: Entity | str | None = None) -> bool:
        """Whether the caller may ``action`` (read, create, update, delete, export, import,
        ...) this entity, or ``entity`` (one of its child entities, whose rows follow it)."""
        return self._access(entity).allowed(action)

    def require(self, action: str, record_id: int | None = None) -> None:
        """Refuse with 403 unless the caller may ``action`` this entity; the refusal is
        audited (``record.<action>``, outcome denied) whoever asked."""
        try:
            self.access.require(action)
        except Forbidden as exc:
            self._log_refusal(action, exc, record_id)
            raise

    def refused(self, action: str, refusal: Exception, record_id: int | None = None) -> None:
        """Audit a refusal the caller met in work around the service (an upload, a screen's
        own check), as the service audits its own: once, as ``record.<action>`` denied."""
        self._log_refusal(action, refusal, record_id)

    def readable(self, entity: Entity | str | None = None) -> frozenset[str]:
        """The fields of this entity (or of one of its child entities) the caller may read."""
        return frozenset(self._access(entity).readable())

    def writable(self, action: str, entity: Entity | str | None = None) -> frozenset[str]:
        """The fields the caller may set when they ``action`` (create or update) a record."""
        return frozenset(self._access(entity).writable(action))

    # -- connections --------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[sa.Connection]:
        """The connection reads run on: the transaction the service was given or this
        thread has open (so a hook reads what its change wrote), else a reading one."""
        joined = self.context.connection or open_write(self.context.engine)
        if joined is not None:
            yield joined
            return
        with reading(self.context.engine) as conn:
            yield conn

    def _writing(self):
        """The transaction a write runs in: its own, or a savepoint in the one joined."""
        return write_transaction(self.context.engine, join=self.context.connection)
