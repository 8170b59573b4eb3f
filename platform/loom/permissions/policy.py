"""Compiled permissions of one metadata version.

casbin decides actions: each role's grants become policies ``(role, entity, action)``
and ``inherits`` becomes role links, so inheritance is casbin's. Row scopes and field
access come from the same grants; a principal's roles combine by union: an action is
allowed if any role allows it, a row is visible if any granting role's scope admits it,
a field is readable if any granting role lets it be read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import casbin
import sqlalchemy as sa

from loom.errors import LoomError
from loom.metadata.model import ACCESS_LEVELS, AppModel, Entity, Grant
from loom.principal import Principal
from loom.sql import condition_sql

CASBIN_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && (p.obj == "*" || r.obj == p.obj) && r.act == p.act
"""

WRITE_ACTIONS = ("create", "update", "delete", "import", "approve", "transfer")


def owned(entity: Entity, table: sa.Table, matches: Callable[[sa.ColumnElement], sa.ColumnElement[bool]]
          ) -> sa.ColumnElement[bool]:
    """The records whose owner ``matches`` (a condition on an owner column): by the
    entity's ``owner_field``, or by the standard ``owner`` where that field is empty (a
    record written before the entity had an owner field, not since). Loom keeps both
    equal at every write (``loom.records.ownership``)."""
    if entity.owner_field == "owner":
        return matches(table.c.owner)
    field = table.c[entity.owner_field]
    return sa.or_(matches(field), sa.and_(field.is_(None), matches(table.c.owner)))


def record_owner(entity: Entity, table: sa.Table) -> sa.ColumnElement[Any]:
    """Whose record it is, as a column: the owner field, else the standard owner."""
    if entity.owner_field == "owner":
        return table.c.owner
    return sa.func.coalesce(table.c[entity.owner_field], table.c.owner)


class Forbidden(LoomError):
    status = 403
    type = "https://loom.dev/problems/forbidden"
    title = "Not allowed"


class Policy:
    """Permission decisions for one metadata version, cached until the version changes."""

    def __init__(self, model: AppModel):
        self.model = model
        casbin_model = casbin.model.Model()
        casbin_model.load_model_from_text(CASBIN_MODEL)
        self.enforcer = casbin.Enforcer(casbin_model)
        for role in model.roles.values():
            for entity, grant in role.grants.items():
                for action in grant.actions:
                    self.enforcer.add_policy(role.name, entity, action)
            for parent in role.inherits:
                self.enforcer.add_grouping_policy(role.name, parent)
        self._cache: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple, compute):
        try:
            return self._cache[key]
        except KeyError:
            value = compute()
            with self._lock:
                self._cache[key] = value
            return value

    def ancestry(self, roles: Iterable[str]) -> tuple[str, ...]:
        """The roles and every role they inherit from, each once."""
        key = ("ancestry", tuple(roles))

        def compute():
            result: list[str] = []
            for role in key[1]:
                if role not in self.model.roles:
                    continue
                for name in [role, *self.enforcer.get_implicit_roles_for_user(role)]:
                    if name not in result:
                        result.append(name)
            return tuple(result)
        return self._cached(key, compute)

    def allows(self, roles: tuple[str, ...], entity: str, action: str) -> bool:
        return self._cached(("allows", roles, entity, action),
                            lambda: any(self.enforcer.enforce(r, entity, action) for r in roles
                                        if r in self.model.roles))

    def grants(self, roles: tuple[str, ...], entity: str, action: str) -> tuple[tuple[str, Grant], ...]:
        """Every (role, grant) among ``roles`` and their ancestors that gives ``action``."""
        def compute():
            found = []
            for name in self.ancestry(roles):
                grants = self.model.roles[name].grants
                for key in (entity, "*"):
                    grant = grants.get(key)
                    if grant is not None and action in grant.actions:
                        found.append((name, grant))
                        break
            return tuple(found)
        return self._cached(("grants", roles, entity, action), compute)

    def admin(self, roles: tuple[str, ...]) -> frozenset[str]:
        return self._cached(("admin", roles), lambda: frozenset().union(
            *(self.model.roles[r].admin for r in self.ancestry(roles))))

    def grants_admin(self, principal: Principal | None, right: str) -> bool:
        """Whether ``principal`` holds the admin ``right`` (``admin: [integrations]`` in a
        role of theirs, inherited ones included): a superuser or system principal always
        does, nobody (None) never."""
        if principal is None:
            return False
        if principal.is_superuser or principal.is_system:
            return True
        known = tuple(sorted(r for r in set(principal.roles) if r in self.model.roles))
        return right in self.admin(known)

    def field_levels(self, roles: tuple[str, ...], entity: Entity, action: str) -> dict[str, int]:
        """field -> best access level (0 none, 1 read, 2 write) among grants of ``action``."""
        def compute():
            levels = dict.fromkeys(entity.all_fields, 0)
            for _, grant in self.grants(roles, entity.name, action):
                for name in levels:
                    levels[name] = max(levels[name], ACCESS_LEVELS[grant.access(name)])
            # whoever may act on an entity at all may see which record is which
            visible = bool(self.grants(roles, entity.name, action))
            for name in ("id", "version"):
                if name in levels:
                    levels[name] = max(levels[name], 1) if visible else 0
            return levels
        return self._cached(("fields", roles, entity.name, action), compute)


@dataclass
class EntityAccess:
    """What one principal may do with one entity."""

    policy: Policy | None
    principal: Principal
    entity: Entity
    #: for a child entity: its parent's access (child rows follow their parent)
    parent: EntityAccess | None = None

    @property
    def unrestricted(self) -> bool:
        return self.principal.is_system or self.principal.is_superuser or self.policy is None

    def allowed(self, action: str) -> bool:
        if self.principal.read_only and action in WRITE_ACTIONS:
            return False
        if self.unrestricted:
            return True
        if self.parent is not None:
            return self.parent.allowed(action)
        return self.policy.allows(self.principal.roles, self.entity.name, action)

    def require(self, action: str) -> None:
        if not self.allowed(action):
            token = self.principal.read_only and action in WRITE_ACTIONS
            what = "a read-only token cannot" if token else "you may not"
            refusal = Forbidden(f"{what} {action} {self.entity.name} records",
                                code="read_only_token" if token else "forbidden_action",
                                params={"action": action, "entity": self.entity.name})
            # what the refusal's audit entry names, wherever it is logged (API or screen)
            refusal.action, refusal.entity = action, self.entity.name
            raise refusal

    def _levels(self, action: str) -> dict[str, int]:
        if self.unrestricted:
            return dict.fromkeys(self.entity.all_fields, 2)
        if self.parent is not None and not self.policy.grants(self.principal.roles, self.entity.name, action):
            # a child entity without grants of its own follows its table field on the parent
            table_field = self.policy.model.parents[self.entity.name][1].name
            level = self.parent._levels(action).get(table_field, 0)
            return dict.fromkeys(self.entity.all_fields, level)
        return self.policy.field_levels(self.principal.roles, self.entity, action)

    def readable(self) -> set[str]:
        return {name for name, level in self._levels("read").items() if level >= 1}

    def writable(self, action: str) -> set[str]:
        """Fields the principal may set when it ``action``s (create or update) a record."""
        readable = self.readable()
        return {name for name, level in self._levels(action).items() if level >= 2 and name in readable}

    def scope(self, table: sa.Table, action: str, users: sa.Table, dialect: str) -> sa.ColumnElement[bool] | None:
        """The rows ``action`` may touch, as a WHERE clause (None: every row)."""
        if self.unrestricted or self.entity.child:
            return None
        clauses = []
        for _, grant in self.policy.grants(self.principal.roles, self.entity.name, action):
            clause = self._grant_clause(grant, table, users, dialect)
            if clause is None:
                return None
            clauses.append(clause)
        return sa.or_(*clauses) if clauses else sa.false()

    def _grant_clause(self, grant: Grant, table: sa.Table, users: sa.Table,
                      dialect: str) -> sa.ColumnElement[bool] | None:
        me = self.principal.user_id
        if grant.scope == "all":
            return None
        if grant.scope == "own" or grant.scope == "team" and not self.principal.team_ids:
            return owned(self.entity, table, lambda owner: owner == me) if me is not None else sa.false()
        if grant.scope == "team":
            members = sa.select(users.c.id).where(users.c.team_id.in_(self.principal.team_ids))
            return owned(self.entity, table, lambda owner: owner.in_(members))
        return self._where(grant.where, table, dialect)

    def condition(self, condition: Any, table: sa.Table, dialect: str) -> sa.ColumnElement[bool]:
        """A condition of the condition language as SQL on ``table``, ``$user.*`` being this principal."""
        return self._where(condition, table, dialect)

    def _where(self, condition: Any, table: sa.Table, dialect: str) -> sa.ColumnElement[bool]:
        parts = []
        for key, value in condition.items():
            if key == "all":
                parts.append(sa.and_(*(self._where(c, table, dialect) for c in value)))
            elif key == "any":
                parts.append(sa.or_(*(self._where(c, table, dialect) for c in value)))
            elif key == "not":
                parts.append(sa.not_(self._where(value, table, dialect)))
            else:
                field = self.entity.field(key)
                for op, operand in value.items():
                    parts.append(condition_sql(table.c[key], field.type, op, self._value(field, op, operand), dialect))
        return sa.and_(*parts)

    def _value(self, field, op: str, operand: Any) -> Any:
        if op == "isnull":
            return bool(operand)
        if op in ("contains", "startswith"):
            return str(operand)
        if op in ("in", "nin"):
            values: list[Any] = []
            for item in operand:
                resolved = self._resolve(field, item)
                values.extend(resolved if isinstance(resolved, tuple) else [resolved])
            return [v for v in values if v is not None]
        return self._resolve(field, operand)

    def _resolve(self, field, value: Any) -> Any:
        """A ``$user.*`` reference's value for this principal, or the literal as a typed value."""
        if isinstance(value, str) and value.startswith("$user."):
            return {"$user.id": self.principal.user_id, "$user.team": self.principal.team_id,
                    "$user.teams": tuple(self.principal.team_ids),
                    "$user.manager": self.principal.manager_id}[value]
        return field.kind.coerce(value, field)


def live_policy(live: Any) -> Policy:
    """The policy of a live metadata version (``MetadataService.live()``), built once per version."""
    return live.derive("policy", lambda: Policy(live.model))
