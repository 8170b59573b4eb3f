"""What a write would make of a record, without writing it: the values a form shows as the
user types (computed fields, defaults read from a linked record) and the state of each
field (shown, required, read-only), with the messages a save would give. Part of the
record service.

The preview runs the write's own business logic (``loom.records.logic.WriteLogic``, through
``RecordService._apply_logic``) on the write's own checks of the input, permissions and
links, inside a reading transaction: nothing is stored, numbered, audited or announced,
and no plugin hook runs (hooks may act on the world). It shows only what the caller may
read: their fields, and messages about those fields (a rule about a field they cannot
read speaks about the record as a whole). A preview needs the right to make the write it
previews (create, or update of that record), so it tells nobody more than the write would.

Also here: ``read_only_when`` as SQL, for either way it is written (an expression, or a
condition of the row-scope language), so a record's lock means the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
import sqlalchemy as sa

from loom.db import utcnow
from loom.errors import ValidationError, error_entry
from loom.expressions.sql import table_resolver
from loom.metadata.model import Entity, Field
from loom.records.logic import FieldState, WriteLogic
from loom.records.schemas import flatten_errors

#: ``lines[2].product`` -> ("lines", 2, "product"); ``customer`` -> ("customer", None, None)
_PATH = re.compile(r"^([a-z][a-z0-9_]*)(?:\[(\d+)\](?:\.([a-z][a-z0-9_]*))?)?$")
STATE_LOCKED = "is read-only in the record's current state"


class Previews:
    """The preview of ``RecordService`` (which sets the attributes used here)."""

    entity: Entity
    table: sa.Table
    model: Any
    context: Any
    principal: Any
    access: Any
    dialect: str

    def _lock_condition(self, f: Field) -> sa.ColumnElement[bool]:
        """SQL that holds for a stored row while ``f``'s ``read_only_when`` does."""
        if f.read_only_when_expr is not None:
            resolve = table_resolver(self.table, self.context.live.tables, self.entity, self.model)
            return f.read_only_when_expr.to_sql(resolve, user=self.principal, now=utcnow())
        return self.access.condition(f.read_only_when, self.table, self.dialect)

    def preview(self, data: Any, record_id: int | None = None) -> dict[str, Any]:
        """What creating a record from ``data`` (or, with ``record_id``, changing that record
        by ``data``) would store, as far as the caller may read it:

        ``{"values": {field: JSON value}, "fields": {field: {"visible", "required",
        "read_only"}}, "errors": [error entries]}`` (rows of table fields in ``values``
        as lists, their fields' states as ``lines[0].amount``). Values that do not load
        are reported and left out; the rest is worked out as a save would. Refused (403,
        404) where the write would be."""
        action = "create" if record_id is None else "update"
        self.access.require(action)
        if not isinstance(data, Mapping):
            raise ValidationError("the body must be a JSON object of field values",
                                  errors=[error_entry("", "not_an_object", "expected a JSON object")])
        values, children, errors = self._preview_load(dict(data), action)
        with self._reading() as conn:
            row, locked = (None, set()) if record_id is None else self._fetch_for_update(conn, record_id, lock=False)
            errors += self._preview_links(conn, values, children)
            now = utcnow()
            logic = WriteLogic(conn, self.model, self.context.live.tables, self.principal, now)
            logic.seen = {}
            try:
                self._apply_logic(conn, [(values, children)], now, record=row, logic=logic)
            except ValidationError as exc:
                errors += exc.errors
            standard = {**self._standard_values(logic.now), "owner": self.principal.user_id}
            current, states = logic.seen.get("", ({**(row or standard), **values}, None))
            errors += [error_entry(name, "state_locked", STATE_LOCKED) for name in sorted(locked)
                       if name in values and row is not None and values[name] != row[name]]
            return self._preview_reply(conn, action, current, states, children, logic.seen, locked, errors)

    # -- the input ----------------------------------------------------------------------

    def _preview_load(self, data: dict[str, Any], action: str
                      ) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
        """The input as a write loads it, but keeping what loads when something does not."""
        data.pop("version", None)
        errors = self._sort_out(self.access, data, action)
        schema = self._schemas(self.entity)["create" if action == "create" else "partial"]
        try:
            values = schema.load(data)
        except ma.ValidationError as exc:
            errors += flatten_errors(exc.messages)
            values = dict(exc.valid_data or {})
        children: dict[str, list[dict[str, Any]]] = {}
        for f in self.entity.table_fields:
            rows = values.pop(f.name, None)
            if rows is None:
                continue
            child = self.model.entity(f.target)
            child_schema = self._schemas(child)["create"]
            children[f.name] = []
            for i, raw in enumerate(rows if isinstance(rows, list) else []):
                if not isinstance(raw, Mapping):
                    errors.append(error_entry(f"{f.name}[{i}]", "not_an_object", "expected a JSON object"))
                    children[f.name].append({})
                    continue
                raw = dict(raw)
                errors += self._sort_out(self.access_for(child), raw, action, f"{f.name}[{i}].")
                try:
                    children[f.name].append(child_schema.load(raw))
                except ma.ValidationError as exc:
                    errors += flatten_errors(exc.messages, f"{f.name}[{i}]")
                    children[f.name].append(dict(exc.valid_data or {}))
        return values, children, errors

    def _preview_links(self, conn: sa.Connection, values: dict[str, Any],
                       children: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The links a write would refuse, reported and emptied: nothing is read through a
        link to a record the caller may not read."""
        try:
            self._validate_links(conn, [(values, children)])
        except ValidationError as exc:
            for error in exc.errors:
                match = _PATH.match(error["field"])
                if match is None:
                    continue
                name, index, child_field = match.groups()
                if index is None:
                    values[name] = None
                elif child_field is not None and int(index) < len(children.get(name, ())):
                    children[name][int(index)][child_field] = None
            return exc.errors
        return []

    # -- the reply ----------------------------------------------------------------------

    def _preview_reply(self, conn: sa.Connection, action: str, current: Mapping[str, Any],
                       states: Mapping[str, FieldState] | None, children: dict[str, list[dict[str, Any]]],
                       seen: Mapping[str, tuple[dict[str, Any], dict[str, FieldState]]], locked: set[str],
                       errors: list[dict[str, Any]]) -> dict[str, Any]:
        readable = self.access.readable()
        writable = self.access.writable(action) - locked
        reply_values: dict[str, Any] = {}
        fields: dict[str, dict[str, bool]] = {}
        shown = [f for f in self.entity.fields if f.name in readable]
        titles = _titles(self, conn, current, shown)
        for f in shown:
            state = states[f.name] if states is not None else FieldState(True, f.required)
            fields[f.name] = _state(f, state, f.name not in writable)
            if f.type == "table":
                reply_values[f.name] = self._preview_rows(conn, f, action, children, seen, fields)
            else:
                reply_values[f.name] = _value(f, current.get(f.name), titles)
        return {"values": reply_values, "fields": fields, "errors": self._readable_errors(errors, readable)}

    def _preview_rows(self, conn: sa.Connection, table: Field, action: str,
                      children: dict[str, list[dict[str, Any]]],
                      seen: Mapping[str, tuple[dict[str, Any], dict[str, FieldState]]],
                      fields: dict[str, dict[str, bool]]) -> list[dict[str, Any]] | None:
        if table.name not in children:
            return None
        child = self.model.entity(table.target)
        readable, writable = self.access_for(child).readable(), self.access_for(child).writable(action)
        shown = [c for c in child.fields if c.name in readable]
        rows = []
        for i, given in enumerate(children[table.name]):
            prefix = f"{table.name}[{i}]."
            current, states = seen.get(prefix, (given, None))
            titles = _titles(self, conn, current, shown)
            for c in shown:
                state = states[c.name] if states is not None else FieldState(True, c.required)
                fields[prefix + c.name] = _state(c, state, c.name not in writable)
            rows.append({c.name: _value(c, current.get(c.name), titles) for c in shown})
        return rows

    def _readable_errors(self, errors: list[dict[str, Any]], readable: set[str]) -> list[dict[str, Any]]:
        """The errors about fields the caller may read; a message about another field (a
        rule naming it) is about the record as a whole, and names no field."""
        result = []
        for error in errors:
            match = _PATH.match(error["field"])
            if match is not None:
                name, _index, child_field = match.groups()
                f = self.entity.all_fields.get(name)
                hidden = name not in readable or (
                    child_field is not None and f is not None and f.type == "table"
                    and child_field not in self.access_for(self.model.entity(f.target)).readable())
                if hidden and error["code"] != "unknown_field":  # an unknown field is the caller's own
                    error = {**error, "field": "", "params": {k: v for k, v in error.get("params", {}).items()
                                                              if k == "messages"}}
            if error not in result:
                result.append(error)
        return result


def _titles(service: Any, conn: sa.Connection, values: Mapping[str, Any],
            fields: list[Field]) -> dict[str, dict[int, Any]]:
    """The titles of the records ``values`` links to, as far as the caller may read them."""
    links = [f for f in fields if f.type == "link"]
    return service._link_titles(conn, [{f.name: values.get(f.name) for f in links}], links, False)


def _state(f: Field, state: FieldState, not_writable: bool) -> dict[str, bool]:
    read_only = bool(not_writable or f.read_only or f.compute or f.autonumber or not f.kind.editable)
    return {"visible": state.visible, "required": state.required and not read_only, "read_only": read_only}


def _value(f: Field, value: Any, titles: Mapping[str, Mapping[int, Any]]) -> Any:
    if value is None:
        return None
    if f.type == "link":
        return {"id": value, "title": titles.get(f.name, {}).get(value)}
    try:
        return f.kind.to_json(value)
    except (TypeError, ValueError, AttributeError):
        return None
