"""Loom's own tables: users, metadata versions, set-aside columns, the outbox.

Revision ID: 20261122_0900
Revises:
Create Date: 2026-11-22 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261122_0900"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "loom_users",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("username", sa.String(150), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_users"),
        sa.UniqueConstraint("username", name="uq_loom_users_username"),
    )
    op.create_table(
        "loom_metadata_versions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("documents", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_metadata_versions"),
        sa.UniqueConstraint("number", name="uq_loom_metadata_versions_number"),
    )
    op.create_table(
        "loom_set_aside",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("field", sa.String(100)),
        sa.Column("stored_name", sa.String(100), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("restored_at", TIMESTAMP),
        sa.Column("purged_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("id", name="pk_loom_set_aside"),
    )
    op.create_table(
        "loom_outbox",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100)),
        sa.Column("record_id", sa.BigInteger()),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("available_at", TIMESTAMP, nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_loom_outbox"),
    )
    op.create_index("ix_loom_outbox_topic", "loom_outbox", ["topic"])
    op.create_index("ix_loom_outbox_status", "loom_outbox", ["status"])


def downgrade() -> None:
    op.drop_index("ix_loom_outbox_status", "loom_outbox")
    op.drop_index("ix_loom_outbox_topic", "loom_outbox")
    op.drop_table("loom_outbox")
    op.drop_table("loom_set_aside")
    op.drop_table("loom_metadata_versions")
    op.drop_table("loom_users")
