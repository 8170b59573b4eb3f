"""Job schedules: when each plugin's scheduled job and each scheduled rule last ran and
runs next, kept by the worker (``loom.integrations.models.JobSchedule``).

Revision ID: 20261202_1500
Revises: 20261202_1400
Create Date: 2026-12-02 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_1500"
down_revision = "20261202_1400"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_job_schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("plugin", sa.String(100), nullable=False),
        sa.Column("schedule", sa.String(200), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True)),
        sa.Column("last_outcome", sa.String(20)),
        sa.Column("last_error", sa.Text()),
        sa.Column("last_duration_ms", sa.Float()),
    )


def downgrade() -> None:
    op.drop_table("loom_job_schedules")
