"""Uploads: every attachment file, who uploaded it for which field, and the record holding it.

Revision ID: 20261202_0040
Revises: 20261123_1400
Create Date: 2026-12-02 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_0040"
down_revision = "20261123_1400"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "loom_uploads",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("loom_users.id", name="fk_loom_uploads_user_id_loom_users",
                                                            ondelete="SET NULL")),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_uploads"),
        sa.UniqueConstraint("key", name="uq_loom_uploads_key"),
    )
    op.create_index("ix_loom_uploads_created_at", "loom_uploads", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_loom_uploads_created_at", table_name="loom_uploads")
    op.drop_table("loom_uploads")
