"""Inbound calls: every signed webhook call accepted, stored before it is handled
(``loom.plugins.webhooks.InboundCall``).

Revision ID: 20261202_1600
Revises: 20261202_1500
Create Date: 2026-12-02 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_1600"
down_revision = "20261202_1500"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "loom_inbound_calls",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plugin", sa.String(100), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("content_type", sa.String(200)),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("signed_at", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reply", sa.JSON()),
        sa.Column("error", sa.Text()),
        sa.Column("handled_at", sa.DateTime(timezone=True)),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_loom_inbound_calls_webhook", "loom_inbound_calls", ["plugin", "name", "received_at"])


def downgrade() -> None:
    op.drop_table("loom_inbound_calls")
