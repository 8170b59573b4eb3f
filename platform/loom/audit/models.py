"""The audit log's tables (created by the alembic revision ``20261123_0900``)."""

from __future__ import annotations

import sqlalchemy as sa

from loom.db import Base

TIMESTAMP = sa.DateTime(timezone=True)
#: a SHA-256 in hex; fixed width where the database has one worth having
HASH = sa.String(64).with_variant(sa.CHAR(64), "postgresql")

#: one row per operation, never changed or removed; ``seq`` is the entry's place in the chain
audit_log = sa.Table(
    "loom_audit", Base.metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("at", TIMESTAMP, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("actor_id", sa.BigInteger()),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(400)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("entity", sa.String(100)),
    sa.Column("record_id", sa.BigInteger()),
    #: canonical JSON {field: [old, new]}, exactly the text that was hashed
    sa.Column("changes", sa.Text()),
    #: canonical JSON of what else describes the operation (a query, a reason, a summary)
    sa.Column("detail", sa.Text()),
    #: rows exported or imported
    sa.Column("rows", sa.BigInteger()),
    sa.Column("outcome", sa.String(10), nullable=False),
    sa.Column("prev_hash", HASH, nullable=False),
    sa.Column("hash", HASH, nullable=False),
    sa.Index("ix_loom_audit_entity_record", "entity", "record_id", "seq"),
    sa.Index("ix_loom_audit_actor", "actor", "seq"),
    sa.Index("ix_loom_audit_action", "action", "seq"),
    sa.Index("ix_loom_audit_at", "at"),
)

#: the chain's newest entry; its row lock serialises writers so the chain never forks
audit_head = sa.Table(
    "loom_audit_head", Base.metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("at", TIMESTAMP),
)

#: entries moved out of the database into compressed JSON Lines files
audit_archives = sa.Table(
    "loom_audit_archives", Base.metadata,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("file", sa.String(300), nullable=False),
    sa.Column("first_seq", sa.BigInteger(), nullable=False),
    sa.Column("last_seq", sa.BigInteger(), nullable=False),
    sa.Column("first_prev_hash", sa.String(64), nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
    sa.Column("entries", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
)
