"""Users, teams, role assignments, sessions and API tokens.

``loom_users`` is also the table of the built-in ``user`` entity: every link to ``user``
points here.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, BigId, utcnow

TIMESTAMP = sa.DateTime(timezone=True)


class Team(Base):
    """A team; teams form a tree (a regional team holds city teams)."""

    __tablename__ = "loom_teams"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    label: Mapped[str] = mapped_column(sa.String(200), default="")
    parent_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_teams.id", ondelete="RESTRICT"))
    created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)


class User(Base):
    __tablename__ = "loom_users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(150), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(200), default="")
    email: Mapped[str | None] = mapped_column(sa.String(320))
    is_active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    #: not bound by roles; for the first administrator and break-glass access
    is_superuser: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    mobile: Mapped[str | None] = mapped_column(sa.String(32))
    locale: Mapped[str] = mapped_column(sa.String(10), default="en", server_default="en")
    team_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_teams.id", ondelete="RESTRICT"))
    manager_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id", ondelete="RESTRICT"))
    last_login_at: Mapped[dt.datetime | None] = mapped_column(TIMESTAMP)


class SignInFailure(Base):
    """Failed sign-ins in a row under one username, and the lock they set. Keyed by the
    name as sent, whether or not such a user exists, so that an unknown name is counted
    and locked exactly like a real one and the replies never tell them apart."""

    __tablename__ = "loom_sign_in_failures"

    #: SHA-256 of the username as sent: any text of any length fits, and none is stored
    username_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    failed_logins: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    locked_until: Mapped[dt.datetime | None] = mapped_column(TIMESTAMP)
    #: failures older than the lock duration are forgotten (and their rows removed)
    last_failed_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, index=True)


class RoleAssignment(Base):
    __tablename__ = "loom_role_assignments"
    __table_args__ = (sa.UniqueConstraint("user_id", "role"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id", ondelete="CASCADE"))
    #: the name of a ``kind: role`` metadata document
    role: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)


class Session(Base):
    """A signed-in browser session; signing out deletes the row, so the cookie is dead."""

    __tablename__ = "loom_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP)
    ip: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.String(400))


class IdentityVersion(Base):
    """One row (id 1) whose number moves, in the same transaction, with every change to a
    credential or to what a principal is made of: users' names, locale, activity, team,
    manager and superuser flag, role assignments, the team tree, sessions and tokens.
    Triggers move it (revision 20261202_0710), so every writer does; each process compares
    it on every request and drops its cached principals when it has moved."""

    __tablename__ = "loom_identity_version"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    number: Mapped[int] = mapped_column(sa.BigInteger)


class ApiToken(Base):
    """A personal API token; only its SHA-256 is kept, the token is shown once."""

    __tablename__ = "loom_api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    #: the token's first characters, so a user can tell their tokens apart
    prefix: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id", ondelete="CASCADE"))
    read_only: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(TIMESTAMP)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(TIMESTAMP)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(TIMESTAMP)
