"""Whose record it is, and giving records to someone else. Part of the record service.

An entity names the link-to-user field that says whose record it is (``owner_field``,
by default the standard ``owner``). Loom keeps the standard ``owner`` equal to it at
every write, so everything that reads ``owner`` (row scopes, explain, plugins, reports)
stays right: set either one and the other follows; leave the owner field empty and it
falls back to the creator (a required owner field is refused empty, as any required
field). A record written before its entity had an owner field has that field empty
until its next write; row scopes read ``owner`` for it meanwhile
(``loom.permissions.policy.owned``).

Changing the owner is a write like any other, with one permission of its own: without
the ``transfer`` action a write may not move a record out of the writer's scope for that
write (``guards._refuse_out_of_scope``); with it, a record the writer may update goes to
any active user, even one outside that scope, as long as the rest of the write keeps it
inside. The new owner must be an active user (422 otherwise). Every change of owner is
logged as ``record.transfer`` (entity, record, from, to) beside the write's own entry.

``transfer`` and ``transfer_all`` change the owner of a selection or of every record of
one user (a departing one) in one transaction, through ``update``: each record passes
the hooks, business logic, events and audit entry of any update, and all or none change.
``loom.records.transfers`` does the same across every entity the caller may transfer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from loom.errors import ValidationError, error_entry
from loom.metadata.model import USER_TABLE, Entity
from loom.permissions import EntityAccess, Forbidden
from loom.permissions.policy import owned
from loom.principal import Principal


@dataclasses.dataclass(frozen=True)
class User:
    """A user a transfer names: who, and whether they may still own records."""

    id: int
    username: str
    is_active: bool


def _user_ref(value: Any) -> int | str | None:
    """A user as a client names one: the id (a whole number, or its digits) or the username."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value if 0 < value < 2**63 else None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else text
    return None


def find_user(conn: sa.Connection, value: Any, field: str, *, active: bool = True) -> User:
    """The user ``value`` names (id or username); 422 naming ``field`` when there is none,
    or (with ``active``) when the user is deactivated and may own nothing new. Text of
    digits is the username it spells where a user has it, else the id: records are never
    given to whoever happens to have the id that a username spells."""
    ref = _user_ref(value)
    users = sa.table(USER_TABLE, sa.column("id"), sa.column("username"), sa.column("is_active"))
    row = None
    if ref is not None:
        match = users.c.id == ref if isinstance(ref, int) else users.c.username == ref
        if isinstance(ref, int) and isinstance(value, str):
            match = sa.or_(users.c.username == value.strip(), users.c.id == ref)
        query = sa.select(users.c.id, users.c.username, users.c.is_active).where(match)
        rows = conn.execute(query).all()
        row = next((r for r in rows if r.username == str(value).strip()), rows[0] if rows else None)
    shown = str(value)[:150]
    if row is None:
        raise ValidationError(f"there is no user {shown!r}",
                              errors=[error_entry(field, "no_such_user", f"there is no user {shown!r}", user=shown)])
    user = User(row.id, row.username, bool(row.is_active))
    if active and not user.is_active:
        raise ValidationError(f"{user.username} is deactivated and cannot own records",
                              errors=[error_entry(field, "inactive_user", f"{user.username} is deactivated and "
                                                  "cannot own records", user=user.username)])
    return user


def _ids(value: Any) -> list[int]:
    """The record ids a transfer names: a non-empty list of whole numbers, each once."""
    if not isinstance(value, list) or not value:
        raise ValidationError("ids must be a list of record ids",
                              errors=[error_entry("ids", "not_a_list", "expected a list of record ids")])
    errors = [error_entry(f"ids[{i}]", "not_whole", "expected a whole number") for i, v in enumerate(value)
              if type(v) is not int or not 0 < v < 2**63]
    if errors:
        raise ValidationError("ids must be whole numbers", errors=errors)
    return sorted(set(value))


class Ownership:
    """The owner rules of ``RecordService`` (which sets the attributes used here)."""

    access: EntityAccess
    audit: Any
    context: Any
    entity: Entity
    principal: Principal
    table: sa.Table
    #: the owner of the record being written, before the write (the creator for a create)
    _owner_before: int | None = None

    # -- every write ----------------------------------------------------------------------

    def _follow_owner(self, values: dict[str, Any], record: Mapping[str, Any] | None = None) -> None:
        """Make the owner field and ``owner`` agree in ``values`` (a create's, or an
        update's of ``record``): the one that was set decides; an emptied owner field
        falls back to the creator."""
        name = self.entity.owner_field
        me = self.principal.user_id
        if record is None:
            self._owner_before = me
        else:
            self._owner_before = record[name] if record[name] is not None else record["owner"]
        if name == "owner":
            return
        if record is not None and name not in values and "owner" not in values:
            return
        if name not in values and "owner" in values and name not in self.writable("update" if record else "create"):
            if name not in self.readable():
                # a field the writer may not read is named nowhere, not even in a refusal
                raise Forbidden("you may not change owner", code="forbidden_fields", params={"fields": ["owner"]},
                                errors=[error_entry("owner", "forbidden_field", "you may not change the owner")])
            raise Forbidden(f"you may not change {name}", code="forbidden_fields", params={"fields": [name]},
                            errors=[error_entry("owner", "forbidden_field",
                                                f"the owner is {name}, which you may read but not change")])
        chosen = values.get(name) if values.get(name) is not None else values.get("owner")
        if chosen is None:
            chosen = me if record is None else record["created_by"]
        values[name] = values["owner"] = chosen

    def _owner_moves(self, action: str, ids: Sequence[int], written: Sequence[Any]) -> dict[int, tuple[int, Any]]:
        """Which of the written records changed owner: record id -> (index, new owner)."""
        name = self.entity.owner_field
        moves = {}
        for i, (record_id, values) in enumerate(zip(ids, written, strict=True)):
            if not isinstance(values, Mapping):
                continue
            if action == "create":
                new = values.get(name, self.principal.user_id)
            elif name in values:
                new = values[name]
            else:
                continue
            if new is not None and new != self._owner_before:
                moves[record_id] = (i, new)
        return moves

    def _refuse_out_of_scope(self, conn: sa.Connection, action: str, ids: Sequence[int],
                             written: Sequence[Any], *, indexed: bool = False) -> None:
        """The scope check of every write (``guards``), knowing transfers: a write that
        changes the owner needs an active user as the new one; with the ``transfer``
        action only the rest of the write must keep the record in scope (checked as if
        the owner had not changed). Logged as ``record.transfer``: every change of an
        existing record's owner, and a new record given to someone out of the creator's
        scope."""
        moves = self._owner_moves(action, ids, written)
        if self.entity.owner_field != "owner":
            # owner follows the owner field: a refusal names the field the writer knows
            written = [[name for name in values if name != "owner"] for values in written]
        if not moves:
            super()._refuse_out_of_scope(conn, action, ids, written, indexed=indexed)  # type: ignore[misc]
            return
        self._check_new_owners(conn, moves, indexed)
        scope = self._scope(self.access, self.table, action)
        if not self.access.allowed("transfer") or not scope:
            super()._refuse_out_of_scope(conn, action, ids, written, indexed=indexed)  # type: ignore[misc]
            given = moves.keys() if action != "create" else set()
        else:
            outside = self._outside(conn, scope[0], ids)
            if outside and self._outside(conn, self._as_if_owned_by(scope[0], self._owner_before), ids):
                super()._refuse_out_of_scope(conn, action, ids, written, indexed=indexed)  # type: ignore[misc]
            given = moves.keys() if action != "create" else outside & moves.keys()
        field = self.entity.owner_field
        for record_id in sorted(given):
            new = moves[record_id][1]
            self.audit.add(conn, "record.transfer", principal=self.principal, entity=self.entity.name,
                           record_id=record_id, changes={field: [self._owner_before, new]},
                           detail={"field": field, "from": self._owner_before, "to": new})

    def _check_new_owners(self, conn: sa.Connection, moves: Mapping[int, tuple[int, Any]], indexed: bool) -> None:
        """Every new owner is an active user: 422 naming the owner field of each record."""
        problems: dict[Any, list[dict[str, Any]]] = {}
        for new in {new for _i, new in moves.values()}:
            try:
                find_user(conn, new, "")
            except ValidationError as exc:
                problems[new] = exc.errors
        prefix = "[{}]." if indexed else ""
        errors = [{**e, "field": prefix.format(i) + self.entity.owner_field}
                  for i, new in sorted(moves.values()) if new in problems for e in problems[new]]
        if errors:
            raise ValidationError(errors[0]["message"] if len(errors) == 1 else f"{len(errors)} invalid owners",
                                  errors=errors)

    def _as_if_owned_by(self, clause: sa.ColumnElement[bool], owner: int | None) -> sa.ColumnElement[bool]:
        """``clause`` with the record's owner columns read as ``owner``."""
        columns = {self.table.c.owner, self.table.c[self.entity.owner_field]}

        def replace(element: Any) -> Any:
            if isinstance(element, sa.Column) and element in columns:
                return sa.literal(owner, type_=element.type)
            return None
        return visitors.replacement_traverse(clause, {}, replace)

    def _outside(self, conn: sa.Connection, clause: sa.ColumnElement[bool], ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` do not meet ``clause``."""
        inside = sa.func.coalesce(clause, sa.false())
        found = conn.execute(sa.select(self.table.c.id).where(self.table.c.id.between(min(ids), max(ids)),
                                                              sa.not_(inside))).scalars()
        return set(found) & set(ids)

    # -- transfers ------------------------------------------------------------------------

    def _may_transfer(self) -> None:
        self.require("transfer")  # type: ignore[attr-defined]
        self.require("update")  # type: ignore[attr-defined]

    def transfer(self, ids: Any, to: Any) -> list[dict[str, Any]]:
        """Give the records ``ids`` (within the caller's update scope) to the user ``to``
        (id or username): all of them in one transaction, or none. Needs ``transfer``."""
        self._may_transfer()
        record_ids = _ids(ids)
        with self._write() as conn:  # type: ignore[attr-defined]
            target = find_user(conn, to, "to")
            return [self.update(record_id, {self.entity.owner_field: target.id})  # type: ignore[attr-defined]
                    for record_id in record_ids]

    def _owned_by(self, user_id: int) -> sa.Select:
        """The ids of ``user_id``'s records the caller may update, in id order."""
        return (sa.select(self.table.c.id)
                .where(owned(self.entity, self.table, lambda owner: owner == user_id),
                       *self._scope(self.access, self.table, "update"))
                .order_by(self.table.c.id))

    def owned_count(self, user: Any) -> int:
        """How many records of ``user`` (id or username, active or not) the caller could
        transfer; 0 when the caller may not transfer this entity's records."""
        if not (self.allowed("transfer") and self.allowed("update")):  # type: ignore[attr-defined]
            return 0
        with self._reading() as conn:  # type: ignore[attr-defined]
            source = find_user(conn, user, "from", active=False)
            return conn.execute(sa.select(sa.func.count()).select_from(self._owned_by(source.id).subquery())
                                ).scalar_one()

    def transfer_all(self, from_user: Any, to: Any) -> int:
        """Give every record of ``from_user`` (a departing user: active or not) that the
        caller may update to ``to``, in one transaction; returns how many moved."""
        self._may_transfer()
        with self._write() as conn:  # type: ignore[attr-defined]
            source = find_user(conn, from_user, "from", active=False)
            target = find_user(conn, to, "to")
            if source.id == target.id:
                raise ValidationError("the records already belong to this user",
                                      errors=[error_entry("to", "same_owner", "choose another user than the one "
                                                          "the records belong to")])
            ids = list(conn.execute(self._owned_by(source.id)).scalars())
            for record_id in ids:
                self.update(record_id, {self.entity.owner_field: target.id})  # type: ignore[attr-defined]
        return len(ids)

