"""The world the permission matrix runs in: the roles and users, the declared policy
evaluated independently of Loom's implementation, and records with a unique marker in
every field (so that a reply can be searched for values the caller may not read)."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from importlib.resources import as_file, files

from loom.metadata import load_and_compile
from loom.metadata.model import ACCESS_LEVELS
from loom.metadata.validators import uscc_check_character
from loom.schema.service import model_from_documents

from .conftest import ScreenClient

PASSWORD = "correct horse battery"
USERS = {  # username: (roles, team)
    "boss": (("admin",), None),
    "wang": (("sales_rep",), "shanghai"),
    "zhao": (("sales_rep",), "hangzhou"),
    "qian": (("sales_rep",), "pudong"),
    "sun": (("sales_rep",), "beijing"),
    "li": (("sales_manager",), "east"),
    "zhang": (("finance",), None),
    "liu": (("service_agent",), None),
    "chen": (("auditor",), None),
    "ma": (("regional_rep",), "north"),
    "he": (("finance", "field_agent"), "hangzhou"),
    "nobody": ((), None),
}
#: team -> parent: pudong sits two levels below east
TEAMS = {"east": None, "shanghai": "east", "pudong": "shanghai", "hangzhou": "east", "north": None,
         "beijing": "north"}
#: the owners of each entity's records (None: nobody's)
OWNERS = ("wang", "zhao", "qian", "sun", "li", "he", None)

LEAD = {"kind": "entity", "name": "lead", "title_field": "title", "fields": [
    {"name": "title", "type": "string", "required": True},
    {"name": "region", "type": "select", "options": [{"value": "east"}, {"value": "north"}]},
    {"name": "budget", "type": "integer"},
    {"name": "account_manager", "type": "link", "target": "user"},
    {"name": "notes", "type": "text"},
]}
#: north's leads and those the user manages; may approve them, import but not create
REGIONAL_REP = {"kind": "role", "name": "regional_rep", "inherits": ["employee"], "permissions": {
    "lead": {"actions": ["read", "update", "export", "import", "approve"],
             "scope": {"where": {"any": [{"region": {"eq": "north"}}, {"account_manager": {"eq": "$user.id"}}]}},
             "fields": {"budget": "read"}},
    "customer": {"actions": ["read"], "scope": {"where": {"region": {"in": ["north"]}}},
                 "fields": {"*": "read", "credit_limit": "none"}},
}}
#: east's owned leads, without their budget; the team's customers' names and regions
FIELD_AGENT = {"kind": "role", "name": "field_agent", "permissions": {
    "lead": {"actions": ["read", "create", "delete", "import"],
             "scope": {"where": {"all": [{"region": {"eq": "east"}}, {"not": {"owner": {"isnull": True}}}]}},
             "fields": {"budget": "none"}},
    "customer": {"actions": ["read"], "scope": "team", "fields": {"*": "none", "name": "read", "region": "read"}},
}}
ACTIONS = ("read", "export", "create", "update", "delete", "import", "approve", "transfer")


def _seed_documents() -> list[dict]:
    with as_file(files("loom.seed").joinpath("crm")) as folder:
        seed = load_and_compile(folder)
    return [dict(d) for d in seed.documents] + [LEAD, REGIONAL_REP, FIELD_AGENT]


DOCUMENTS = _seed_documents()
MODEL = model_from_documents(DOCUMENTS)
ENTITIES = sorted(e.name for e in MODEL.entities.values() if not e.child)


# -- the declared policy, evaluated independently of Loom's implementation -------------

@dataclass(frozen=True)
class Caller:
    """A user as the declared policy sees them."""

    name: str
    roles: tuple[str, ...]
    id: int
    team_ids: frozenset[int]  # their team and every team below it
    team_members: frozenset[int]  # the users in those teams
    team_id: int | None


def ancestry(roles):
    seen, pending = [], list(roles)
    while pending:
        current = pending.pop(0)
        if current not in seen and current in MODEL.roles:
            seen.append(current)
            pending.extend(MODEL.roles[current].inherits)
    return seen


def grants(roles, entity, action):
    found = []
    for name in ancestry(roles):
        role_grants = MODEL.roles[name].grants
        grant = role_grants.get(entity) or role_grants.get("*")
        if grant is not None and action in grant.actions:
            found.append(grant)
    return found


def field_level(roles, entity, field, action):
    return max((ACCESS_LEVELS[g.access(field)] for g in grants(roles, entity.name, action)), default=0)


def readable(roles, entity):
    names = {f for f in entity.all_fields if field_level(roles, entity, f, "read") >= 1}
    if grants(roles, entity.name, "read"):
        names |= {"id", "version"} & set(entity.all_fields)
    return names


def writable(roles, entity, action):
    return {f for f in readable(roles, entity) if field_level(roles, entity, f, action) == 2}


def value_of(record, field):
    value = record.get(field)
    return value["id"] if isinstance(value, dict) else value


def _resolve(operand, caller):
    if operand == "$user.id":
        return [caller.id]
    if operand == "$user.team":
        return [caller.team_id]
    if operand == "$user.teams":
        return list(caller.team_ids)
    return [operand]


def matches(record, condition, caller):
    """``condition`` (the condition language) on a record in its JSON form."""
    results = []
    for key, value in condition.items():
        if key == "all":
            results.append(all(matches(record, c, caller) for c in value))
        elif key == "any":
            results.append(any(matches(record, c, caller) for c in value))
        elif key == "not":
            results.append(not matches(record, value, caller))
        else:
            actual = value_of(record, key)
            for op, operand in value.items():
                if op == "eq":
                    results.append(actual is not None and actual in _resolve(operand, caller))
                elif op == "in":
                    results.append(actual is not None and actual in [v for o in operand for v in _resolve(o, caller)])
                elif op == "isnull":
                    results.append((actual is None) == bool(operand))
                else:
                    raise AssertionError(f"the matrix cannot evaluate {op}; add it")
    return all(results)


def in_scope(caller, entity, action, record):
    """Whether the declared policy lets ``caller`` ``action`` on ``record`` (JSON form)."""
    owner = value_of(record, "owner")
    for grant in grants(caller.roles, entity, action):
        if grant.scope == "all":
            return True
        if grant.scope == "own" and owner == caller.id:
            return True
        if grant.scope == "team":
            # a user without a team is a team of one
            if owner is not None and (owner in caller.team_members if caller.team_ids else owner == caller.id):
                return True
        if grant.scope == "where" and matches(record, grant.where, caller):
            return True
    return False


def visible_fields(roles, entity_name, reply_entity):
    """The fields of ``entity_name`` whose values may appear in a reply about ``reply_entity``."""
    entity = MODEL.entity(entity_name)
    if entity.child:
        parent, table_field = MODEL.parents[entity_name]
        if grants(roles, entity_name, "read"):
            return readable(roles, entity)
        return set(entity.all_fields) if field_level(roles, parent, table_field.name, "read") >= 1 else set()
    if entity_name == reply_entity:
        return readable(roles, entity)
    # a linked record shows its title only, and only to a caller who may read that
    return {entity.title_field} & readable(roles, entity)


# -- data with a unique marker in every field ------------------------------------------

class Markers:
    def __init__(self):
        self.counter = itertools.count(1)
        self.by_field: dict[tuple[str, str], set[str]] = {}

    def new(self, entity, field, value):
        self.by_field.setdefault((entity, field), set()).add(str(value))
        return value

    def value(self, entity, field, links, option=-1):
        """A fresh, unique value for ``field``; ``links`` maps a link target to a record id."""
        n = next(self.counter)
        kind = field.type
        if kind in ("string", "text"):
            if "uscc" in field.validators:
                first17 = f"91310000{n:09d}"
                return self.new(entity.name, field.name, first17 + uscc_check_character(first17))
            return self.new(entity.name, field.name, f"mk{n:05d}q")
        if kind == "phone":
            return self.new(entity.name, field.name, f"139{n:08d}")
        if kind == "email":
            return self.new(entity.name, field.name, f"mk{n:05d}q@example.com")
        if kind == "url":
            return self.new(entity.name, field.name, f"https://mk{n:05d}q.example.com")
        if kind == "integer":
            return self.new(entity.name, field.name, 7100000 + n)
        if kind in ("decimal", "money", "percent"):
            if field.max is not None or kind == "percent":  # a discount: 0 to 100
                top = int(field.max if field.max is not None else 100)
                return self.new(entity.name, field.name, f"{n % top}.9{n % 997:03d}")
            return self.new(entity.name, field.name, f"8{n:06d}.37")
        if kind == "select":
            return field.options[option % len(field.options)].value
        if kind == "multiselect":
            return [field.options[0].value]
        if kind == "boolean":
            return True
        if kind == "date":
            return (dt.date(2020, 1, 1) + dt.timedelta(days=n)).isoformat()
        if kind == "datetime":
            return (dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=n)).isoformat()
        if kind == "link":
            return links[field.target]
        if kind == "table":
            child = MODEL.entity(field.target)
            return [{f.name: self.value(child, f, links) for f in child.stored_fields if settable(f)}]
        if kind == "json":
            return {"m": self.new(entity.name, field.name, f"mk{n:05d}q")}
        raise AssertionError(f"the matrix has no marker for {kind} fields; add one")


def settable(field) -> bool:
    """Whether a client gives this field's value (Loom works out computed and numbered ones)."""
    return not (field.compute or field.autonumber or getattr(field, "rollup", None))


def link_order():
    """Entities in an order where link targets come first."""
    order, pending = [], [e for e in MODEL.entities.values() if not e.child]
    while pending:
        for entity in list(pending):
            targets = {f.target for f in entity.fields if f.type == "link" and f.target != "user"}
            targets |= {f.target for child in (MODEL.entity(t.target) for t in entity.table_fields)
                        for f in child.fields if f.type == "link"}
            if targets <= {e.name for e in order} | {entity.name}:
                order.append(entity)
                pending.remove(entity)
    return order


def _subteams(team):
    found = {team}
    for name, parent in TEAMS.items():
        if parent == team:
            found |= _subteams(name)
    return found


class World:
    """The shared records and the clients of every user."""

    def __init__(self, app):
        self.app = app
        loom = app.extensions["loom"]
        loom.metadata.apply(MODEL, author="test")
        identity = loom.identity
        for team, parent in TEAMS.items():
            identity.create_team(team, parent=parent)
        self.ids = {name: identity.create_user(name, password=PASSWORD, roles=list(roles), team=team)
                    for name, (roles, team) in USERS.items()}
        self.ids["root"] = identity.create_user("root", is_superuser=True)
        team_ids = {t["name"]: t["id"] for t in identity.list_teams()}
        self.callers = {}
        for name, (roles, team) in USERS.items():
            below = _subteams(team) if team else set()
            members = frozenset(self.ids[u] for u, (_, t) in USERS.items() if t in below)
            self.callers[name] = Caller(name, roles, self.ids[name], frozenset(team_ids[t] for t in below),
                                        members, team_ids.get(team))
        self._tokens = {name: identity.create_token(name).token for name in [*USERS, "root"]}
        self._screens: dict[str, ScreenClient] = {}
        self.markers = Markers()
        self.links = {"user": self.ids["wang"]}
        self.admin = self.client("root")
        for entity in link_order():
            for i, owner in enumerate(OWNERS):
                body = {f.name: self.markers.value(entity, f, self.links) for f in entity.fields if settable(f)}
                body["owner"] = self.ids[owner] if owner else None
                if entity.owner_field != "owner":  # whose record it is follows that field
                    body[entity.owner_field] = body["owner"]
                if entity.name == "lead":
                    body["region"] = ("east", "north")[i % 2]
                    body["account_manager"] = self.ids[("ma", "he", "wang")[i % 3]]
                response = self.admin.post(f"/api/v1/{entity.name}", json=body)
                assert response.status_code == 201, response.get_json()
                for f in entity.fields:  # numbers Loom gave are markers too: unique, and must not leak
                    if f.autonumber:
                        self.markers.new(entity.name, f.name, response.get_json()["data"][f.name])
                self.links.setdefault(entity.name, response.get_json()["data"]["id"])

    def client(self, username):
        client = self.app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {self._tokens[username]}"
        return client

    def screens(self, username):
        """A client signed in to the screens as ``username`` (made once per user)."""
        if username not in self._screens:
            self._screens[username] = ScreenClient(self.app, username, PASSWORD)
        return self._screens[username]

    def records(self, entity):
        """Every record of ``entity`` as it is now (read as a superuser)."""
        response = self.admin.get(f"/api/v1/{entity}?limit=500")
        assert response.status_code == 200
        return response.get_json()["data"]

    def reachable_links(self, caller):
        """For each entity, a record ``caller`` may read (a link may only point at such)."""
        links = {"user": caller.id}
        for name in ENTITIES:
            found = [r["id"] for r in self.records(name) if in_scope(caller, name, "read", r)]
            if found:
                links[name] = found[0]
        return links

    def fitting(self, caller, entity, action, body):
        """``body`` with its select values chosen so that the stored record (owned by
        ``caller`` unless the body says otherwise) falls in ``caller``'s ``action`` scope,
        where any choice does; else ``body`` as it is."""
        def stored(candidate):
            return {**candidate, "owner": candidate.get("owner", caller.id)}
        if in_scope(caller, entity.name, action, stored(body)):
            return body
        for f in (f for f in entity.fields if f.type == "select" and f.name in body):
            for option in f.options:
                candidate = {**body, f.name: option.value}
                if in_scope(caller, entity.name, action, stored(candidate)):
                    return candidate
        return body

    def assert_no_leak(self, text, caller, reply_entity):
        """No marker of a field the caller may not read appears anywhere in ``text``."""
        for (entity_name, field_name), values in self.markers.by_field.items():
            if field_name in visible_fields(caller.roles, entity_name, reply_entity):
                continue
            for value in values:
                assert value not in text, f"{entity_name}.{field_name} leaked to {caller.name} in a {reply_entity} reply"
