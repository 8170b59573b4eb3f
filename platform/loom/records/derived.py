"""Values Loom keeps up to date across records: roll-ups over linked records
(``rollup: {from: service_ticket.customer, count: true}``) and computed fields marked
``depends_on_links`` (``credit_left: {compute: "customer.credit_limit - amount"}``).

Every create, update, delete and bulk create of a record service ends here, once its own
change is written (``recompute_derived``). What the change touched decides what is
recomputed: for a roll-up, the parents the source records link to, before and after the
write (a ticket moved from customer A to B changes both), where the link, the aggregated
field or a field its ``where`` reads changed; for ``depends_on_links``, the records that
read a changed field through their links (for a path of several links, the records at
each hop); for a roll-up over child rows of another entity (order lines summed per
product), the records the rows written link to, before and after. Roll-ups of a record
over its own child rows are worked out by the write itself (``loom.records.logic``), from
the rows it is given.

Why in the same transaction: a roll-up that lags behind its records would be a value
nobody can trust; a write that commits with its derived values, or not at all, keeps them
equal to what a query over the records gives. The cost is paid by the writer: one SQL
aggregate (``SELECT link, SUM(...) ... GROUP BY link``) per batch of up to 500 parents,
one statement updating the changed parents, and their events and audit entries
(docs/benchmarks.md, "Roll-ups", measures it). On PostgreSQL the parents are locked
(``FOR NO KEY UPDATE``, in id order) before their aggregate is read, so two writers adding tickets
to one customer at once both count.

A parent changed this way is really changed: its ``version`` goes up, ``updated_at`` and
``updated_by`` are set, and it passes the record service's commit step as an update
(event, hooks, audit entry), marked ``recomputed_because``. The change is made as the
writer, without the writer's permissions: a user who may create a ticket but not read its
customer still keeps the customer's count right, and the reply to them holds nothing of it.
A parent changed in turn feeds what reads it (a cascade), followed with a worklist; the
metadata refuses circles among these fields (``loom.expressions.rollups``), so it ends.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from loom.db import utcnow
from loom.errors import Conflict, ValidationError, error_entry
from loom.expressions import dialects
from loom.expressions.rollups import Dependencies, LinkDependency, dependencies
from loom.expressions.sql import table_resolver
from loom.metadata.model import Entity, Field
from loom.records.logic import Unevaluable, WriteLogic, _stored
from loom.records.memory import note_write

#: records recomputed per statement (parents of one aggregate, rows of one update)
BATCH = 500
#: changed records followed before the cascade is taken for a circle (the metadata refuses
#: circles, so only a bug gets there)
MAX_STEPS = 100_000
#: PostgreSQL's SQLSTATE for a deadlock it broke
DEADLOCK = "40P01"
#: ids named in ``recomputed_because`` (an update of 10,000 tickets names the first ones)
NAMED_IDS = 100

Rows = Sequence[Mapping[str, Any]]


def recompute_derived(service: Any, conn: sa.Connection, before: Rows | None, after: Rows | None, *,
                      records: tuple[Rows | None, Rows | None] = (None, None)) -> None:
    """After ``service`` wrote records of its entity (``before``/``after``: the rows as
    stored, None for a create's before and a delete's after; ``records``: the same as
    full JSON records, with their child rows), recompute what reads them."""
    found = service.context.live.derive("derived:dependencies", lambda: dependencies(service.model))
    if not found.concern(service.entity.name):
        return
    try:
        Recompute(service, conn, found).run(service.entity.name, before, after, records)
    except sa.exc.OperationalError as exc:
        # two writers locking the same records from opposite ends (a customer's update
        # recomputing its tickets, a ticket's update recomputing its customer): PostgreSQL
        # ends one of them; that write is refused as a conflict, to be sent again
        if getattr(exc.orig, "sqlstate", None) != DEADLOCK:
            raise
        raise Conflict("records this change recomputes were being changed at the same time by another write; "
                       "nothing was saved: send it again", code="derived_conflict",
                       params={"entity": service.entity.name}) from exc


@dataclasses.dataclass
class _Task:
    """Records of ``entity`` to recompute: the roll-ups ``rollups`` and the computed fields
    ``computes`` (and what reads them), because records ``cause_ids`` of ``cause`` changed."""

    entity: str
    ids: set[int]
    rollups: tuple[Field, ...]
    computes: frozenset[str]
    cause: str
    cause_ids: set[int]


def _pairs(before: Rows | None, after: Rows | None) -> list[tuple[Mapping | None, Mapping | None]]:
    if before is None:
        return [(None, row) for row in after or ()]
    if after is None:
        return [(row, None) for row in before]
    return list(zip(before, after, strict=True))


def _batches(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), BATCH):
        yield list(ids[start:start + BATCH])


class Recompute:
    """The recompute that follows one write: a worklist of changed records."""

    def __init__(self, service: Any, conn: sa.Connection, found: Dependencies):
        self.service, self.conn, self.found = service, conn, found
        self.model = service.model
        self.tables = service.context.live.tables
        self.principal = service.principal
        # derived writes: the same actor, in the same transaction, without permission checks
        self.context = dataclasses.replace(service.context, policy=None, connection=conn)
        self.services: dict[str, Any] = {}
        self.now = utcnow()

    def run(self, entity: str, before: Rows | None, after: Rows | None,
            records: tuple[Rows | None, Rows | None] = (None, None)) -> None:
        work: deque[tuple[str, Rows | None, Rows | None]] = deque([(entity, before, after)])
        steps = 0
        first = True
        while work:
            name, old, new = work.popleft()
            steps += len(new or old or ())
            if steps > MAX_STEPS:
                raise RuntimeError("roll-ups and computed fields did not settle; the metadata has a circle")
            tasks = self.tasks(name, old, new)
            if first:  # the write's own child rows (a derived change never writes any)
                tasks += self.row_tasks(name, *records)
                first = False
            for task in tasks:
                for changed_before, changed_after in self.refresh(task):
                    if self.found.concern(task.entity):
                        work.append((task.entity, changed_before, changed_after))

    # -- what a change touches ----------------------------------------------------------

    def tasks(self, entity: str, before: Rows | None, after: Rows | None) -> list[_Task]:
        pairs = _pairs(before, after)
        tasks = []
        for group in self.found.rollups_from.get(entity, ()):
            parents: set[int] = set()
            causes: set[int] = set()
            for old, new in pairs:
                if old is None or new is None or any(old.get(k) != new.get(k) for k in group.inputs):
                    for row in (old, new):
                        if row is not None and row.get(group.link) is not None:
                            parents.add(row[group.link])
                            causes.add(row["id"])
            if parents:
                tasks.append(_Task(group.parent, parents, group.fields, frozenset(), entity, causes))
        for dependency in self.found.read_by.get(entity, ()):
            changed = {new["id"] for old, new in pairs
                       if old is not None and new is not None and old.get(dependency.reads) != new.get(dependency.reads)}
            if changed:
                ids = self.dependents(dependency, changed)
                if ids:
                    tasks.append(_Task(dependency.dependent, ids, (), frozenset(dependency.fields), entity, changed))
        return tasks

    def row_tasks(self, entity: str, before: Rows | None, after: Rows | None) -> list[_Task]:
        """Link roll-ups over child rows of ``entity``'s table fields (sales per product over
        order lines): the records the rows written link to, before and after, where a row
        was added, removed, or changed in the link, the aggregated field or the where."""
        tasks = []
        pairs = _pairs(before, after)
        for table_field in self.found.rollups_through(entity):
            child = self.model.entity(entity).field(table_field).target
            for group in self.found.rollups_from.get(child, ()):
                parents: set[int] = set()
                causes: set[int] = set()
                for old_record, new_record in pairs:
                    old_rows = {r["id"]: r for r in (old_record or {}).get(table_field) or ()}
                    new_rows = {r["id"]: r for r in (new_record or {}).get(table_field) or ()}
                    for row_id in old_rows.keys() | new_rows.keys():
                        old, new = old_rows.get(row_id), new_rows.get(row_id)
                        if old is not None and new is not None and \
                                all(_plain(old.get(k)) == _plain(new.get(k)) for k in group.inputs):
                            continue
                        for row in (old, new):
                            if row is not None and _plain(row.get(group.link)) is not None:
                                parents.add(_plain(row[group.link]))
                        causes.add((new_record or old_record or {})["id"])
                if parents:
                    tasks.append(_Task(group.parent, parents, group.fields, frozenset(), entity, causes))
        return tasks

    def dependents(self, dependency: LinkDependency, changed: set[int]) -> set[int]:
        """Ids of the records that read, through the links of ``dependency.chain``, the
        records ``changed``: one query per batch, a subquery per hop."""
        found: set[int] = set()
        for chunk in _batches(sorted(changed)):
            selection: Any = chunk
            for name, link in reversed(dependency.chain[1:]):
                table = self.tables[name]
                selection = sa.select(table.c.id).where(table.c[link].in_(selection))
            name, link = dependency.chain[0]
            table = self.tables[name]
            found.update(self.conn.execute(sa.select(table.c.id).where(table.c[link].in_(selection))).scalars())
        return found

    # -- recomputing ----------------------------------------------------------------------

    def refresh(self, task: _Task) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """Recompute ``task``'s records, batch by batch; yields the (before, after) rows of
        those that changed."""
        entity = self.model.entity(task.entity)
        table = self.tables[task.entity]
        computes = _reading(entity, {f.name for f in task.rollups}, task.computes)
        names = [f.name for f in task.rollups] + computes
        lock = self.context.live.derive(f"derived_lock:{entity.name}", lambda: _locking(table, self.conn.dialect.name))
        for chunk in _batches(sorted(task.ids)):
            rows = [dict(row) for row in self.conn.execute(lock, {"ids": chunk}).mappings()]
            if not rows:
                continue
            fresh: dict[int, dict[str, Any]] = {row["id"]: {} for row in rows}
            if task.rollups:
                self.aggregate(entity, task.rollups, [row["id"] for row in rows], fresh)
            logic = WriteLogic(self.conn, self.model, self.tables, self.principal, self.now)
            if computes:
                logic.prefetch(entity, rows)
            changed = []
            for row in rows:
                current = {**row, **fresh[row["id"]]}
                for name in computes:
                    f = entity.all_fields[name]
                    try:
                        current[name] = self.stored(entity, f, row["id"], logic.evaluate(f.compute_expr, current))
                    except Unevaluable:
                        current[name] = None
                if any(current[name] != row[name] for name in names):
                    changed.append((row, current))
            if changed:
                yield self.write(entity, table, names, changed, task)

    def aggregate(self, entity: Entity, rollups: Sequence[Field], ids: list[int],
                  fresh: dict[int, dict[str, Any]]) -> None:
        """The roll-ups (all over one source and link) of the parents ``ids``, with one
        ``SELECT link, aggregate, ... GROUP BY link``, into ``fresh``."""
        first = rollups[0].rollup
        assert first is not None and first.entity is not None and first.link is not None
        # built once per metadata version, unless a where reads the actor or the time
        timeless = all(f.rollup.where_expr is None or not (f.rollup.where_expr.uses_user or
                                                             f.rollup.where_expr.uses_today) for f in rollups)
        key = f"derived_aggregate:{entity.name}:{first.entity}:{first.link}:{','.join(f.name for f in rollups)}"
        query = self.context.live.derive(key, lambda: self.aggregate_query(rollups)) if timeless \
            else self.aggregate_query(rollups)
        found = {row["_parent"]: row for row in self.conn.execute(query, {"ids": ids}).mappings()}
        for parent in ids:
            row = found.get(parent)
            for f in rollups:
                rollup = f.rollup
                assert rollup is not None
                if row is None:
                    value = rollup.empty
                elif rollup.aggregate == "count":
                    value = row[f.name]
                elif rollup.aggregate == "sum":
                    value = _decimal(row[f.name]) if row[f.name] is not None else Decimal(0)
                elif rollup.aggregate == "avg":
                    value = _decimal(row[f.name]) / row[f"_n_{f.name}"] if row[f"_n_{f.name}"] else None
                else:
                    value = row[f.name]
                fresh[parent][f.name] = self.stored(entity, f, parent, value)

    def aggregate_query(self, rollups: Sequence[Field]) -> sa.Select:
        """``SELECT link, aggregate, ... WHERE link IN :ids GROUP BY link`` for roll-ups
        over one source and link (an avg as its sum and count)."""
        first = rollups[0].rollup
        assert first is not None and first.entity is not None and first.link is not None
        source = self.model.entity(first.entity)
        table = self.tables[source.name]
        resolve = table_resolver(table, self.tables, source, self.model)
        link = table.c[first.link]
        columns = []
        for f in rollups:
            rollup = f.rollup
            assert rollup is not None
            where = rollup.where_expr.to_sql(resolve, user=self.principal, now=self.now) \
                if rollup.where_expr is not None else None
            if rollup.aggregate == "count":
                columns.append((sa.func.count(sa.case((where, 1))) if where is not None
                                else sa.func.count()).label(f.name))
                continue
            column = table.c[rollup.field]
            value: Any = sa.case((where, column)) if where is not None else column
            if rollup.aggregate in ("sum", "avg"):
                columns.append(sa.func.sum(value).label(f.name))
                columns.append(sa.func.count(value).label(f"_n_{f.name}"))
            else:
                if source.field(rollup.field or "").kind.text_like:
                    value = dialects.binary_text(value)  # code point order, as Python compares
                aggregate = sa.func.min if rollup.aggregate == "min" else sa.func.max
                columns.append(sa.type_coerce(aggregate(value), column.type).label(f.name))
        return sa.select(link.label("_parent"), *columns).where(
            link.in_(sa.bindparam("ids", expanding=True))).group_by(link)

    def stored(self, entity: Entity, f: Field, record_id: int, value: Any) -> Any:
        """``value`` as ``f`` stores it; one it cannot hold refuses the whole write (422),
        naming the record and field only to a writer who may read that field."""
        value, problem = _stored(f, value)
        if problem is None:
            return value
        if f.name in self.service.access_for(entity).readable():
            message = f"this change would make {f.name} of {entity.name} {record_id} impossible to store: " \
                      f"{problem['message']}"
            params: dict[str, Any] = {"entity": entity.name, "field": f.name, "id": record_id}
        else:
            message = "this change would make a value Loom works out for another record too large to store"
            params = {}
        raise ValidationError(message, errors=[error_entry("", "derived_unstorable", message, **params)])

    def write(self, entity: Entity, table: sa.Table, names: list[str],
              changed: list[tuple[dict[str, Any], dict[str, Any]]],
              task: _Task) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Store the recomputed values of ``changed`` records as a change of each: version,
        updated_at/by, and the commit step of an update (event, hooks, audit entry)."""
        statement = self.context.live.derive(f"derived_update:{entity.name}:{','.join(names)}", lambda: (
            table.update().where(table.c.id == sa.bindparam("_id")).values(
                **{name: sa.bindparam(f"_v_{name}", type_=table.c[name].type) for name in names},
                version=table.c.version + 1, updated_at=sa.bindparam("_now", type_=table.c.updated_at.type),
                updated_by=sa.bindparam("_by", type_=table.c.updated_by.type))))
        self.conn.execute(statement, [{"_id": row["id"], "_now": self.now, "_by": self.principal.user_id,
                                       **{f"_v_{name}": current[name] for name in names}}
                                      for row, current in changed])
        note_write(self.conn, entity.name)
        ids = [row["id"] for row, _current in changed]
        reread = self.context.live.derive(f"derived_rows:{entity.name}", lambda: sa.select(table).where(
            table.c.id.in_(sa.bindparam("ids", expanding=True))))
        stored = {row["id"]: dict(row) for row in self.conn.execute(reread, {"ids": ids}).mappings()}
        before = [row for row, _current in changed]
        after = [stored[i] for i in ids]
        service = self.service_of(entity.name)
        records_before = service._serialize(self.conn, before, full=True)
        records_after = service._serialize(self.conn, after, full=True)
        changes = [{name: [old[name], new[name]] for name in new
                    if old[name] != new[name] and name not in ("version", "updated_at")}
                   for old, new in zip(records_before, records_after, strict=True)]
        because = {"entity": task.cause, "ids": sorted(task.cause_ids)[:NAMED_IDS]}
        if len(task.cause_ids) > NAMED_IDS:
            because["more"] = len(task.cause_ids) - NAMED_IDS
        service._committed(self.conn, "update", records_after, changes, derived=because)
        return before, after

    def service_of(self, entity: str) -> Any:
        """The record service of ``entity`` for derived writes (see ``__init__``)."""
        if entity not in self.services:
            self.services[entity] = type(self.service)(self.context, entity)
        return self.services[entity]


def _locking(table: sa.Table, dialect: str) -> sa.Select:
    """The rows of ``:ids``, in id order, locked on PostgreSQL until the write commits:
    ``FOR NO KEY UPDATE``, which does not wait for the key-share locks that inserting a
    record linking to them takes (``FOR UPDATE`` would, and two writers adding to one
    parent would deadlock)."""
    query = sa.select(table).where(table.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(table.c.id)
    return query.with_for_update(key_share=True) if dialect == "postgresql" else query


def _reading(entity: Entity, changed: set[str], computes: frozenset[str]) -> list[str]:
    """The computed fields to work out again, in their order: ``computes`` and those that
    read (in turn) a field of ``changed`` or of them."""
    names = set(changed)
    result = []
    for name in entity.compute_order:
        f = entity.all_fields[name]
        reads = {p.split(".", 1)[0] for p in f.compute_expr.paths} if f.compute_expr is not None else set()
        if name in computes or reads & names:
            result.append(name)
            names.add(name)
    return result


def _plain(value: Any) -> Any:
    """A value of a JSON record as stored: a link by its id."""
    return value["id"] if isinstance(value, dict) and "id" in value else value


def _decimal(value: Any) -> Decimal:
    """A number from the database as an exact decimal (SQLite gives floats: their shortest
    text is the decimal the stored values add up to)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(value)
