"""Import files: an import job's file in a table of its own, apart from the job's row.

The job's row is updated after every chunk of 1,000 rows it imports (its progress), and
SQLite writes a whole row again on every update: with the file in it, an import of a
million rows (a file of some 200 MB) wrote its file a thousand times over. Every file
moves to ``loom_import_files``, one row per job, and the job loses its ``content`` column.

Revision ID: 20261202_1200
Revises: 20261202_0710
Create Date: 2026-12-02 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261202_1200"
down_revision = "20261202_0710"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loom_import_files",
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("loom_import_jobs.id",
                                                           name="fk_loom_import_files_job_id_loom_import_jobs",
                                                           ondelete="CASCADE"), autoincrement=False, nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_loom_import_files"),
    )
    op.execute("INSERT INTO loom_import_files (job_id, content) SELECT id, content FROM loom_import_jobs")
    # SQLite drops the column in place (3.35 and later), keeping the table's AUTOINCREMENT
    op.drop_column("loom_import_jobs", "content")


def downgrade() -> None:
    op.add_column("loom_import_jobs", sa.Column("content", sa.LargeBinary()))
    op.execute("UPDATE loom_import_jobs SET content = (SELECT f.content FROM loom_import_files f "
               "WHERE f.job_id = loom_import_jobs.id)")
    op.drop_table("loom_import_files")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot make a column NOT NULL in place: the table is rebuilt, as it was
        with op.batch_alter_table("loom_import_jobs", recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}) as batch:
            batch.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)
    else:
        op.alter_column("loom_import_jobs", "content", existing_type=sa.LargeBinary(), nullable=False)
