"""Failed sign-ins counted per username as sent, known or not, instead of per user.

An unknown username is then counted and locked exactly like a real one, and the count
is kept where one atomic upsert can raise it.

Revision ID: 20261202_0200
Revises: 20261202_0040
Create Date: 2026-12-02 02:00:00
"""

import datetime as dt
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "20261202_0200"
down_revision = "20261202_0040"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    failures = op.create_table(
        "loom_sign_in_failures",
        sa.Column("username_hash", sa.String(64), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("locked_until", TIMESTAMP),
        sa.Column("last_failed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("username_hash", name="pk_loom_sign_in_failures"),
    )
    op.create_index("ix_loom_sign_in_failures_last_failed_at", "loom_sign_in_failures", ["last_failed_at"])
    # the counts and locks in force move along, keyed the way sign-in now looks them up
    users = sa.table("loom_users", sa.column("username", sa.String), sa.column("failed_logins", sa.Integer),
                     sa.column("locked_until", TIMESTAMP))
    now = dt.datetime.now(dt.UTC)
    rows = op.get_bind().execute(sa.select(users).where(sa.or_(users.c.failed_logins > 0,
                                                                users.c.locked_until.is_not(None)))).all()
    carried = [{"username_hash": hashlib.sha256(row.username.encode()).hexdigest(),
                "failed_logins": row.failed_logins, "locked_until": row.locked_until, "last_failed_at": now}
               for row in rows]
    if carried:
        op.bulk_insert(failures, carried)
    with op.batch_alter_table("loom_users") as batch:
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")


def downgrade() -> None:
    with op.batch_alter_table("loom_users") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", TIMESTAMP))
    # locks last minutes and are keyed by a hash of the name: they are not carried back
    op.drop_index("ix_loom_sign_in_failures_last_failed_at", table_name="loom_sign_in_failures")
    op.drop_table("loom_sign_in_failures")
