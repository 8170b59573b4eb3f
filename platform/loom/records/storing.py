"""Writing entity rows: records (one, or a thousand with one statement), their child
rows, and child rows replaced on an update. Part of the record service.

Statements are built once per entity and metadata version, and executed with the values
as parameters, so no write builds (and SQLAlchemy keys and looks up) a statement of its
own. Every write notes itself for ``loom.records.memory``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from loom.db import insert_many
from loom.errors import ValidationError, error_entry
from loom.metadata.model import Entity
from loom.principal import Principal
from loom.records.memory import Memory, note_write

_ABSENT = object()


class RowWrites:
    """The row writes of ``RecordService`` (which sets the attributes used here)."""

    context: Any
    entity: Entity
    table: sa.Table
    principal: Principal
    _memory: Memory | None

    def _statement(self, key: str, build: Any) -> Any:
        """A statement of this entity's, built once per metadata version."""
        return self.context.live.derive(f"{key}:{self.entity.name}", build)

    def _standard_values(self, now) -> dict[str, Any]:
        return {"version": 1, "created_at": now, "updated_at": now,
                "created_by": self.principal.user_id, "updated_by": self.principal.user_id}

    def _insert(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """Insert rows of this entity's table (all with the same keys); returns them as
        stored, in the order given. One row is inserted with ``RETURNING``; many with one
        plain executemany, the driver's fastest way (on PostgreSQL ``INSERT ... RETURNING``
        of a thousand rows is one statement whose text alone the driver takes longer to
        read than the rows take to store), and then read back in one query."""
        table = self.table
        try:
            if len(rows) == 1:
                statement = self._statement("insert_returning", lambda: table.insert().returning(*table.c))
                return conn.execute(statement, rows[0]).mappings().all()
            insert = self._statement("insert", table.insert)
            if conn.dialect.name == "postgresql":
                # ids from the table's own sequence, so that the rows can be found again by id
                next_ids = self._statement("next_ids", lambda: sa.select(
                    sa.func.nextval(sa.func.pg_get_serial_sequence(table.name, "id"))).select_from(
                    sa.func.generate_series(1, sa.bindparam("n"))))
                ids = sorted(conn.execute(next_ids, {"n": len(rows)}).scalars())
                insert_many(conn, table, [{**row, "id": record_id} for row, record_id in zip(rows, ids, strict=True)],
                            insert)
                found = {row["id"]: row for row in conn.execute(
                    sa.select(table).where(table.c.id.between(ids[0], ids[-1]))).mappings()}
                return [found[record_id] for record_id in ids]
            # SQLite: the write lock is held since BEGIN, so the new rows are exactly those
            # above the largest id before (AUTOINCREMENT hands out ids in increasing order)
            before = conn.execute(self._statement("last_id", lambda: sa.select(sa.func.max(table.c.id)))).scalar() or 0
            insert_many(conn, table, rows, insert)
            stored = conn.execute(self._statement("rows_after", lambda: sa.select(table).where(
                table.c.id > sa.bindparam("after")).order_by(table.c.id)), {"after": before}).mappings().all()
            if len(stored) != len(rows):
                raise RuntimeError(f"{len(rows)} rows were inserted into {table.name} but {len(stored)} were found")
            return stored
        finally:
            note_write(conn, self.entity.name)

    def _update(self, conn: sa.Connection, row: Mapping[str, Any], values: Mapping[str, Any],
                now: Any) -> Mapping[str, Any] | None:
        """Write ``values`` to the stored ``row`` if it is still at its version (optimistic
        locking); returns the row as stored, or None when someone else changed it first."""
        table = self.table
        statement = self._statement("update", lambda: table.update().where(
            table.c.id == sa.bindparam("_record_id"), table.c.version == sa.bindparam("_record_version"))
            .returning(*table.c))
        try:
            return conn.execute(statement, {**values, "version": row["version"] + 1, "updated_at": now,
                                            "updated_by": self.principal.user_id, "_record_id": row["id"],
                                            "_record_version": row["version"]}).mappings().first()
        finally:
            note_write(conn, self.entity.name)

    def _child_table(self, field_name: str) -> tuple[str, sa.Table]:
        target = self.entity.field(field_name).target
        return target, self.context.live.tables[target]

    def _insert_children(self, conn: sa.Connection, parents: Iterable[tuple[int, Mapping[str, list[dict]]]]) -> None:
        """Insert the child rows of new records, given as (record id, rows per table field):
        one statement per child table and set of columns, for all the records at once."""
        batches: dict[tuple[str, frozenset[str]], list[dict[str, Any]]] = {}
        for parent_id, children in parents:
            for field_name, rows in children.items():
                # one statement per set of columns: rows that leave out different fields keep
                # each column's default rather than a NULL in its place
                for i, row in enumerate(rows):
                    values = {**{k: v for k, v in row.items() if k != "id"}, "parent_id": parent_id, "position": i}
                    batches.setdefault((field_name, frozenset(values)), []).append(values)
        for (field_name, _columns), payload in batches.items():
            target, table = self._child_table(field_name)
            insert_many(conn, table, payload, self.context.live.derive(f"insert:{target}", table.insert))
            note_write(conn, target)

    def _replace_children(self, conn: sa.Connection, parent_id: int, children: Mapping[str, list[dict]]) -> None:
        """The given rows become the table's rows: rows with an id are updated where they
        differ from the stored row, rows without one added, rows left out removed."""
        for field_name, rows in children.items():
            target, table = self._child_table(field_name)
            known = self._memory.child_rows(conn, target, [parent_id]) if self._memory is not None else None
            stored = known[parent_id] if known is not None else conn.execute(self.context.live.derive(
                f"rows_of:{target}", lambda t=table: sa.select(t).where(t.c.parent_id == sa.bindparam("parent_id"))),
                {"parent_id": parent_id}).mappings().all()
            existing = {row["id"]: row for row in stored}
            errors = [error_entry(f"{field_name}[{i}].id", "no_such_row", f"no row with id {row['id']} in this record",
                                  id=row["id"])
                      for i, row in enumerate(rows) if row.get("id") is not None and row["id"] not in existing]
            if errors:
                raise ValidationError("child rows do not belong to this record", errors=errors)
            kept = {row["id"] for row in rows if row.get("id") is not None}
            statements = []
            if existing.keys() - kept:
                statements.append((table.delete().where(table.c.id.in_(existing.keys() - kept)), None))
            for position, row in enumerate(rows):
                values = {k: v for k, v in row.items() if k != "id"}
                before = existing.get(row.get("id")) if row.get("id") is not None else None
                if before is None:
                    statements.append((self.context.live.derive(f"insert:{target}", table.insert),
                                       {**values, "parent_id": parent_id, "position": position}))
                elif before["position"] != position or any(before.get(k, _ABSENT) != v for k, v in values.items()):
                    update = self.context.live.derive(f"update_row:{target}", lambda t=table: t.update().where(
                        t.c.id == sa.bindparam("_row_id")))
                    statements.append((update, {**values, "position": position, "_row_id": row["id"]}))
            for statement, params in statements:
                if params is None:
                    conn.execute(statement)
                else:
                    conn.execute(statement, params)
            if statements:
                note_write(conn, target)
