"""The identity version: one number that moves, in the same transaction, with every change
to a credential or to anything a principal is made of.

Each process caches principals by credential and compares this number on every request;
when it has moved, the cache is dropped. Triggers move it, so that no writer can forget
to: the identity service, an admin's SQL, a cascade from a deleted user. Only the
columns a principal or a credential's validity is read from move it: signing in (a new
session, ``last_login_at``) and a token's first use (``last_used_at``) do not, so they do
not empty every process's cache.

SQLite drops a table's triggers when a batch operation rebuilds the table: a later
revision that rebuilds one of these tables must create its triggers again, as
``create_triggers`` below does (the identity tests fail when one is missing).

Revision ID: 20261202_0710
Revises: 20261202_0600
Create Date: 2026-12-02 07:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_0710"
down_revision = "20261202_0600"
branch_labels = None
depends_on = None

#: table -> the events that move the identity version (``UPDATE OF``: only those columns)
EVENTS = {
    "loom_users": ("UPDATE OF id, username, display_name, locale, is_active, is_superuser, team_id, manager_id",
                   "DELETE"),
    "loom_role_assignments": ("INSERT", "UPDATE", "DELETE"),
    "loom_teams": ("INSERT", "UPDATE", "DELETE"),
    "loom_sessions": ("UPDATE OF id, token_hash, user_id, expires_at", "DELETE"),
    "loom_api_tokens": ("UPDATE OF id, token_hash, user_id, read_only, expires_at, revoked_at", "DELETE"),
}
BUMP = "UPDATE loom_identity_version SET number = number + 1 WHERE id = 1"
FUNCTION = "loom_identity_changed"


def _sqlite_name(table: str, event: str) -> str:
    return f"{FUNCTION}_{table.removeprefix('loom_')}_{event.split()[0].lower()}"


def create_triggers(table: str) -> None:
    """The triggers on ``table`` that move the identity version."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {FUNCTION} AFTER {' OR '.join(EVENTS[table])} ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {FUNCTION}()")
        return
    for event in EVENTS[table]:
        op.execute(f"CREATE TRIGGER {_sqlite_name(table, event)} AFTER {event} ON {table} "
                   f"FOR EACH ROW BEGIN {BUMP}; END")


def drop_triggers(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {FUNCTION} ON {table}")
        return
    for event in EVENTS[table]:
        op.execute(f"DROP TRIGGER IF EXISTS {_sqlite_name(table, event)}")


def upgrade() -> None:
    version = op.create_table(
        "loom_identity_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_identity_version"),
    )
    op.bulk_insert(version, [{"id": 1, "number": 1}])
    if op.get_bind().dialect.name == "postgresql":
        # the table is found where it was at creation, whatever a session's search_path
        op.execute(f"CREATE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql "
                   f"SET search_path FROM CURRENT AS $$ "
                   f"BEGIN {BUMP}; RETURN NULL; END $$")
    for table in EVENTS:
        create_triggers(table)


def downgrade() -> None:
    for table in EVENTS:
        drop_triggers(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
    op.drop_table("loom_identity_version")
