"""The checks a record write passes before it commits, and what a refused write may say:
it stays inside the writer's row scope, and a conflict names only what the caller may
read. Part of the record service."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from loom.errors import Conflict, ValidationError, error_entry
from loom.metadata.model import AppModel, Entity
from loom.permissions import EntityAccess
from loom.schema.tables import desired_indexes

_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")


class OutOfScope(ValidationError):
    """A write that would leave a record outside the rows its writer may reach with that
    action (a rep with scope ``own`` giving a customer to someone else)."""


class WriteGuards:
    """Scope and conflict checks for ``RecordService`` (which sets the attributes used here)."""

    access: EntityAccess
    context: Any
    entity: Entity
    model: AppModel
    table: sa.Table

    def _integrity(self, exc: sa.exc.IntegrityError, attempted: Mapping[str, Any] | None = None) -> Conflict:
        """Turn a database constraint violation into a 409 naming the field, when the caller
        may read every field of the constraint. Only a record the caller may read is
        named; of any other, the reply says no more than that the value is in use."""
        names: list[str] = []
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if constraint:
            for index_name, (columns, _unique) in desired_indexes(self.entity).items():
                if index_name == constraint:
                    names = [c for c, _ in columns]
        else:
            match = _SQLITE_UNIQUE.search(str(exc.orig))
            if match:
                names = [part.strip().split(".")[-1] for part in match.group(1).split(",")]
        if not names or not set(names) <= self.access.readable():
            return Conflict("the change conflicts with other records")
        label = ", ".join(names)
        holder = self._visible_holder(names, attempted)
        if holder is None:
            return Conflict(f"this {label} is already in use; choose another", code="unique",
                            errors=[error_entry(n, "unique", "must be unique; this value is already in use")
                                    for n in names])
        entity = self.entity.name
        return Conflict(f"{entity} {holder} already has this {label}", code="unique",
                        params={"entity": entity, "holder": holder},
                        errors=[error_entry(n, "unique", f"must be unique; {entity} {holder} has this value",
                                            entity=entity, holder=holder) for n in names])

    def _visible_holder(self, names: Sequence[str], attempted: Mapping[str, Any] | None) -> int | None:
        """The id of a record the caller may read that holds ``attempted``'s values of
        ``names``, if there is one."""
        if attempted is None or any(attempted.get(n) is None for n in names) or not self.access.allowed("read"):
            return None
        where = [self.table.c[n] == attempted[n] for n in names]
        if attempted.get("id") is not None:
            where.append(self.table.c.id != attempted["id"])
        with self._reading() as conn:
            return conn.execute(sa.select(self.table.c.id).where(*where, *self._scope(self.access, self.table, "read"))
                                .limit(1)).scalar()

    def _refuse_out_of_scope(self, conn: sa.Connection, action: str, ids: Sequence[int],
                             written: Sequence[Iterable[str]], *, indexed: bool = False) -> None:
        """Refuse a write that leaves a stored record outside the rows the caller may
        ``action``: checked on the rows as stored, in SQL, so it holds for every scope
        (own, team, a condition) and whatever hooks changed. Names the fields the scope
        depends on that the write set (all of them if it set none)."""
        scope = self._scope(self.access, self.table, action)
        if not scope or not ids:
            return
        inside = sa.func.coalesce(scope[0], sa.false())
        # a range rather than an IN list: a batch of any size is one short statement
        found = conn.execute(sa.select(self.table.c.id).where(self.table.c.id.between(min(ids), max(ids)),
                                                              sa.not_(inside))).scalars()
        outside = set(found) & set(ids)
        if not outside:
            return
        readable = self.access.readable()
        deciding = [name for name in self._columns_of(scope[0]) if name in readable]
        what = f"this {self.entity.name} outside the records you may {action}"
        errors = []
        for i, (record_id, names) in enumerate(zip(ids, written, strict=True)):
            if record_id not in outside:
                continue
            prefix = f"[{i}]." if indexed else ""
            culprits = [n for n in deciding if n in set(names)] or deciding or [""]
            errors += [error_entry((prefix + n).rstrip("."), "outside_scope", f"would put {what}",
                                   entity=self.entity.name, action=action) for n in culprits]
        raise OutOfScope(f"this change would put {what}; you may not move records out of your reach",
                         code="outside_scope", params={"entity": self.entity.name, "action": action}, errors=errors)

    def _columns_of(self, clause: sa.ColumnElement) -> list[str]:
        """The names of this entity's columns a SQL condition reads, in order."""
        names: list[str] = []
        for element in visitors.iterate(clause):
            if isinstance(element, sa.Column) and element.table is self.table and element.name not in names:
                names.append(element.name)
        return names

    def _refuse_if_linked(self, conn: sa.Connection, record_id: int) -> None:
        """Refuse (409) to delete a record others link to. Links the caller may read are
        counted and named, so they can be changed first; of links in records the caller
        cannot read, the reply says only that there are some."""
        hidden = False
        for entity, f in self.model.links_to(self.entity.name):
            table = self.context.live.tables[entity.name]
            linking = table.c[f.name] == record_id
            if conn.execute(sa.select(sa.literal(1)).where(linking).limit(1)).first() is None:
                continue
            visible = self._readable_links(entity, f.name, table)
            count = 0 if visible is None else conn.execute(
                sa.select(sa.func.count()).select_from(table).where(linking, *visible)).scalar_one()
            if not count:
                hidden = True
                continue
            where = entity.name if not entity.child else f"{self.model.parents[entity.name][0].name} lines"
            raise Conflict(f"{count} {where} record(s) still link to this {self.entity.name} "
                           f"through '{f.name}'; change or delete them first", code="still_linked",
                           params={"count": count, "entity": entity.name, "field": f.name})
        if hidden:
            raise Conflict(f"other records still link to this {self.entity.name}; it cannot be deleted while they do",
                           code="still_linked_unseen", params={"entity": self.entity.name})

    def _readable_links(self, entity: Entity, field: str, table: sa.Table) -> list[sa.ColumnElement[bool]] | None:
        """The condition for rows of ``entity`` whose link ``field`` the caller may read
        (for child rows: rows of parents the caller may read); None when there are none."""
        access = self.access_for(entity)
        if not access.allowed("read") or field not in access.readable():
            return None
        if not entity.child:
            return self._scope(access, table, "read")
        parent = self.model.parents[entity.name][0]
        parents = self.context.live.tables[parent.name]
        scope = self._scope(self.access_for(parent), parents, "read")
        return [table.c.parent_id.in_(sa.select(parents.c.id).where(*scope))] if scope else []
