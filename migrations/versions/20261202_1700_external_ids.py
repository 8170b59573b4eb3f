"""External ids: which record of an entity stands for which id in another system
(``loom.records.external_ids.ExternalId``).

Revision ID: 20261202_1700
Revises: 20261202_1600
Create Date: 2026-12-02 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_1700"
down_revision = "20261202_1600"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "loom_external_ids",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("record_id", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.UniqueConstraint("system", "entity", "external_id", name="uq_loom_external_ids_system_entity_external_id"),
        sa.UniqueConstraint("system", "entity", "record_id", name="uq_loom_external_ids_system_entity_record_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_loom_external_ids_entity_record_id", "loom_external_ids", ["entity", "record_id"])


def downgrade() -> None:
    op.drop_table("loom_external_ids")
