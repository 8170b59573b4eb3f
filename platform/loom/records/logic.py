"""Business logic at every write: computed defaults, computed fields, conditional
``required_when`` and the entity's rules (declared in metadata, compiled with it: see
``loom.expressions.logic``).

Per record, in this order: the input has been validated; fields not given get their
``{expression: ...}`` or ``{from: link.field}`` default (create; on update, a ``{from:
link.field}`` default is read again when its link changes and the field is not given);
computed fields are evaluated, each after those it reads; ``visible_when`` says which
fields are shown (a hidden one is not required, and is set to null where it is
``clear_when_hidden``); ``required``/``required_when`` are checked on the shown ones; then
every rule. Paths
through links read the linked records on the write's own connection, each record once per
write, and the first link of every path for all records of a bulk write in one query per
linked entity. Child rows (table fields) go through the same steps with their own entity.

Roll-ups over child rows are worked out here, from the rows the write gives (each row's
own logic run first), before the computed fields that read them; a new record's roll-ups
over linked records start at their empty value (nothing links to it yet). Roll-ups over
linked records, and computed fields marked ``depends_on_links``, are recomputed when their
inputs change by ``loom.records.derived``, in the same transaction.

What is not done here yet: a computed field without ``depends_on_links`` is recomputed only
when its own record is written, not when a record it reads through a link changes; none is
recomputed as time passes for an expression with ``today()``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa

from loom.errors import error_entry
from loom.expressions.evaluator import user_properties
from loom.metadata.formatting import label_text
from loom.metadata.model import USER_ENTITY, USER_TABLE, AppModel, Entity, Field, Rollup
from loom.principal import Principal

COMPUTED = "is computed from {expression}; it cannot be set"
ROLLED_UP = "is rolled up as {rollup}; it cannot be set"


def computed_refusal(field: str, f: Field) -> dict[str, Any]:
    """The error entry for a value sent for a computed (or rolled-up) field."""
    if f.rollup is not None:
        return error_entry(field, "computed", ROLLED_UP.format(rollup=f.rollup.text), rollup=f.rollup.text)
    return error_entry(field, "computed", COMPUTED.format(expression=f.compute), expression=f.compute)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


class FieldState(NamedTuple):
    """Whether a field is shown, and whether it needs a value, for one record."""

    visible: bool
    required: bool


class Unevaluable(Exception):
    """An expression that cannot be worked out for a record's values."""


class WriteLogic:
    """The business logic of one write: its instant, its actor, the linked records it read."""

    def __init__(self, conn: sa.Connection, model: AppModel, tables: Mapping[str, sa.Table], principal: Principal,
                 now: dt.datetime):
        self.conn, self.model, self.tables, self.principal = conn, model, tables, principal
        self.now = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
        #: the actor's $user properties, worked out once for every expression of the write
        self.user = user_properties(principal)
        self._records: dict[tuple[str, Any], Mapping[str, Any] | None] = {}
        #: when not None, each record's values as the logic saw them and each field's
        #: (visible, required), by the record's prefix (what a preview shows)
        self.seen: dict[str, tuple[dict[str, Any], dict[str, FieldState]]] | None = None

    # -- linked records -----------------------------------------------------------------

    def _table(self, entity_name: str) -> sa.Table:
        if entity_name == USER_ENTITY:
            table = self.tables.get(USER_ENTITY)
            return table if table is not None else next(iter(self.tables.values())).metadata.tables[USER_TABLE]
        return self.tables[entity_name]

    def _fetch(self, entity_name: str, ids: Iterable[Any]) -> None:
        wanted = sorted({i for i in ids if i is not None and (entity_name, i) not in self._records})
        if not wanted:
            return
        statement = _by_ids(self._table(entity_name))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            for row in self.conn.execute(statement, {"ids": chunk}).mappings():
                self._records[(entity_name, row["id"])] = dict(row)
            for i in chunk:
                self._records.setdefault((entity_name, i), None)

    def lookup(self, entity_name: str, record_id: Any) -> Mapping[str, Any] | None:
        """The linked record (as stored), read once per write."""
        if (entity_name, record_id) not in self._records:
            self._fetch(entity_name, [record_id])
        return self._records[(entity_name, record_id)]

    def prefetch(self, entity: Entity, records: Sequence[Mapping[str, Any]]) -> None:
        """Read, one query per linked entity, the records the first link of each path of
        ``entity``'s expressions points at, for all ``records`` at once."""
        links: set[str] = set()
        for expression in _expressions(entity):
            links.update(p.split(".", 1)[0] for p in expression.paths if "." in p)
        by_target: dict[str, set[Any]] = {}
        for name in links:
            f = entity.all_fields.get(name)
            if f is not None and f.type == "link":
                by_target.setdefault(f.target, set()).update(r.get(name) for r in records)
        for target, ids in by_target.items():
            self._fetch(target, ids)

    def prefetch_children(self, entity: Entity, children: Sequence[Mapping[str, list[dict[str, Any]]]]) -> None:
        """``prefetch`` for the child rows of all records of a write at once."""
        for f in entity.table_fields:
            child = self.model.entity(f.target)
            if child.has_logic:
                self.prefetch(child, [row for rows in children for row in rows.get(f.name, ())])

    # -- one record ---------------------------------------------------------------------

    def evaluate(self, expression: Any, record: Mapping[str, Any]) -> Any:
        try:
            return expression.evaluate(record, user=self.user, now=self.now, lookup=self.lookup)
        except (ArithmeticError, ValueError) as exc:  # a date past the calendar's end, say
            raise Unevaluable(f"cannot be worked out from '{expression.text}' for these values ({exc})") from None

    def defaults(self, entity: Entity, values: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
        """Fill fields left empty (not given, or given empty, as a form sends a field nobody
        typed into) that have a computed default, in declaration order."""
        errors = []
        for f in entity.fields:
            if f.default_expr is not None and _empty(values.get(f.name)):
                self._fill(f, values, values, prefix, errors)
        return errors

    def _fill(self, f: Field, values: dict[str, Any], record: Mapping[str, Any], prefix: str,
              errors: list[dict[str, Any]]) -> None:
        """Set ``f`` in ``values`` to its computed default for ``record``; a value it cannot
        hold, or a default that cannot be worked out, is an error entry (and null)."""
        try:
            value, problem = _stored(f, self.evaluate(f.default_expr, record))
        except Unevaluable as exc:
            value, problem = None, error_entry(f.name, "invalid", str(exc))
        values[f.name] = value
        if problem is not None:
            errors.append({**problem, "field": prefix + f.name})

    def apply(self, entity: Entity, values: dict[str, Any], *, record: Mapping[str, Any] | None = None,
              creating: bool = True, prefix: str = "", standard: Mapping[str, Any] | None = None,
              children: Mapping[str, list[dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
        """Run the logic of ``entity`` on one record: ``values`` are what is written (computed
        fields are set in it), ``record`` the stored row an update changes, ``standard``
        the standard fields a new record will have (``owner``, ``created_by``, ...; its id
        is not known yet). Returns the error entries (fields prefixed with ``prefix``)."""
        if not entity.has_logic:
            return []
        errors = []
        if creating:
            errors.extend(self.defaults(entity, values, prefix))
        elif record is not None:
            errors.extend(self.fetched(entity, values, record, prefix))
        errors.extend(self.rollups(entity, values, children, creating, prefix))  # before what reads them
        current = {**(record if record is not None else standard or {}), **values}
        errors.extend(self._compute(entity, values, current, record, prefix))
        states = self.states(entity, current)
        hidden = [f for f in entity.fields if f.clear_when_hidden and not states[f.name].visible
                  and current.get(f.name) is not None]
        for f in hidden:  # cleared, then computed again from the record as it will be
            values[f.name] = current[f.name] = None
        if hidden:
            errors.extend(self._compute(entity, values, current, record, prefix))
        if self.seen is not None:
            self.seen[prefix] = (current, states)
        for f in entity.fields:
            state = states[f.name]
            needs_check = f.visible_when_expr is not None or f.required_when_expr is not None \
                or (creating and f.default_expr is not None)  # else the input's validation checked it
            if needs_check and state.required and _empty(current.get(f.name)):
                errors.append(error_entry(prefix + f.name, "required", "is required"))
        for rule in entity.rules:
            if rule.when_expr is not None and self._holds(rule.when_expr, current):
                message = label_text(rule.message, self.principal.locale, rule.when)
                for name in rule.fields or ("",):
                    field = (prefix + name) if name else prefix.rstrip(".")
                    errors.append(error_entry(field, "rule_failed", message, messages=dict(rule.message)))
        return errors

    def fetched(self, entity: Entity, values: dict[str, Any], record: Mapping[str, Any],
                prefix: str) -> list[dict[str, Any]]:
        """On update: a ``{from: link.field}`` default not given is read again from the
        newly linked record when the write changes its link (a value sent wins)."""
        errors = []
        for f in entity.fields:
            if f.default_from is None or f.default_expr is None or f.name in values:
                continue
            link = f.default_expr.paths[0].split(".", 1)[0]
            if link in values and values[link] != record.get(link):
                self._fill(f, values, {**record, **values}, prefix, errors)
        return errors

    def states(self, entity: Entity, current: Mapping[str, Any]) -> dict[str, FieldState]:
        """Each field's (visible, required) for the record as it will be: hidden while its
        ``visible_when`` is not met (a condition that cannot be worked out shows it);
        required where shown and ``required`` or its ``required_when`` met."""
        states = {}
        for f in entity.fields:
            visible = f.visible_when_expr is None or self._holds(f.visible_when_expr, current)
            required = visible and (f.required or (f.required_when_expr is not None
                                                   and self._holds(f.required_when_expr, current)))
            states[f.name] = FieldState(visible, required)
        return states

    def _compute(self, entity: Entity, values: dict[str, Any], current: dict[str, Any],
                 record: Mapping[str, Any] | None, prefix: str) -> list[dict[str, Any]]:
        """Evaluate the computed fields into ``current`` (and into ``values`` where they
        change the stored record)."""
        errors = []
        for name in entity.compute_order:
            f = entity.all_fields[name]
            try:
                value, problem = _stored(f, self.evaluate(f.compute_expr, current))
            except Unevaluable as exc:
                value, problem = None, error_entry(name, "invalid", str(exc))
            if problem is not None:
                errors.append({**problem, "field": prefix + name})
                continue
            current[name] = value
            if record is None or record.get(name) != value:
                values[name] = value
        return errors

    def rollups(self, entity: Entity, values: dict[str, Any], children: Mapping[str, list[dict[str, Any]]] | None,
                creating: bool, prefix: str) -> list[dict[str, Any]]:
        """Set the roll-ups of a record being written: those over child rows from the rows
        given (already computed), and for a new record those over linked records to their
        empty value (nothing links to it yet)."""
        errors = []
        for f in entity.rollups:
            rollup = f.rollup
            assert rollup is not None
            if rollup.table is not None and children is not None and rollup.table in children:
                rows = [row for row in children[rollup.table]
                        if rollup.where_expr is None or self._meets(rollup.where_expr, row)]
                value = aggregate(rollup, rows)
            elif creating and (rollup.link is not None or rollup.table is not None):
                value = rollup.empty
            else:
                continue
            value, problem = _stored(f, value)
            if problem is not None:
                errors.append({**problem, "field": prefix + f.name})
            else:
                values[f.name] = value
        return errors

    def _meets(self, condition: Any, record: Mapping[str, Any]) -> bool:
        """Whether a where condition holds (null, and what cannot be worked out, do not)."""
        try:
            return self.evaluate(condition, record) is True
        except Unevaluable:
            return False

    def _holds(self, condition: Any, record: Mapping[str, Any]) -> bool:
        """Whether a condition is met (true; null is not); one that cannot be worked out
        for these values counts as met, so the record is checked by a person."""
        try:
            return self.evaluate(condition, record) is True
        except Unevaluable:
            return True

    def apply_children(self, entity: Entity, children: Mapping[str, list[dict[str, Any]]],
                       prefix: str = "") -> list[dict[str, Any]]:
        """The logic of each child row given (rows are written whole, so as new ones)."""
        errors = []
        for f in entity.table_fields:
            rows = children.get(f.name)
            child = self.model.entity(f.target)
            if not rows or not child.has_logic:
                continue
            self.prefetch(child, rows)
            for i, row in enumerate(rows):
                errors.extend(self.apply(child, row, prefix=f"{prefix}{f.name}[{i}]."))
        return errors


def aggregate(rollup: Rollup, rows: Iterable[Mapping[str, Any]]) -> Any:
    """A roll-up's aggregate over ``rows`` (those meeting its where), as SQL gives it:
    nulls are skipped; over nothing, sum and count give 0, min, max and avg null."""
    if rollup.aggregate == "count":
        return sum(1 for _row in rows)
    values = [row.get(rollup.field or "") for row in rows]
    values = [v for v in values if v is not None]
    if rollup.aggregate == "sum":
        return sum((Decimal(v) if not isinstance(v, Decimal) else v for v in values), Decimal(0))
    if not values:
        return None
    if rollup.aggregate == "avg":
        return sum(Decimal(v) for v in values) / len(values)
    return min(values) if rollup.aggregate == "min" else max(values)


@functools.lru_cache(maxsize=512)
def _by_ids(table: sa.Table) -> sa.Select:
    """The rows of ``table`` with the ids given as ``ids``: one statement per table (and so
    per metadata version), not one built and keyed anew by every write."""
    return sa.select(table).where(table.c.id.in_(sa.bindparam("ids", expanding=True)))


def _expressions(entity: Entity) -> list[Any]:
    found = [e for f in entity.fields
             for e in (f.compute_expr, f.required_when_expr, f.default_expr, f.visible_when_expr)
             if e is not None]
    return found + [r.when_expr for r in entity.rules if r.when_expr is not None]


def _stored(f: Field, value: Any) -> tuple[Any, dict[str, Any] | None]:
    """An expression's value as ``f`` stores it (numbers rounded half away from zero to the
    field's places), or the error entry of a value the field cannot hold."""
    if value is None:
        return None, None
    if f.type == "integer":
        value = int(Decimal(value).quantize(Decimal(1), ROUND_HALF_UP))
        if not -2**63 <= value < 2**63:
            return None, error_entry(f.name, "number_too_large", "the computed number is too large")
        return value, None
    if f.kind.numeric and f.type != "link":
        precision, scale = f.precision_scale
        value = Decimal(value).quantize(Decimal(1).scaleb(-scale), ROUND_HALF_UP)
        if value == 0:
            value = abs(value)  # 0.00, not -0.00
        if abs(value) >= Decimal(10) ** (precision - scale):
            return None, error_entry(f.name, "too_many_digits", f"the computed number has more than "
                                     f"{precision - scale} digits before the decimal point",
                                     digits=precision - scale)
        return value, None
    if isinstance(value, str) and f.max_length is not None and len(value) > f.max_length:
        return None, error_entry(f.name, "too_long", f"the computed text is longer than {f.max_length} characters",
                                 max=f.max_length)
    return value, None
