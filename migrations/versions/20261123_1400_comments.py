"""Comments on records.

Revision ID: 20261123_1400
Revises: 20261123_0900
Create Date: 2026-11-23 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261123_1400"
down_revision = "20261123_0900"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "loom_comments",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), sa.ForeignKey("loom_users.id", name="fk_loom_comments_author_id_loom_users")),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_comments"),
    )
    op.create_index("ix_loom_comments_entity_record_id", "loom_comments", ["entity", "record_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_loom_comments_entity_record_id", table_name="loom_comments")
    op.drop_table("loom_comments")
