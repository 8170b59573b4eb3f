"""Screens: saved list views and import jobs.

Revision ID: 20261122_1100
Revises: 20261122_1000
Create Date: 2026-11-22 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261122_1100"
down_revision = "20261122_1000"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "loom_saved_views",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("loom_users.id", name="fk_loom_saved_views_user_id_loom_users",
                                                            ondelete="CASCADE"), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_saved_views"),
        sa.UniqueConstraint("user_id", "entity", "name", name="uq_loom_saved_views_user_id_entity_name"),
    )
    op.create_table(
        "loom_import_jobs",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("loom_users.id", name="fk_loom_import_jobs_user_id_loom_users",
                                                            ondelete="CASCADE"), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("mapping", sa.JSON()),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.JSON()),
        sa.Column("message", sa.Text()),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_import_jobs"),
    )


def downgrade() -> None:
    op.drop_table("loom_import_jobs")
    op.drop_table("loom_saved_views")
