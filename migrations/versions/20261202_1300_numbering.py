"""Autonumber counters: the last number given for each prefix of each autonumber field.

A counter only moves forward (``loom.records.numbering``): the number of a deleted record
is never given again. The key is (entity, field, prefix), the prefix being the number's
text with its date filled in and its counter written ``#``, so that a pattern such as
``SO-{yyyy}{mm}-{seq:5}`` counts each month apart.

Revision ID: 20261202_1300
Revises: 20261202_1200
Create Date: 2026-12-02 13:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_1300"
down_revision = "20261202_1200"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_numbering",
        sa.Column("entity", sa.String(100), nullable=False),
        sa.Column("field", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(300), nullable=False),
        sa.Column("last", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("entity", "field", "prefix", name="pk_loom_numbering"),
    )


def downgrade() -> None:
    op.drop_table("loom_numbering")
