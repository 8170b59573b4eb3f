"""Ids of Loom's own tables are never handed out twice on SQLite.

SQLite gives an ``INTEGER PRIMARY KEY`` table's highest id again once that row is
deleted (sessions, tokens, role assignments, saved views, comments ... are deleted), so
every such table is rebuilt with ``AUTOINCREMENT``, keeping every row, id and index. The
audit log is left alone (its ``seq`` comes from the chain head, never from SQLite), and
so are the tables other tables refer to (users and teams), whose rows are never deleted.
PostgreSQL's sequences never go back, so nothing changes there.

The rebuild is written out here rather than imported, so that this revision does what it
did when it was written whatever the code becomes.

Revision ID: 20261202_0300
Revises: 20261202_0200
Create Date: 2026-12-02 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_0300"
down_revision = "20261202_0200"
branch_labels = None
depends_on = None

#: tables whose key is not a counter SQLite hands out
SKIPPED = {"loom_audit", "loom_audit_head", "alembic_version"}


def _lacks_autoincrement(conn: sa.Connection, table: str) -> bool:
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (table,)).scalar()
    return sql is not None and "AUTOINCREMENT" not in sql.upper()


def _rebuild(conn: sa.Connection, table: str) -> None:
    metadata = sa.MetaData()  # holds the tables it refers to as well
    rebuilt = sa.Table(table, metadata, autoload_with=conn, sqlite_autoincrement=True)
    rebuilt.indexes.clear()
    indexes = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'index' "
                                   "AND tbl_name = ? AND sql IS NOT NULL", (table,)).scalars().all()
    copy = rebuilt.to_metadata(metadata, name=f"_loom_rebuild_{table}")
    names = ", ".join(f'"{c.name}"' for c in rebuilt.columns)
    copy.create(conn)
    conn.exec_driver_sql(f'INSERT INTO "{copy.name}" ({names}) SELECT {names} FROM "{table}"')
    conn.exec_driver_sql(f'DROP TABLE "{table}"')
    conn.exec_driver_sql(f'ALTER TABLE "{copy.name}" RENAME TO "{table}"')
    for sql in indexes:
        conn.exec_driver_sql(sql)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    inspector = sa.inspect(conn)
    tables = inspector.get_table_names()
    # Foreign keys are on during an upgrade, and dropping a table others refer to would
    # delete (or refuse to delete) their rows; those tables (users, teams) lose no rows:
    # a user or team is deactivated, never deleted.
    referenced = {fk["referred_table"] for t in tables for fk in inspector.get_foreign_keys(t)}
    for table in tables:
        if not table.startswith("loom_") or table in SKIPPED or table in referenced:
            continue
        if inspector.get_pk_constraint(table)["constrained_columns"] == ["id"] and _lacks_autoincrement(conn, table):
            _rebuild(conn, table)


def downgrade() -> None:
    # AUTOINCREMENT changes no column and no earlier revision relies on its absence: the
    # tables keep it, and ids stay unique.
    pass
