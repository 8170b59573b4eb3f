"""The identity service: users, teams, role assignments, passwords, sessions and API
tokens. The only code that writes Loom's identity tables.

Every change and every sign-in event is written to the outbox (in the same transaction)
for the audit log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from loom.audit.log import MASK, AuditLog
from loom.db import reading, utcnow, write_transaction
from loom.errors import BadRequest, Conflict, LoomError, NotFound, ValidationError
from loom.events import emit
from loom.identity.models import ApiToken, RoleAssignment, Session, Team, User
from loom.identity.principal import Principal

users = User.__table__
teams = Team.__table__
assignments = RoleAssignment.__table__
sessions = Session.__table__
tokens = ApiToken.__table__

#: seconds a process trusts its copy of the team tree
TEAM_TREE_TTL = 2.0
#: failed sign-ins in a row that lock an account, and for how long
MAX_FAILED_LOGINS = 5
LOCK_DURATION = dt.timedelta(minutes=15)
SESSION_LIFETIME = dt.timedelta(hours=12)
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


def _with_roles(query: sa.Select) -> sa.Select:
    """``query`` over users, plus each user's roles as one comma-separated column."""
    roles = (sa.select(sa.func.aggregate_strings(assignments.c.role, ","))
             .where(assignments.c.user_id == users.c.id).scalar_subquery())
    return query.add_columns(roles.label("role_list"))


class IdentityService:
    def __init__(self, engine: sa.Engine, audit: AuditLog | None = None):
        from loom.schema.service import MetadataService

        self.engine = engine
        self.audit = audit or MetadataService(engine).audit
        self._team_tree: tuple[float, dict[int | None, list[int]]] | None = None

    # -- users --------------------------------------------------------------------------

    def create_user(self, username: str, *, password: str | None = None, display_name: str = "",
                    email: str | None = None, mobile: str | None = None, locale: str = "en",
                    team: str | None = None, roles: Iterable[str] = (), is_superuser: bool = False,
                    actor: str = "system") -> int:
        username = username.strip()
        if not username or len(username) > 150 or any(ch.isspace() for ch in username):
            raise ValidationError("invalid username", errors=[{"field": "username",
                                  "message": "1 to 150 characters without spaces"}])
        if password is not None:
            self._check_password(password)
        with write_transaction(self.engine) as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
                raise Conflict(f"a user named {username} already exists",
                               errors=[{"field": "username", "message": "already taken"}])
            team_id = self._team_id(conn, team) if team else None
            user_id = conn.execute(users.insert().values(
                username=username, display_name=display_name or username, email=email, mobile=mobile,
                locale=locale, team_id=team_id, is_active=True, is_superuser=is_superuser,
                password_hash=_hasher.hash(password) if password else None, failed_logins=0,
                created_at=utcnow()).returning(users.c.id)).scalar_one()
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
            raise ValidationError("password too short", errors=[{"field": "password",
                                  "message": "at least 8 characters"}])

    def user_id(self, conn: sa.Connection, username: str) -> int:
        found = conn.execute(sa.select(users.c.id).where(users.c.username == username)).scalar()
        if found is None:
            raise NotFound(f"there is no user named {username}")
        return found

    def update_user(self, user_id: int, changes: dict[str, Any], *, actor: str) -> None:
        allowed = {"display_name", "email", "mobile", "locale", "is_active", "team", "manager"}
        unknown = set(changes) - allowed - {"password"}
        if unknown:
            raise ValidationError("unknown fields", errors=[{"field": f, "message": "cannot be changed here"}
                                                            for f in sorted(unknown)])
        with write_transaction(self.engine) as conn:
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
                values["failed_logins"] = 0
                values["locked_until"] = None
            if values:
                conn.execute(users.update().where(users.c.id == user_id).values(**values))
            if changes.get("is_active") is False or "password" in changes:
                conn.execute(sessions.delete().where(sessions.c.user_id == user_id))
            logged = {k: ("***" if k == "password" else v) for k, v in changes.items()}
            old = {**before, "team": before["team_id"], "manager": before["manager_id"], "password": MASK}
            self._log(conn, "user.updated", actor=actor, entity="user", record_id=user_id, payload={"changes": logged},
                      changes={k: [old.get(k), v] for k, v in logged.items()})

    def list_users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(users.c.id, users.c.username, users.c.display_name, users.c.email,
                                          users.c.mobile, users.c.locale, users.c.is_active, users.c.is_superuser,
                                          teams.c.name.label("team"))
                                .select_from(users.outerjoin(teams, users.c.team_id == teams.c.id))
                                .order_by(users.c.id)).mappings().all()
            roles = self._roles(conn, [r["id"] for r in rows])
        return [{**row, "roles": roles.get(row["id"], [])} for row in rows]

    def _roles(self, conn: sa.Connection, user_ids: list[int]) -> dict[int, list[str]]:
        result: dict[int, list[str]] = {}
        for user_id, role in conn.execute(sa.select(assignments.c.user_id, assignments.c.role)
                                          .where(assignments.c.user_id.in_(user_ids)).order_by(assignments.c.role)):
            result.setdefault(user_id, []).append(role)
        return result

    # -- role assignments -------------------------------------------------------------

    def assign(self, user_id: int, role: str, *, actor: str) -> None:
        with write_transaction(self.engine) as conn:
            exists = conn.execute(sa.select(assignments.c.id).where(assignments.c.user_id == user_id,
                                                                    assignments.c.role == role)).first()
            if exists:
                return
            conn.execute(assignments.insert().values(user_id=user_id, role=role, created_at=utcnow()))
            self._log(conn, "role.assigned", actor=actor, entity="user", record_id=user_id, payload={"role": role})

    def unassign(self, user_id: int, role: str, *, actor: str) -> None:
        with write_transaction(self.engine) as conn:
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
            raise ValidationError("invalid team name", errors=[{"field": "name", "message": "is required"}])
        with write_transaction(self.engine) as conn:
            if conn.execute(sa.select(teams.c.id).where(teams.c.name == name)).first():
                raise Conflict(f"a team named {name} already exists", errors=[{"field": "name", "message": "already taken"}])
            parent_id = self._team_id(conn, parent) if parent else None
            team_id = conn.execute(teams.insert().values(name=name, label=label or name, parent_id=parent_id,
                                                         created_at=utcnow()).returning(teams.c.id)).scalar_one()
            self._team_tree = None
            self._log(conn, "team.created", actor=actor, entity="team", record_id=team_id,
                 payload={"name": name, "parent": parent})
        return team_id

    def move_team(self, name: str, parent: str | None, *, actor: str) -> None:
        with write_transaction(self.engine) as conn:
            team_id = self._team_id(conn, name)
            parent_id = self._team_id(conn, parent) if parent else None
            if parent_id is not None and parent_id in self._subtree(conn, team_id):
                raise BadRequest(f"{parent} is below {name}; a team cannot be moved under itself")
            conn.execute(teams.update().where(teams.c.id == team_id).values(parent_id=parent_id))
            self._team_tree = None
            self._log(conn, "team.moved", actor=actor, entity="team", record_id=team_id, payload={"parent": parent})

    def list_teams(self) -> list[dict[str, Any]]:
        parent = teams.alias("parent")
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(teams.c.id, teams.c.name, teams.c.label, parent.c.name.label("parent"))
                .select_from(teams.outerjoin(parent, teams.c.parent_id == parent.c.id)).order_by(teams.c.name)).mappings()]

    def _team_children(self, conn: sa.Connection) -> dict[int | None, list[int]]:
        """The team tree, read at most every ``TEAM_TREE_TTL`` seconds: it is asked for on
        every request and changes rarely (this process's own changes clear it at once)."""
        cached = self._team_tree
        if cached is not None and time.monotonic() - cached[0] < TEAM_TREE_TTL:
            return cached[1]
        children: dict[int | None, list[int]] = {}
        for ident, parent_id in conn.execute(sa.select(teams.c.id, teams.c.parent_id)):
            children.setdefault(parent_id, []).append(ident)
        self._team_tree = (time.monotonic(), children)
        return children

    def _subtree(self, conn: sa.Connection, team_id: int) -> tuple[int, ...]:
        """The team and every team below it."""
        children = self._team_children(conn)
        result, pending = [], [team_id]
        while pending:
            current = pending.pop()
            if current in result:
                continue
            result.append(current)
            pending.extend(children.get(current, ()))
        return tuple(result)

    # -- principals ---------------------------------------------------------------------

    def principal(self, conn: sa.Connection, user: Any, *, read_only: bool = False) -> Principal:
        """The principal of a user row; the row may bring its roles along (``role_list``,
        see ``_with_roles``), saving a query on every request."""
        role_list = getattr(user, "role_list", None)
        if role_list is not None or hasattr(user, "role_list"):
            roles = tuple(sorted(role_list.split(","))) if role_list else ()
        else:
            roles = tuple(conn.execute(sa.select(assignments.c.role).where(assignments.c.user_id == user.id)
                                       .order_by(assignments.c.role)).scalars())
        team_ids = self._subtree(conn, user.team_id) if user.team_id is not None else ()
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
        Failures say nothing about whether the user exists."""
        wrong = Unauthorized("wrong username or password")
        now = utcnow()
        context = {"ip": ip, "user_agent": (user_agent or "")[:400]}
        with write_transaction(self.engine) as conn:
            user = conn.execute(sa.select(users).where(users.c.username == username)).first()
            if user is None or not user.is_active or not user.password_hash:
                self._log(conn, "auth.login_failed", actor=f"anonymous:{username}"[:200],
                     payload={**context, "username": username, "reason": "unknown or inactive user"})
                failure: LoomError = wrong
            elif _aware(user.locked_until) and _aware(user.locked_until) > now:
                wait = int((_aware(user.locked_until) - now).total_seconds()) + 1
                self._log(conn, "auth.login_failed", actor=username, entity="user", record_id=user.id,
                     payload={**context, "reason": "locked"})
                failure = Locked(f"too many failed sign-ins; try again in {wait // 60 + 1} minutes", wait)
            elif not _verify(user.password_hash, password):
                failed = user.failed_logins + 1
                values: dict[str, Any] = {"failed_logins": failed}
                self._log(conn, "auth.login_failed", actor=username, entity="user", record_id=user.id,
                     payload={**context, "reason": "wrong password", "failed_in_a_row": failed})
                if failed >= MAX_FAILED_LOGINS:
                    values.update(failed_logins=0, locked_until=now + LOCK_DURATION)
                    self._log(conn, "auth.locked", actor=username, entity="user", record_id=user.id,
                         payload={**context, "until": (now + LOCK_DURATION).isoformat()})
                conn.execute(users.update().where(users.c.id == user.id).values(**values))
                failure = wrong
            else:
                token = secrets.token_urlsafe(32)
                values = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
                if _hasher.check_needs_rehash(user.password_hash):
                    values["password_hash"] = _hasher.hash(password)
                conn.execute(users.update().where(users.c.id == user.id).values(**values))
                conn.execute(sessions.insert().values(token_hash=_digest(token), user_id=user.id, created_at=now,
                                                      last_seen_at=now, expires_at=now + SESSION_LIFETIME,
                                                      ip=ip, user_agent=context["user_agent"]))
                self._log(conn, "auth.login", actor=username, entity="user", record_id=user.id, payload=context)
                return token, self.principal(conn, user)
        raise failure

    def sign_out(self, token: str, *, actor: str, ip: str | None = None) -> None:
        with write_transaction(self.engine) as conn:
            deleted = conn.execute(sessions.delete().where(sessions.c.token_hash == _digest(token))).rowcount
            if deleted:
                self._log(conn, "auth.logout", actor=actor, payload={"ip": ip})

    def session_principal(self, token: str) -> Principal | None:
        now = utcnow()
        with reading(self.engine) as conn:
            row = conn.execute(_with_roles(sa.select(users, sessions.c.expires_at.label("session_expires")))
                               .select_from(sessions.join(users, sessions.c.user_id == users.c.id))
                               .where(sessions.c.token_hash == _digest(token))).first()
            if row is None or not row.is_active or _aware(row.session_expires) <= now:
                return None
            return self.principal(conn, row)

    # -- API tokens ---------------------------------------------------------------------

    def create_token(self, username: str, *, name: str = "", expires_days: int | None = None,
                     read_only: bool = False, actor: str = "system") -> NewToken:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = utcnow() + dt.timedelta(days=expires_days) if expires_days else None
        if expires_days is not None and expires_days < 1:
            raise ValidationError("invalid expiry", errors=[{"field": "expires", "message": "at least 1 day"}])
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
        with write_transaction(self.engine) as conn:
            row = conn.execute(sa.select(tokens.c.user_id).where(tokens.c.id == token_id,
                                                                 tokens.c.revoked_at.is_(None))).first()
            if row is None:
                raise NotFound(f"there is no active token with id {token_id}")
            conn.execute(tokens.update().where(tokens.c.id == token_id).values(revoked_at=utcnow()))
            self._log(conn, "token.revoked", actor=actor, entity="user", record_id=row.user_id,
                 payload={"token_id": token_id})

    def token_principal(self, token: str) -> Principal | None:
        """The principal of a valid token; its first use is recorded."""
        now = utcnow()
        digest = _digest(token)
        with reading(self.engine) as conn:
            row = conn.execute(_with_roles(sa.select(users, tokens.c.id.label("token_id"), tokens.c.read_only,
                                                     tokens.c.expires_at.label("token_expires"), tokens.c.revoked_at,
                                                     tokens.c.last_used_at))
                               .select_from(tokens.join(users, tokens.c.user_id == users.c.id))
                               .where(tokens.c.token_hash == digest)).first()
            if (row is None or row.revoked_at is not None or not row.is_active
                    or (row.token_expires is not None and _aware(row.token_expires) <= now)):
                return None
            principal = self.principal(conn, row, read_only=row.read_only)
        if row.last_used_at is None:
            with write_transaction(self.engine) as conn:
                first = conn.execute(tokens.update().where(tokens.c.id == row.token_id, tokens.c.last_used_at.is_(None))
                                     .values(last_used_at=now)).rowcount
                if first:
                    self._log(conn, "token.first_used", actor=row.username, entity="user", record_id=row.id,
                         payload={"token_id": row.token_id})
        return principal


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
