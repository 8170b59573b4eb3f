"""Deliveries: one row per action an integration rule triggered, written in the
transaction of its cause, and one row per attempt at it (``loom.integrations.models``).

Revision ID: 20261202_1400
Revises: 20261202_1300
Create Date: 2026-12-02 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_1400"
down_revision = "20261202_1300"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "loom_deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("trigger", sa.String(100), nullable=False),
        sa.Column("action", sa.String(200), nullable=False),
        sa.Column("plugin", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100)),
        sa.Column("record_id", sa.BigInteger()),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("run_as", sa.String(150), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("backoff", sa.String(20), nullable=False),
        sa.Column("backoff_seconds", sa.Integer(), nullable=False),
        sa.Column("available_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text()),
        sa.Column("result", sa.JSON()),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("idempotency_key", name="uq_loom_deliveries_idempotency_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_loom_deliveries_due", "loom_deliveries", ["status", "available_at"])
    op.create_index("ix_loom_deliveries_record", "loom_deliveries", ["entity", "record_id"])
    op.create_index("ix_loom_deliveries_rule", "loom_deliveries", ["rule", "created_at"])
    op.create_table(
        "loom_delivery_attempts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.String(20)),
        sa.Column("error", sa.Text()),
        sa.Column("duration_ms", sa.Float()),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_loom_delivery_attempts_delivery", "loom_delivery_attempts", ["delivery_id", "attempt"])


def downgrade() -> None:
    op.drop_table("loom_delivery_attempts")
    op.drop_table("loom_deliveries")
