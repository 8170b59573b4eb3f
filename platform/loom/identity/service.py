"""The identity service: users, teams, role assignments, passwords, sessions and API
tokens. The only code that writes Loom's identity tables.

Every change and every sign-in event is written to the outbox (in the same transaction)
for the audit log.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from loom.audit.log import MASK, AuditLog
from loom.db import reading, utcnow, write_transaction
from loom.errors import BadRequest, Conflict, LoomError, NotFound, ValidationError, error_entry
from loom.events import emit
from loom.identity.credentials import (
    CredentialCache,
    changing,
    session_key,
    token_key,
    version_query,
)
from loom.identity.models import (
    TIMESTAMP,
    ApiToken,
    RoleAssignment,
    Session,
    SignInFailure,
    Team,
    User,
)
from loom.principal import Principal

users = User.__table__
teams = Team.__table__
assignments = RoleAssignment.__table__
sessions = Session.__table__
tokens = ApiToken.__table__
failures = SignInFailure.__table__

#: failed sign-ins in a row that lock an account, and for how long
MAX_FAILED_LOGINS = 5
LOCK_DURATION = dt.timedelta(minutes=15)
SESSION_LIFETIME = dt.timedelta(hours=12)
#: the longest a token can be made to last (ten years)
MAX_TOKEN_DAYS = 3650
TOKEN_PREFIX = "loom_"
_hasher = PasswordHasher()


class Unauthorized(LoomError):
    status = 401
    type = "https://loom.dev/problems/unauthorized"
    title = "Not signed in"


class Locked(LoomError):
    status = 429
    type = "https://loom.dev/problems/locked"
    title = "Too many failed sign-ins"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns naive datetimes; Loom stores UTC everywhere."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@dataclass(frozen=True)
class NewToken:
    token: str
    id: int
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class Account:
    """A user as the administration sees them before acting on their account."""

    id: int
    username: str
    is_superuser: bool
    roles: tuple[str, ...]


def _with_roles(query: sa.Select) -> sa.Select:
    """``query`` over users, plus each user's roles as one comma-separated column."""
    roles = (sa.select(sa.func.aggregate_strings(assignments.c.role, ","))
             .where(assignments.c.user_id == users.c.id).scalar_subquery())
    return query.add_columns(roles.label("role_list"))


class IdentityService:
    def __init__(self, engine: sa.Engine, audit: AuditLog | None = None):
        self.engine = engine
        # by default the database's log, without the alert rules the app's log carries
        self.audit = audit or AuditLog(engine)
        #: principals by credential, and the team tree, for the identity version last read
        self.credentials = CredentialCache()
        #: the statement reading the identity version beside others, per set of others
        self._version_reads: dict[tuple[sa.ScalarSelect, ...], sa.Select] = {}

    # -- the identity version -----------------------------------------------------------

    def read_versions(self, *others: sa.ScalarSelect) -> tuple[int | None, tuple[Any, ...]]:
        """The identity version and ``others`` (another service's version, say), read in one
        statement; the credential cache is emptied when the identity version has moved.
        Returns the identity version, for the lookups that follow, and the others' values."""
        statement = self._version_reads.get(others)
        if statement is None:  # built once: building it costs more than running it
            statement = self._version_reads[others] = sa.select(version_query(), *others)
        with reading(self.engine) as conn:
            row = conn.execute(statement).one()
        self.credentials.observe(row[0])
        return row[0], tuple(row[1:])

    # -- users --------------------------------------------------------------------------

    def create_user(self, username: str, *, password: str | None = None, display_name: str = "",
                    email: str | None = None, mobile: str | None = None, locale: str = "en",
                    team: str | None = None, roles: Iterable[str] = (), is_superuser: bool = False,
                    actor: str = "system") -> int:
        username = username.strip()
        if not username or len(username) > 150 or any(ch.isspace() for ch in username):
            raise ValidationError("invalid username", errors=[
                error_entry("username", "bad_username", "1 to 150 characters without spaces")])
        if password is not None:
            self._check_password(password)
        with changing(self.engine) as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
                raise Conflict(f"a user named {username} already exists",
                               code="taken", errors=[error_entry("username", "taken", "already taken")])
            team_id = self._team_id(conn, team) if team else None
            user_id = conn.execute(users.insert().values(
                username=username, display_name=display_name or username, email=email, mobile=mobile,
                locale=locale, team_id=team_id, is_active=True, is_superuser=is_superuser,
                password_hash=_hasher.hash(password) if password else None, created_at=utcnow()).returning(users.c.id)).scalar_one()
            for role in roles:
                conn.execute(assignments.insert().values(user_id=user_id, role=role, created_at=utcnow()))
            self._log(conn, "user.created", actor=actor, entity="user", record_id=user_id,
                 payload={"username": username, "team": team, "roles": list(roles), "is_superuser": is_superuser})
        return user_id

    def _log(self, conn: sa.Connection, topic: str, *, actor: str, payload: dict[str, Any],
             entity: str | None = None, record_id: int | None = None,
             changes: dict[str, list[Any]] | None = None) -> None:
        """An event for integrations and its audit entry, in ``conn``'s transaction."""
        emit(conn, topic=topic, actor=actor, entity=entity, record_id=record_id, payload=payload)
        action, outcome = _AUDIT_ACTIONS[topic]
        # signing in and first token use are done by the user the entry is about
        by_the_user = entity == "user" and topic.startswith(("auth.", "token.first"))
        detail = {k: v for k, v in payload.items() if k not in ("ip", "user_agent", "changes")}
        self.audit.add(conn, action, actor=actor, actor_id=record_id if by_the_user else None, entity=entity,
                       record_id=record_id, changes=changes, detail=detail or None, outcome=outcome)

    @staticmethod
    def _check_password(password: str) -> None:
        if len(password) < 8:
            raise ValidationError("password too short", errors=[
                error_entry("password", "too_short", "at least 8 characters", min=8)])

    def user_id(self, conn: sa.Connection, username: str) -> int:
        found = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
        if found is None:
            raise NotFound(f"there is no user named {username}")
        return found

    def update_user(self, user_id: int, changes: dict[str, Any], *, actor: str) -> None:
        allowed = {"display_name", "email", "mobile", "locale", "is_active", "team", "manager"}
        unknown = set(changes) - allowed - {"password"}
        if unknown:
            raise ValidationError("unknown fields", errors=[error_entry(f, "not_changeable", "cannot be changed here")
                                                            for f in sorted(unknown)])
        with changing(self.engine) as conn:
            before = conn.execute(sa.select(users).where(users.c.id == user_id)).mappings().first()
            if before is None:
                raise NotFound(f"there is no user with id {user_id}")
            values = {k: v for k, v in changes.items() if k in allowed - {"team", "manager"}}
            if "team" in changes:
                values["team_id"] = self._team_id(conn, changes["team"]) if changes["team"] else None
            if "manager" in changes:
                values["manager_id"] = self.user_id(conn, changes["manager"]) if changes["manager"] else None
            if "password" in changes:
                self._check_password(changes["password"])
                values["password_hash"] = _hasher.hash(changes["password"])
                # a new password unlocks the account
                conn.execute(failures.delete().where(failures.c.username_hash == _digest(before["username"])))
            if values:
                conn.execute(users.update().where(users.c.id == user_id).values(**values))
            if changes.get("is_active") is False or "password" in changes:
                conn.execute(sessions.delete().where(sessions.c.user_id == user_id))
            logged = {k: ("***" if k == "password" else v) for k, v in changes.items()}
            old = {**before, "team": before["team_id"], "manager": before["manager_id"], "password": MASK}
            self._log(conn, "user.updated", actor=actor, entity="user", record_id=user_id, payload={"changes": logged},
                      changes={k: [old.get(k), v] for k, v in logged.items()})

    def account(self, user_id: int) -> Account:
        """Who a user is, for deciding who may change their account (NotFound if nobody)."""
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(users.c.id, users.c.username, users.c.is_superuser)
                               .where(users.c.id == user_id)).first()
            if row is None:
                raise NotFound(f"there is no user with id {user_id}")
            roles = tuple(self._roles(conn, [user_id]).get(user_id, ()))
        return Account(row.id, row.username, bool(row.is_superuser), roles)

    def list_users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users.c.id, users.c.username, users.c.display_name, users.c.email,
                                          users.c.mobile, users.c.locale, users.c.is_active, users.c.is_superuser,
                                          teams.c.name.label("team"))
                                .select_from(users.outerjoin(teams, users.c.team_id == teams.c.id))
                                .order_by(users.c.id)).mappings().all()
            roles = self._roles(conn, [r["id"] for r in rows])
        return [{**row, "roles": roles.get(row["id"], [])} for row in rows]

    def display_names(self, user_ids: set[int]) -> dict[int, str]:
        """The names people know each user by (the display name, else the username)."""
        if not user_ids:
            return {}
        with reading(self.engine) as conn:
            rows = conn.execute(sa.select(users.c.id, users.c.display_name, users.c.username)
                                .where(users.c.id.in_(user_ids)))
            return {row.id: row.display_name or row.username for row in rows}

    def _roles(self, conn: sa.Connection, user_ids: list[int]) -> dict[int, list[str]]:
        result: dict[int, list[str]] = {}
        for user_id, role in conn.execute(sa.select(assignments.c.user_id, assignments.c.role)
                                          .where(assignments.c.user_id.in_(user_ids)).order_by(assignments.c.role)):
            result.setdefault(user_id, []).append(role)
        return result

    # -- role assignments -------------------------------------------------------------

    def assign(self, user_id: int, role: str, *, actor: str) -> None:
        with changing(self.engine) as conn:
            exists = conn.execute(sa.select(assignments.c.id).where(assignments.c.user_id == user_id,
                                                                    assignments.c.role == role)).first()
            if exists:
                return
            conn.execute(assignments.insert().values(user_id=user_id, role=role, created_at=utcnow()))
            self._log(conn, "role.assigned", actor=actor, entity="user", record_id=user_id, payload={"role": role})

    def unassign(self, user_id: int, role: str, *, actor: str) -> None:
        with changing(self.engine) as conn:
            deleted = conn.execute(assignments.delete().where(assignments.c.user_id == user_id,
                                                              assignments.c.role == role)).rowcount
            if not deleted:
                raise NotFound(f"user {user_id} does not have the role {role}")
            self._log(conn, "role.unassigned", actor=actor, entity="user", record_id=user_id, payload={"role": role})

    # -- teams --------------------------------------------------------------------------

    def _team_id(self, conn: sa.Connection, name: str) -> int:
        found = conn.execute(sa.select(teams.c.id).where(teams.c.name == name)).scalar()
        if found is None:
            raise NotFound(f"there is no team named {name}")
        return found

    def create_team(self, name: str, *, label: str = "", parent: str | None = None, actor: str = "system") -> int:
        if not name.strip():
            raise ValidationError("invalid team name", errors=[error_entry("name", "required", "is required")])
        with changing(self.engine) as conn:
            if conn.execute(sa.select(teams.c.id).where(teams.c.name == name)).first():
                raise Conflict(f"a team named {name} already exists", code="taken",
                               errors=[error_entry("name", "taken", "already taken")])
            parent_id = self._team_id(conn, parent) if parent else None
            team_id = conn.execute(teams.insert().values(name=name, label=label or name, parent_id=parent_id,
                                                         created_at=utcnow()).returning(teams.c.id)).scalar_one()
            self._log(conn, "team.created", actor=actor, entity="team", record_id=team_id,
                 payload={"name": name, "parent": parent})
        return team_id

    def move_team(self, name: str, parent: str | None, *, actor: str) -> None:
        with changing(self.engine) as conn:
            team_id = self._team_id(conn, name)
            parent_id = self._team_id(conn, parent) if parent else None
            if parent_id is not None and parent_id in self._subtree(conn, team_id):
                raise BadRequest(f"{parent} is below {name}; a team cannot be moved under itself")
            conn.execute(teams.update().where(teams.c.id == team_id).values(parent_id=parent_id))
            self._log(conn, "team.moved", actor=actor, entity="team", record_id=team_id, payload={"parent": parent})

    def list_teams(self) -> list[dict[str, Any]]:
        parent = teams.alias("parent")
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(teams.c.id, teams.c.name, teams.c.label, parent.c.name.label("parent"))
                .select_from(teams.outerjoin(parent, teams.c.parent_id == parent.c.id)).order_by(teams.c.name)).mappings()]

    def _team_children(self, conn: sa.Connection, version: int | None) -> dict[int | None, list[int]]:
        """The team tree: kept with the cached principals under identity ``version`` (a
        request's), read afresh without one (a write checking for cycles, the CLI)."""
        cached = self.credentials.team_tree(version)
        if cached is not None:
            return cached
        children: dict[int | None, list[int]] = {}
        for ident, parent_id in conn.execute(sa.select(teams.c.id, teams.c.parent_id)):
            children.setdefault(parent_id, []).append(ident)
        self.credentials.keep_team_tree(children, version)
        return children

    def _subtree(self, conn: sa.Connection, team_id: int, version: int | None = None) -> tuple[int, ...]:
        """The team and every team below it."""
        children = self._team_children(conn, version)
        result, pending = [], [team_id]
        while pending:
            current = pending.pop()
            if current in result:
                continue
            result.append(current)
            pending.extend(children.get(current, ()))
        return tuple(result)

    # -- principals ---------------------------------------------------------------------

    def principal(self, conn: sa.Connection, user: Any, *, read_only: bool = False,
                  version: int | None = None) -> Principal:
        """The principal of a user row; the row may bring its roles along (``role_list``,
        see ``_with_roles``), saving a query. With the identity ``version`` a request has
        read, the team tree may come from the cache."""
        role_list = getattr(user, "role_list", None)
        if role_list is not None or hasattr(user, "role_list"):
            roles = tuple(sorted(role_list.split(","))) if role_list else ()
        else:
            roles = tuple(conn.execute(sa.select(assignments.c.role).where(assignments.c.user_id == user.id)
                                       .order_by(assignments.c.role)).scalars())
        team_ids = self._subtree(conn, user.team_id, version) if user.team_id is not None else ()
        return Principal(name=user.username, user_id=user.id, locale=user.locale or "en", roles=roles,
                         team_id=user.team_id, team_ids=team_ids, manager_id=user.manager_id,
                         read_only=read_only, is_superuser=bool(user.is_superuser),
                         display_name=getattr(user, "display_name", None) or None)

    def principal_for(self, username: str) -> Principal:
        with self.engine.connect() as conn:
            user = conn.execute(sa.select(users).where(users.c.username == username)).first()
            if user is None:
                raise NotFound(f"there is no user named {username}")
            return self.principal(conn, user)

    # -- signing in ---------------------------------------------------------------------

    def sign_in(self, username: str, password: str, *, ip: str | None, user_agent: str | None) -> tuple[str, Principal]:
        """Check a password and open a session; returns (session token, principal).

        Unknown, inactive and real users get the same work (an argon2 check, against a
        dummy hash where there is no real one) and the same replies: failures are counted
        per username as sent, and ``MAX_FAILED_LOGINS`` in a row lock that name for
        ``LOCK_DURATION`` whether or not a user has it. Failures are counted in one
        statement, so parallel attempts cannot slip past the lock, and a right password
        is refused once the lock is set."""
        now = utcnow()
        context = {"ip": ip, "user_agent": (user_agent or "")[:400]}
        key = _digest(username)
        with reading(self.engine) as conn:
            user = conn.execute(sa.select(users).where(users.c.username == username)).first()
            locked_until = _aware(conn.execute(sa.select(failures.c.locked_until)
                                               .where(failures.c.username_hash == key)).scalar())
        real = user is not None and user.is_active and bool(user.password_hash)
        who = _SignInSubject(username, user.id if real else None, context)
        if locked_until is not None and locked_until > now:
            # already locked: refused without the password check, for every name alike
            with write_transaction(self.engine) as conn:
                refusal = self._locked(conn, who, locked_until, now)
            raise refusal
        right = _verify(user.password_hash if real else _dummy_hash(), password) and real
        with write_transaction(self.engine) as conn:
            if right:
                locked_until = _aware(conn.execute(sa.select(failures.c.locked_until).with_for_update()
                                                   .where(failures.c.username_hash == key)).scalar())
                if locked_until is not None and locked_until > now:
                    failure: LoomError = self._locked(conn, who, locked_until, now)
                else:
                    return self._open_session(conn, user, password, key, context, now)
            else:
                failure = self._count_failure(conn, who, key, now)
        raise failure

    def _locked(self, conn: sa.Connection, who: _SignInSubject, until: dt.datetime, now: dt.datetime) -> Locked:
        """Log a sign-in refused because the name is locked; the error to raise."""
        self._log(conn, "auth.login_failed", **who.logged, payload={**who.payload, "reason": "locked"})
        wait = max(1, math.ceil((until - now).total_seconds()))
        minutes = math.ceil(wait / 60)
        return Locked(f"too many failed sign-ins; try again in {minutes} minute{'s' if minutes > 1 else ''}", wait)

    def _count_failure(self, conn: sa.Connection, who: _SignInSubject, key: str, now: dt.datetime) -> LoomError:
        """Count one failed sign-in atomically (an upsert that only an unlocked name
        passes); the one failure that reaches the limit sets the lock. The error to raise."""
        stale = now - LOCK_DURATION
        count = sa.case((failures.c.last_failed_at < stale, 1), else_=failures.c.failed_logins + 1)
        reaches = count >= MAX_FAILED_LOGINS
        until = now + LOCK_DURATION
        upsert = _upsert(conn)(failures).values(username_hash=key, failed_logins=1, locked_until=None,
                                                last_failed_at=now)
        upsert = upsert.on_conflict_do_update(
            index_elements=[failures.c.username_hash],
            set_={"failed_logins": sa.case((reaches, 0), else_=count),
                  "locked_until": sa.case((reaches, sa.literal(until, TIMESTAMP)), else_=sa.null()),
                  "last_failed_at": now},
            where=sa.or_(failures.c.locked_until.is_(None), failures.c.locked_until <= now))
        row = conn.execute(upsert.returning(failures.c.failed_logins, failures.c.locked_until)).first()
        if row is None:  # another attempt has just set the lock
            locked_until = _aware(conn.execute(sa.select(failures.c.locked_until)
                                               .where(failures.c.username_hash == key)).scalar())
            return self._locked(conn, who, locked_until or until, now)
        set_lock = row.locked_until is not None
        reason = "wrong password" if who.user_id is not None else "unknown or inactive user"
        self._log(conn, "auth.login_failed", **who.logged, payload={
            **who.payload, "reason": reason, "failed_in_a_row": MAX_FAILED_LOGINS if set_lock else row.failed_logins})
        if set_lock:
            self._log(conn, "auth.locked", **who.logged, payload={**who.context, "until": until.isoformat()})
        # forgotten failures of other names: nothing reads them any more
        conn.execute(failures.delete().where(failures.c.last_failed_at < stale, failures.c.username_hash != key,
                                             sa.or_(failures.c.locked_until.is_(None),
                                                    failures.c.locked_until <= now)))
        return Unauthorized("wrong username or password")

    def _open_session(self, conn: sa.Connection, user: Any, password: str, key: str, context: dict[str, Any],
                      now: dt.datetime) -> tuple[str, Principal]:
        """A right password on an unlocked name: forget its failures, open a session."""
        conn.execute(failures.delete().where(failures.c.username_hash == key))
        token = secrets.token_urlsafe(32)
        values: dict[str, Any] = {"last_login_at": now}
        if _hasher.check_needs_rehash(user.password_hash):
            values["password_hash"] = _hasher.hash(password)
        conn.execute(users.update().where(users.c.id == user.id).values(**values))
        conn.execute(sessions.insert().values(token_hash=_digest(token), user_id=user.id, created_at=now,
                                              last_seen_at=now, expires_at=now + SESSION_LIFETIME,
                                              ip=context["ip"], user_agent=context["user_agent"]))
        self._log(conn, "auth.login", actor=user.username, entity="user", record_id=user.id, payload=context)
        return token, self.principal(conn, user)

    def sign_out(self, token: str, *, actor: str, ip: str | None = None) -> None:
        with changing(self.engine) as conn:
            deleted = conn.execute(sessions.delete().where(sessions.c.token_hash == _digest(token))).rowcount
            if deleted:
                self._log(conn, "auth.logout", actor=actor, payload={"ip": ip})

    def session_principal(self, token: str, *, version: int | None = None) -> Principal | None:
        """The principal of a live session. With the identity ``version`` the request has
        just read (``read_versions``), it may come from the credential cache."""
        now = utcnow()
        digest = _digest(token)
        cached = self.credentials.principal(session_key(digest), now) if version is not None else None
        if cached is not None:
            return cached
        with reading(self.engine) as conn:
            row = conn.execute(_with_roles(sa.select(users, sessions.c.expires_at.label("session_expires")))
                               .select_from(sessions.join(users, sessions.c.user_id == users.c.id))
                               .where(sessions.c.token_hash == digest)).first()
            if row is None or not row.is_active or _aware(row.session_expires) <= now:
                return None
            principal = self.principal(conn, row, version=version)
        self.credentials.keep(session_key(digest), principal, _aware(row.session_expires), version)
        return principal

    # -- API tokens ---------------------------------------------------------------------

    def create_token(self, username: str, *, name: str = "", expires_days: int | None = None,
                     read_only: bool = False, actor: str = "system") -> NewToken:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        if expires_days is not None and not 1 <= expires_days <= MAX_TOKEN_DAYS:
            raise ValidationError("invalid expiry", errors=[
                error_entry("expires", "token_days", f"1 to {MAX_TOKEN_DAYS} days", max=MAX_TOKEN_DAYS)])
        expires_at = utcnow() + dt.timedelta(days=expires_days) if expires_days else None
        with write_transaction(self.engine) as conn:
            user_id = self.user_id(conn, username)
            token_id = conn.execute(tokens.insert().values(
                token_hash=_digest(token), prefix=token[:12], name=name, user_id=user_id, read_only=read_only,
                created_at=utcnow(), expires_at=expires_at).returning(tokens.c.id)).scalar_one()
            self._log(conn, "token.created", actor=actor, entity="user", record_id=user_id,
                 payload={"token_id": token_id, "prefix": token[:12], "name": name, "read_only": read_only,
                          "expires_at": expires_at.isoformat() if expires_at else None})
        return NewToken(token, token_id, expires_at)

    def revoke_token(self, token_id: int, *, actor: str) -> None:
        with changing(self.engine) as conn:
            row = conn.execute(sa.select(tokens.c.user_id).where(tokens.c.id == token_id,
                                                                 tokens.c.revoked_at.is_(None))).first()
            if row is None:
                raise NotFound(f"there is no active token with id {token_id}")
            conn.execute(tokens.update().where(tokens.c.id == token_id).values(revoked_at=utcnow()))
            self._log(conn, "token.revoked", actor=actor, entity="user", record_id=row.user_id,
                 payload={"token_id": token_id})

    def token_owner(self, token_id: int) -> int:
        """The id of the user an active token belongs to (NotFound if there is no such token)."""
        with reading(self.engine) as conn:
            owner = conn.execute(sa.select(tokens.c.user_id).where(tokens.c.id == token_id,
                                                                   tokens.c.revoked_at.is_(None))).scalar()
        if owner is None:
            raise NotFound(f"there is no active token with id {token_id}")
        return owner

    def token_principal(self, token: str, *, version: int | None = None) -> Principal | None:
        """The principal of a valid token; its first use is recorded. With the identity
        ``version`` the request has just read (``read_versions``), it may come from the
        credential cache: a token is kept there only once its first use is recorded, so
        a cached token never needs that write again."""
        now = utcnow()
        digest = _digest(token)
        cached = self.credentials.principal(token_key(digest), now) if version is not None else None
        if cached is not None:
            return cached
        with reading(self.engine) as conn:
            row = conn.execute(_with_roles(sa.select(users, tokens.c.id.label("token_id"), tokens.c.read_only,
                                                     tokens.c.expires_at.label("token_expires"), tokens.c.revoked_at,
                                                     tokens.c.last_used_at))
                               .select_from(tokens.join(users, tokens.c.user_id == users.c.id))
                               .where(tokens.c.token_hash == digest)).first()
            if (row is None or row.revoked_at is not None or not row.is_active
                    or (row.token_expires is not None and _aware(row.token_expires) <= now)):
                return None
            principal = self.principal(conn, row, read_only=row.read_only, version=version)
        if row.last_used_at is None:
            with write_transaction(self.engine) as conn:
                first = conn.execute(tokens.update().where(tokens.c.id == row.token_id, tokens.c.last_used_at.is_(None))
                                     .values(last_used_at=now)).rowcount
                if first:
                    self._log(conn, "token.first_used", actor=row.username, entity="user", record_id=row.id,
                         payload={"token_id": row.token_id})
        self.credentials.keep(token_key(digest), principal, _aware(row.token_expires), version)
        return principal


@dataclass(frozen=True)
class _SignInSubject:
    """Who a sign-in attempt names, as the audit log records it: the user when one
    exists and may sign in, else the name as sent."""

    username: str
    user_id: int | None
    context: dict[str, Any]

    @property
    def logged(self) -> dict[str, Any]:
        if self.user_id is None:
            return {"actor": f"anonymous:{self.username}"[:200]}
        return {"actor": self.username, "entity": "user", "record_id": self.user_id}

    @property
    def payload(self) -> dict[str, Any]:
        return {**self.context, "username": self.username} if self.user_id is None else dict(self.context)


def _upsert(conn: sa.Connection):
    """The INSERT ... ON CONFLICT construct of ``conn``'s database."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


@functools.cache
def _dummy_hash() -> str:
    """An argon2 hash of a random password, made like real ones: checking a password
    against it costs what checking a real user's does, and never succeeds."""
    return _hasher.hash(secrets.token_urlsafe(32))


#: event topic -> (audit action, outcome)
_AUDIT_ACTIONS = {
    "user.created": ("user.create", "ok"), "user.updated": ("user.update", "ok"),
    "role.assigned": ("role.assign", "ok"), "role.unassigned": ("role.unassign", "ok"),
    "team.created": ("team.create", "ok"), "team.moved": ("team.move", "ok"),
    "auth.login": ("auth.sign_in", "ok"), "auth.logout": ("auth.sign_out", "ok"),
    "auth.login_failed": ("auth.sign_in_failed", "denied"), "auth.locked": ("auth.locked", "denied"),
    "token.created": ("token.create", "ok"), "token.revoked": ("token.revoke", "ok"),
    "token.first_used": ("token.first_use", "ok"),
}


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
