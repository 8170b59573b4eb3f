"""Why may (or may not) a user do something: the answer an admin needs for "why can't
she see this?"."""

from __future__ import annotations

import sqlalchemy as sa

from loom.metadata.model import Entity, Grant
from loom.permissions.policy import EntityAccess, Policy, record_owner
from loom.principal import Principal

ACTIONS = ("read", "create", "update", "delete", "export", "import", "approve", "transfer")


def _scope_text(grant: Grant, principal: Principal, entity: Entity) -> str:
    whose = "owner" if entity.owner_field == "owner" else f"owner field {entity.owner_field}"
    if grant.scope == "own":
        return f"own (records whose {whose} is {principal.name})"
    if grant.scope == "team":
        return f"team (records whose {whose} is a member of team ids {list(principal.team_ids) or 'none'})"
    if grant.scope == "where":
        return f"where {dict(grant.where)}"
    return "all records"


def explain(policy: Policy, principal: Principal, entity: Entity, action: str, *,
            connection: sa.Connection | None = None, table: sa.Table | None = None,
            users: sa.Table | None = None, record_id: int | None = None) -> tuple[bool, list[str]]:
    """(allowed, lines of explanation)."""
    access = EntityAccess(policy, principal, entity)
    lines = [f"{principal.name}: roles {', '.join(principal.roles) or '(none)'}"]
    ancestry = policy.ancestry(principal.roles)
    inherited = [r for r in ancestry if r not in principal.roles]
    if inherited:
        lines.append(f"  inherited roles: {', '.join(inherited)}")
    unknown = [r for r in principal.roles if r not in policy.model.roles]
    if unknown:
        lines.append(f"  assigned roles that no longer exist in the metadata: {', '.join(unknown)}")
    if principal.is_superuser:
        lines.append(f"ALLOWED: {principal.name} is a superuser, not bound by roles")
        return True, lines
    allowed = access.allowed(action)
    grants = policy.grants(principal.roles, entity.name, action)
    if not allowed:
        lines.append(f"REFUSED: no role of {principal.name} grants {action} on {entity.name}")
        for name in ancestry:
            grant = policy.model.roles[name].grants.get(entity.name) or policy.model.roles[name].grants.get("*")
            if grant is not None:
                lines.append(f"  {name} grants only: {', '.join(sorted(grant.actions)) or 'nothing'}")
        return False, lines
    lines.append(f"ALLOWED: {action} on {entity.name}")
    for name, grant in grants:
        lines.append(f"  by role {name}: scope {_scope_text(grant, principal, entity)}")
    readable = access.readable()
    hidden = [f for f in entity.all_fields if f not in readable]
    lines.append(f"  fields hidden: {', '.join(hidden) or 'none'}")
    if action in ("create", "update"):
        read_only = sorted(readable - access.writable(action) - {"id", "version", "created_at", "created_by",
                                                                  "updated_at", "updated_by"})
        lines.append(f"  fields it may read but not {action}: {', '.join(read_only) or 'none'}")
    if record_id is not None and connection is not None and table is not None:
        exists = connection.execute(sa.select(table.c.id).where(table.c.id == record_id)).first()
        if exists is None:
            lines.append(f"  record {record_id}: does not exist")
            return False, lines
        admitted = []
        for name, grant in grants:
            clause = access._grant_clause(grant, table, users, connection.dialect.name)
            where = [table.c.id == record_id] + ([] if clause is None else [clause])
            if connection.execute(sa.select(table.c.id).where(*where)).first():
                admitted.append(name)
        if admitted:
            lines.append(f"  record {record_id}: within scope (through {', '.join(admitted)})")
        else:
            owner = connection.execute(sa.select(record_owner(entity, table)).where(table.c.id == record_id)).scalar()
            lines.append(f"  record {record_id}: OUT OF SCOPE (owner id {owner}); to {principal.name} it does "
                         "not exist (404)")
            return False, lines
    return True, lines
