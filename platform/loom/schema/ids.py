"""Record ids are never reused, on any database.

A record's id keys its history, comments and files. SQLite reuses the highest id of an
``INTEGER PRIMARY KEY`` table once that row is deleted, so an entity table there carries
``AUTOINCREMENT``; a table made before that is rebuilt with it, keeping every row and id.
Whatever a database's counter says, it is moved past every id known to have existed for
the entity: the table's own, and those the audit log and comments mention.
"""

from __future__ import annotations

import sqlalchemy as sa

_audit = sa.table("loom_audit", sa.column("entity"), sa.column("record_id"))
_comments = sa.table("loom_comments", sa.column("entity"), sa.column("record_id"))


def lacks_autoincrement(conn: sa.Connection, table: str) -> bool:
    """Whether SQLite table ``table`` has an integer key that may hand out a deleted id again."""
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (table,)).scalar()
    return sql is not None and "AUTOINCREMENT" not in sql.upper()


def rebuild_with_autoincrement(conn: sa.Connection, table: str) -> None:
    """Rebuild SQLite table ``table`` with ``AUTOINCREMENT``, keeping every row, id, index
    and constraint: a copy is filled, the table dropped and the copy renamed. Other tables'
    references name the table, so they follow; with foreign keys on, a table others refer
    to cannot be dropped this way, so ``conn`` must have them off (a publish does)."""
    metadata = sa.MetaData()  # holds the tables it refers to as well
    rebuilt = sa.Table(table, metadata, autoload_with=conn, sqlite_autoincrement=True)
    # indexes come back from their own DDL, exactly as they were (sort order included)
    rebuilt.indexes.clear()
    indexes = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                   "AND tbl_name = ? AND sql IS NOT NULL", (table,)).scalars().all()
    copy = rebuilt.to_metadata(metadata, name=f"_loom_rebuild_{table}"[:63])
    names = ", ".join(f'"{c.name}"' for c in rebuilt.columns)
    copy.create(conn)
    conn.exec_driver_sql(f'INSERT INTO "{copy.name}" ({names}) SELECT {names} FROM "{table}"')
    conn.exec_driver_sql(f'DROP TABLE "{table}"')
    conn.exec_driver_sql(f'ALTER TABLE "{copy.name}" RENAME TO "{table}"')
    for sql in indexes:
        conn.exec_driver_sql(sql)


def highest_known_id(conn: sa.Connection, entity: str, table: str) -> int:
    """The highest id entity ``entity`` is known to have used: its table's, or one its
    history or comments mention (the record may have been deleted since)."""
    own = conn.execute(sa.select(sa.func.max(sa.table(table, sa.column("id")).c.id))).scalar() or 0
    mentioned = [sa.select(sa.func.max(log.c.record_id)).where(log.c.entity == entity).scalar_subquery()
                 for log in (_audit, _comments)]
    if conn.dialect.name == "postgresql":
        # Read outside ``conn``'s transaction: a lock it kept on the audit log until commit
        # would stop that transaction's own audit entry from creating the month's partition
        # (creating one needs the parent table to itself). Both logs only grow, so a read
        # that sees what is committed is enough.
        with conn.engine.connect() as other:
            logged = other.execute(sa.select(*mentioned)).one()
    else:
        logged = conn.execute(sa.select(*mentioned)).one()
    return max([own, *(value or 0 for value in logged)])


def skip_used_ids(conn: sa.Connection, entity: str, table: str) -> None:
    """Move ``table``'s id counter past every id ``entity`` is known to have used."""
    floor = highest_known_id(conn, entity, table)
    if not floor:
        return
    if conn.dialect.name == "sqlite":
        current = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).scalar()
        if current is None:
            conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, floor))
        elif current < floor:
            conn.exec_driver_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (floor, table))
        return
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
    if sequence:
        # is_called = true: the next id handed out is past both, never one of them
        conn.execute(sa.text("SELECT setval(CAST(:s AS regclass), GREATEST(CAST(:f AS bigint), "
                             "COALESCE(pg_sequence_last_value(CAST(:s AS regclass)), 0)), true)"),
                     {"s": sequence, "f": floor})


def ensure_ids_never_reused(conn: sa.Connection, entities: dict[str, str]) -> list[str]:
    """Give every table of ``entities`` (entity name -> table) a counter that never reuses
    an id; returns the entities whose SQLite table had to be rebuilt for it."""
    rebuilt = []
    for entity, table in entities.items():
        if conn.dialect.name == "sqlite" and lacks_autoincrement(conn, table):
            rebuild_with_autoincrement(conn, table)
            rebuilt.append(entity)
        skip_used_ids(conn, entity, table)
    return rebuilt
