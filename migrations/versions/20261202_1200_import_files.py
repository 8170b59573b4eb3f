"""Import files: an import job's file in a table of its own, apart from the job's row, in
parts of 1 MiB.

The job's row is updated after every chunk of 1,000 rows it imports (its progress), and
SQLite writes a whole row again on every update: with the file in it, an import of a
million rows (a file of some 200 MB) wrote its file a thousand times over. In parts, the
file is written and read a part at a time, never held whole. Every file moves to
``loom_import_files`` and the job loses its ``content`` column; a downgrade puts each
file back together in its job's row.

The moves are written out here rather than imported, so that this revision does what it
did when it was written whatever the code becomes.

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

PART = 1 << 20


def upgrade() -> None:
    files = op.create_table(
        "loom_import_files",
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("loom_import_jobs.id",
                                                           name="fk_loom_import_files_job_id_loom_import_jobs",
                                                           ondelete="CASCADE"), autoincrement=False, nullable=False),
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "part", name="pk_loom_import_files"),
    )
    conn = op.get_bind()
    jobs = sa.table("loom_import_jobs", sa.column("id", sa.BigInteger()), sa.column("content", sa.LargeBinary()))
    for job_id in conn.execute(sa.select(jobs.c.id).order_by(jobs.c.id)).scalars().all():
        content = conn.execute(sa.select(jobs.c.content).where(jobs.c.id == job_id)).scalar_one()
        for part, start in enumerate(range(0, len(content), PART)):
            conn.execute(files.insert(), {"job_id": job_id, "part": part, "content": content[start:start + PART]})
    # SQLite drops the column in place (3.35 and later), keeping the table's AUTOINCREMENT
    op.drop_column("loom_import_jobs", "content")


def downgrade() -> None:
    op.add_column("loom_import_jobs", sa.Column("content", sa.LargeBinary()))
    conn = op.get_bind()
    jobs = sa.table("loom_import_jobs", sa.column("id", sa.BigInteger()), sa.column("content", sa.LargeBinary()))
    files = sa.table("loom_import_files", sa.column("job_id", sa.BigInteger()), sa.column("part", sa.Integer()),
                     sa.column("content", sa.LargeBinary()))
    for job_id in conn.execute(sa.select(jobs.c.id).order_by(jobs.c.id)).scalars().all():
        parts = conn.execute(sa.select(files.c.content).where(files.c.job_id == job_id)
                             .order_by(files.c.part)).scalars().all()
        conn.execute(jobs.update().where(jobs.c.id == job_id), {"content": b"".join(bytes(p) for p in parts)})
    op.drop_table("loom_import_files")
    if conn.dialect.name == "sqlite":
        # SQLite cannot make a column NOT NULL in place: the table is rebuilt, as it was
        with op.batch_alter_table("loom_import_jobs", recreate="always",
                                  table_kwargs={"sqlite_autoincrement": True}) as batch:
            batch.alter_column("content", existing_type=sa.LargeBinary(), nullable=False)
    else:
        op.alter_column("loom_import_jobs", "content", existing_type=sa.LargeBinary(), nullable=False)
