"""Roll-ups filled when they are published: a roll-up added to an entity that has records,
or one whose definition changed (another aggregate, source or where), gets its value for
every record in the publish's own transaction, and so do the fields that read it in turn
(a computed field of its entity, a roll-up over it, a ``depends_on_links`` field reading
it through a link), in the order they depend on one another.

Writes keep these values up to date afterwards (``loom.records.derived``); this is the
one place they are set for many records at once, with one ``UPDATE ... SET field =
(SELECT aggregate ...)`` per field, computed fields through their SQL form
(``Expression.to_sql``), which gives what Python gives. It is part of the publish (its
audit entry names the fields filled), not a change of each record: versions stay as they
are, as when a field is added.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from loom.db import utcnow
from loom.expressions import dialects
from loom.expressions.rollups import NUMERIC, edges
from loom.expressions.sql import table_resolver
from loom.metadata.model import AppModel, Entity, Field


def fill_rollups(conn: sa.Connection, old: AppModel, new: AppModel, tables: Mapping[str, sa.Table]) -> list[str]:
    """Fill the roll-ups of ``new`` that ``old`` did not have (or had otherwise), and what
    reads them; returns a line per field filled, for the publish's summary."""
    changed = set()
    for entity in new.entities.values():
        before = old.entities.get(entity.name)
        for f in entity.rollups:
            was = before.all_fields.get(f.name) if before is not None else None
            if was is None or was.rollup != f.rollup or was.type != f.type:
                changed.add((entity.name, f.name))
    if not changed:
        return []
    graph: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for source, target in edges(new):
        graph.setdefault(source, set()).add(target)
    now = utcnow()
    notes = []
    for entity_name, name in _downstream(graph, changed, new):
        entity = new.entity(entity_name)
        f = entity.field(name)
        table = tables[entity_name]
        value = _rollup_sql(f, table, tables, new) if f.rollup is not None else \
            f.compute_expr.to_sql(table_resolver(table, tables, entity, new), now=now)
        conn.execute(table.update().values({name: _fitted(f, value, conn.dialect.name)}))
        notes.append(f"  fills {entity_name}.{name} for every stored record")
    return notes


def _downstream(graph: Mapping[tuple[str, str], set[tuple[str, str]]], start: set[tuple[str, str]],
                model: AppModel) -> list[tuple[str, str]]:
    """``start`` and the fields Loom fills that read them (a roll-up, a computed field of
    their entity, a ``depends_on_links`` field), each after what it reads."""
    reached = set(start)
    stack = list(start)
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in reached:
                reached.add(nxt)
                stack.append(nxt)
    filled = {node for node in reached if _fillable(model, node)}
    order: list[tuple[str, str]] = []
    done: set[tuple[str, str]] = set()
    inputs: dict[tuple[str, str], set[tuple[str, str]]] = {node: set() for node in filled}
    for source, targets in graph.items():
        for target in targets & filled:
            if source in filled and source != target:
                inputs[target].add(source)
    while len(order) < len(filled):
        ready = sorted(node for node in filled - done if inputs[node] <= done)
        if not ready:  # a circle: refused at publish, so never here
            break
        order.extend(ready)
        done.update(ready)
    return order


def _fillable(model: AppModel, node: tuple[str, str]) -> bool:
    """A roll-up, or a computed field of a record (not a child row's, which is its
    parent's business; not one reading the acting user, whom a publish does not have)."""
    entity = model.entities.get(node[0])
    f = entity.all_fields.get(node[1]) if entity is not None else None
    if f is None or entity.child:
        return False
    return f.rollup is not None or (f.compute_expr is not None and not f.compute_expr.uses_user)


def _rollup_sql(f: Field, table: sa.Table, tables: Mapping[str, sa.Table], model: AppModel) -> Any:
    """The roll-up of each row of ``table`` as a correlated subquery."""
    rollup = f.rollup
    assert rollup is not None and rollup.entity is not None
    source: Entity = model.entity(rollup.entity)
    rows = tables[source.name].alias("rolled")
    link = rows.c.parent_id if rollup.table is not None else rows.c[rollup.link]
    conditions = [link == table.c.id]
    if rollup.where_expr is not None:
        conditions.append(rollup.where_expr.to_sql(table_resolver(rows, tables, source, model), now=utcnow()))
    if rollup.aggregate == "count":
        return sa.select(sa.func.count()).where(*conditions).scalar_subquery()
    column = rows.c[rollup.field]
    if rollup.aggregate == "sum":
        return sa.func.coalesce(sa.select(sa.func.sum(column)).where(*conditions).scalar_subquery(), 0)
    if rollup.aggregate == "avg":
        return sa.select(dialects.op(dialects.to_real(sa.func.sum(column)), "/",
                                     sa.func.nullif(sa.func.count(column), 0))).where(*conditions).scalar_subquery()
    value = dialects.binary_text(column) if source.field(rollup.field or "").kind.text_like else column
    aggregate = sa.func.min if rollup.aggregate == "min" else sa.func.max
    return sa.select(sa.type_coerce(aggregate(value), column.type)).where(*conditions).scalar_subquery()


def _fitted(f: Field, value: Any, dialect: str) -> Any:
    """A number rounded to the field's places (half away from zero, as writes round)."""
    if f.type not in NUMERIC:
        return value
    scale = 0 if f.type == "integer" else f.precision_scale[1]
    if dialect == "postgresql":
        value = sa.cast(value, sa.Numeric())
    return sa.func.round(value, scale)
