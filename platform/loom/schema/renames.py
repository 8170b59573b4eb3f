"""What follows an entity's table when it is renamed, set aside or restored: the names of
its constraints and sequence (PostgreSQL keeps them schema-wide, so a name left behind
could never be used again), and the comments on its records.

The audit log is append-only and never rewritten; a record's history follows its entity
through renames by the names it had and when (``loom.schema.names``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

_comments = sa.table("loom_comments", sa.column("entity"))
_set_aside = sa.table("loom_set_aside", sa.column("entity"), sa.column("field"))
_numbering = sa.table("loom_numbering", sa.column("entity"), sa.column("field"))


def follow_field_rename(conn: sa.Connection, entity: str, old: str, new: str) -> None:
    """The autonumber counters of field ``old`` follow it to its new name ``new``, so that
    a renamed field never gives a number again."""
    conn.execute(_numbering.update().where(_numbering.c.entity == entity, _numbering.c.field == old)
                 .values(field=new))


def rename_table(conn: sa.Connection, ops: Operations, old: str, new: str) -> None:
    """Rename table ``old`` to ``new``, with its key's, links' and sequence's names."""
    ops.rename_table(old, new)
    if conn.dialect.name != "postgresql":
        return  # SQLite's constraint names belong to their table; indexes are rebuilt by name
    inspector = sa.inspect(conn)
    key = inspector.get_pk_constraint(new).get("name")
    if key == f"pk_{old}":
        _rename_constraint(conn, new, key, f"pk_{new}")
    for table in inspector.get_table_names():
        for fk in inspector.get_foreign_keys(table):
            referred = fk["referred_table"]
            if new not in (table, referred):
                continue
            column = fk["constrained_columns"][0]
            before = f"fk_{old if table == new else table}_{column}_{old if referred == new else referred}"
            if fk.get("name") == before:
                _rename_constraint(conn, table, before, f"fk_{table}_{column}_{referred}")
    sequence = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": new}).scalar()
    wanted = f"{new}_id_seq"
    if sequence and sequence.split(".")[-1].strip('"') == f"{old}_id_seq" and len(wanted) <= 63:
        taken = conn.execute(sa.text("SELECT to_regclass(:n)"), {"n": wanted}).scalar()
        if taken is None:
            conn.exec_driver_sql(f'ALTER SEQUENCE {sequence} RENAME TO "{wanted}"')


def _rename_constraint(conn: sa.Connection, table: str, old: str, new: str) -> None:
    if len(new) <= 63:
        conn.exec_driver_sql(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')


def move_comments(conn: sa.Connection, old: str, new: str) -> None:
    """The comments kept under entity name ``old`` now belong under ``new`` (an entity
    renamed, or a table set aside under its stored name and restored)."""
    conn.execute(_comments.update().where(_comments.c.entity == old).values(entity=new))


def follow_entity_rename(conn: sa.Connection, old: str, new: str) -> None:
    """Comments, set-aside columns and autonumber counters of entity ``old`` follow it to
    its new name ``new``."""
    move_comments(conn, old, new)
    conn.execute(_numbering.update().where(_numbering.c.entity == old).values(entity=new))
    conn.execute(_set_aside.update().where(_set_aside.c.entity == old, _set_aside.c.field.is_not(None))
                 .values(entity=new))
