"""Identity: passwords, teams, role assignments, sessions and API tokens.

Revision ID: 20261122_1000
Revises: 20261122_0900
Create Date: 2026-11-22 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "20261122_1000"
down_revision = "20261122_0900"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "loom_teams",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), sa.ForeignKey("loom_teams.id", name="fk_loom_teams_parent_id_loom_teams",
                                                              ondelete="RESTRICT")),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_teams"),
        sa.UniqueConstraint("name", name="uq_loom_teams_name"),
    )
    with op.batch_alter_table("loom_users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(200)))
        batch.add_column(sa.Column("is_superuser", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("mobile", sa.String(32)))
        batch.add_column(sa.Column("locale", sa.String(10), nullable=False, server_default="en"))
        batch.add_column(sa.Column("team_id", sa.BigInteger()))
        batch.add_column(sa.Column("manager_id", sa.BigInteger()))
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", TIMESTAMP))
        batch.add_column(sa.Column("last_login_at", TIMESTAMP))
        batch.create_foreign_key("fk_loom_users_team_id_loom_teams", "loom_teams", ["team_id"], ["id"],
                                 ondelete="RESTRICT")
        batch.create_foreign_key("fk_loom_users_manager_id_loom_users", "loom_users", ["manager_id"], ["id"],
                                 ondelete="RESTRICT")
    op.create_table(
        "loom_role_assignments",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("loom_users.id", name="fk_loom_role_assignments_user_id_loom_users",
                                                            ondelete="CASCADE"), nullable=False),
        sa.Column("role", sa.String(100), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_loom_role_assignments"),
        sa.UniqueConstraint("user_id", "role", name="uq_loom_role_assignments_user_id_role"),
    )
    op.create_table(
        "loom_sessions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("loom_users.id", name="fk_loom_sessions_user_id_loom_users",
                                                            ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_seen_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.Column("ip", sa.String(64)),
        sa.Column("user_agent", sa.String(400)),
        sa.PrimaryKeyConstraint("id", name="pk_loom_sessions"),
        sa.UniqueConstraint("token_hash", name="uq_loom_sessions_token_hash"),
    )
    op.create_table(
        "loom_api_tokens",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("loom_users.id", name="fk_loom_api_tokens_user_id_loom_users",
                                                            ondelete="CASCADE"), nullable=False),
        sa.Column("read_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP),
        sa.Column("revoked_at", TIMESTAMP),
        sa.Column("last_used_at", TIMESTAMP),
        sa.PrimaryKeyConstraint("id", name="pk_loom_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_loom_api_tokens_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("loom_api_tokens")
    op.drop_table("loom_sessions")
    op.drop_table("loom_role_assignments")
    with op.batch_alter_table("loom_users") as batch:
        batch.drop_constraint("fk_loom_users_manager_id_loom_users", type_="foreignkey")
        batch.drop_constraint("fk_loom_users_team_id_loom_teams", type_="foreignkey")
        for column in ("last_login_at", "locked_until", "failed_logins", "manager_id", "team_id", "locale",
                       "mobile", "is_superuser", "password_hash"):
            batch.drop_column(column)
    op.drop_table("loom_teams")
