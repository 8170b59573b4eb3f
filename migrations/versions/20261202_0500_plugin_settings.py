"""Plugin settings: one row per plugin, its values as JSON (secrets sealed).

Revision ID: 20261202_0500
Revises: 20261202_0300
Create Date: 2026-12-02 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_0500"
down_revision = "20261202_0300"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_plugin_settings",
        sa.Column("plugin", sa.String(100), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("plugin", name=op.f("pk_loom_plugin_settings")),
    )


def downgrade() -> None:
    op.drop_table("loom_plugin_settings")
