"""The audit log: an append-only, hash-chained table, its chain head and its archives.

On PostgreSQL the log is partitioned by month (partitions are created ahead of time by
the writer; a default partition catches anything else). UPDATE, DELETE and TRUNCATE are
refused by triggers on both databases.

Revision ID: 20261123_0900
Revises: 20261122_1100
Create Date: 2026-11-23 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261123_0900"
down_revision = "20261122_1100"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)
GENESIS = "0" * 64

_PG_TABLE = """
CREATE TABLE loom_audit (
    seq bigint NOT NULL,
    at timestamptz NOT NULL,
    actor varchar(200) NOT NULL,
    actor_id bigint,
    ip varchar(64),
    user_agent varchar(400),
    request_id varchar(64),
    action varchar(64) NOT NULL,
    entity varchar(100),
    record_id bigint,
    changes text,
    detail text,
    rows bigint,
    outcome varchar(10) NOT NULL,
    prev_hash char(64) NOT NULL,
    hash char(64) NOT NULL,
    CONSTRAINT pk_loom_audit PRIMARY KEY (seq, at)
) PARTITION BY RANGE (at)
"""

_PG_GUARD = """
CREATE FUNCTION loom_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'loom_audit is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

_SQLITE_GUARDS = [
    "CREATE TRIGGER loom_audit_no_update BEFORE UPDATE ON loom_audit "
    "BEGIN SELECT RAISE(ABORT, 'loom_audit is append-only: UPDATE is not allowed'); END",
    "CREATE TRIGGER loom_audit_no_delete BEFORE DELETE ON loom_audit "
    "BEGIN SELECT RAISE(ABORT, 'loom_audit is append-only: DELETE is not allowed'); END",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(_PG_TABLE)
        op.execute("CREATE TABLE loom_audit_default PARTITION OF loom_audit DEFAULT")
        op.execute(_PG_GUARD)
        op.execute("CREATE TRIGGER loom_audit_no_change BEFORE UPDATE OR DELETE ON loom_audit "
                   "FOR EACH ROW EXECUTE FUNCTION loom_audit_append_only()")
        for table in ("loom_audit", "loom_audit_default"):
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION loom_audit_append_only()")
    else:
        op.create_table(
            "loom_audit",
            sa.Column("seq", sa.Integer(), nullable=False),
            sa.Column("at", TIMESTAMP, nullable=False),
            sa.Column("actor", sa.String(200), nullable=False),
            sa.Column("actor_id", sa.BigInteger()),
            sa.Column("ip", sa.String(64)),
            sa.Column("user_agent", sa.String(400)),
            sa.Column("request_id", sa.String(64)),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("entity", sa.String(100)),
            sa.Column("record_id", sa.BigInteger()),
            sa.Column("changes", sa.Text()),
            sa.Column("detail", sa.Text()),
            sa.Column("rows", sa.BigInteger()),
            sa.Column("outcome", sa.String(10), nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.PrimaryKeyConstraint("seq", name="pk_loom_audit"),
        )
        for statement in _SQLITE_GUARDS:
            op.execute(statement)
    op.create_index("ix_loom_audit_entity_record", "loom_audit", ["entity", "record_id", "seq"])
    op.create_index("ix_loom_audit_actor", "loom_audit", ["actor", "seq"])
    op.create_index("ix_loom_audit_action", "loom_audit", ["action", "seq"])
    op.create_index("ix_loom_audit_at", "loom_audit", ["at"])

    head = op.create_table(
        "loom_audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("at", TIMESTAMP),
        sa.PrimaryKeyConstraint("id", name="pk_loom_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS, "at": None}])
    op.create_table(
        "loom_audit_archives",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file", sa.String(300), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("first_prev_hash", sa.String(64), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_audit_archives"),
    )


def downgrade() -> None:
    op.drop_table("loom_audit_archives")
    op.drop_table("loom_audit_head")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE loom_audit CASCADE")
        op.execute("DROP FUNCTION loom_audit_append_only()")
    else:
        op.drop_table("loom_audit")
