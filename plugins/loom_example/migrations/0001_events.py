"""The example plugin's table: the events it received.

Revision ID: example_0001
Revises:
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "example_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_example_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100)),
        sa.Column("record_id", sa.BigInteger),
        sa.Column("outbox_id", sa.BigInteger, unique=True),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("loom_example_events")
