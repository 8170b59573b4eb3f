"""Webhook receipts: each signed webhook call once, so a captured call sent again is refused.

Revision ID: 20261202_0600
Revises: 20261202_0500
Create Date: 2026-12-02 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_0600"
down_revision = "20261202_0500"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_webhook_receipts",
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature", name=op.f("pk_loom_webhook_receipts")),
    )
    op.create_index(op.f("ix_loom_webhook_receipts_received_at"), "loom_webhook_receipts", ["received_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_loom_webhook_receipts_received_at"), table_name="loom_webhook_receipts")
    op.drop_table("loom_webhook_receipts")
