"""The record service: the one door to entity data.

Every read and write of entity records (API, screens, import, flows, plugins) goes
through ``RecordService``, so validation, hooks, events (and, as they arrive,
permissions and audit) cannot be bypassed. Writes run in one transaction together with
their outbox events; ``after_record_commit`` hooks run once it committed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import marshmallow as ma
import sqlalchemy as sa

from loom.db import utcnow, write_transaction
from loom.errors import BadRequest, Conflict, NotFound, PreconditionFailed, ValidationError
from loom.events import emit
from loom.identity.principal import Principal
from loom.metadata.model import USER_ENTITY, Entity, Field
from loom.records.query import Condition, Cursors, ListQuery, SortKey, parse_list_query
from loom.records.schemas import build_schemas, flatten_errors
from loom.schema.service import LiveVersion
from loom.schema.tables import desired_indexes

#: standard columns that are never NULL, so keyset pagination needs no NULL handling
NOT_NULL = {"id", "version", "created_at", "updated_at"}
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (.+)")


@dataclass
class Context:
    """What a record operation runs with: the database, the live metadata, who acts,
    the plugin hooks and the list settings."""

    engine: sa.Engine
    live: LiveVersion
    principal: Principal
    hooks: Any
    cursors: Cursors
    page_size: int = 50
    max_page_size: int = 500


@dataclass
class Page:
    data: list[dict[str, Any]]
    next_cursor: str | None
    count: int | None = None


def _json(field: Field, value: Any) -> Any:
    return None if value is None else field.kind.to_json(value)


class RecordService:
    """Records of one entity, as seen by ``context.principal``."""

    def __init__(self, context: Context, entity_name: str):
        model = context.live.model
        entity = model.entities.get(entity_name)
        if entity is None or entity.child:
            raise NotFound(f"there is no entity named '{entity_name}'")
        self.context = context
        self.model = model
        self.entity: Entity = entity
        self.table: sa.Table = context.live.tables[entity_name]
        self.hooks = context.hooks
        self.principal = context.principal

    # -- helpers ------------------------------------------------------------------------

    def _schemas(self, entity: Entity) -> dict[str, ma.Schema]:
        return self.context.live.derive(f"schemas:{entity.name}", lambda: build_schemas(entity, self.model))

    def _load(self, data: Any, mode: str) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
        """Validate input: (typed values of stored fields, typed child rows per table field)."""
        if not isinstance(data, Mapping):
            raise ValidationError("the body must be a JSON object of field values",
                                  errors=[{"field": "", "message": "expected a JSON object"}])
        data = dict(data)
        data.pop("version", None)
        errors = []
        for name in list(data):
            f = self.entity.all_fields.get(name)
            if f is not None and (f.read_only or (f.system and name != "owner")) and not self.principal.is_system:
                errors.append({"field": name, "message": "is read-only"})
                del data[name]
        try:
            values = self._schemas(self.entity)[mode].load(data)
        except ma.ValidationError as exc:
            errors.extend(flatten_errors(exc.messages))
            values = {}
        children: dict[str, list[dict[str, Any]]] = {}
        for f in self.entity.table_fields:
            if f.name not in values:
                continue
            rows, child_errors = self._load_children(f, values.pop(f.name))
            children[f.name] = rows
            errors.extend(child_errors)
        if errors:
            raise ValidationError(f"{len(errors)} invalid value(s)", errors=errors)
        return values, children

    def _load_children(self, f: Field, rows: list) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        child = self.model.entity(f.target)
        schema = self._schemas(child)["create"]
        loaded, errors = [], []
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                errors.append({"field": f"{f.name}[{i}]", "message": "expected a JSON object"})
                continue
            try:
                loaded.append(schema.load(row))
            except ma.ValidationError as exc:
                errors.extend(flatten_errors(exc.messages, f"{f.name}[{i}]"))
        return loaded, errors

    def _check_links(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]], entity: Entity,
                     where: Sequence[str]) -> list[dict[str, str]]:
        """A link must point at an existing record: say which do not. ``where[i]`` is the
        path prefix of ``rows[i]`` in error messages."""
        errors = []
        for f in entity.fields:
            if f.type != "link":
                continue
            wanted = {row[f.name] for row in rows if row.get(f.name) is not None}
            if not wanted:
                continue
            target = self._target_table(f.target)
            found = set(conn.execute(sa.select(target.c.id).where(target.c.id.in_(wanted))).scalars())
            for prefix, row in zip(where, rows, strict=True):
                if row.get(f.name) is not None and row[f.name] not in found:
                    errors.append({"field": prefix + f.name,
                                   "message": f"there is no {f.target} with id {row[f.name]}"})
        return errors

    def _target_table(self, target: str) -> sa.Table:
        if target == USER_ENTITY:
            return next(iter(self.context.live.tables.values())).metadata.tables["loom_users"]
        return self.context.live.tables[target]

    def _integrity(self, exc: sa.exc.IntegrityError) -> Conflict:
        """Turn a database constraint violation into a 409 naming the field."""
        names: list[str] = []
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        if constraint:
            for index_name, (columns, _unique) in desired_indexes(self.entity).items():
                if index_name == constraint:
                    names = [c for c, _ in columns]
        else:
            match = _SQLITE_UNIQUE.search(str(exc.orig))
            if match:
                names = [part.strip().split(".")[-1] for part in match.group(1).split(",")]
        if names:
            label = ", ".join(names)
            return Conflict(f"another {self.entity.name} already has this {label}",
                            errors=[{"field": n, "message": "must be unique; another record has this value"}
                                    for n in names])
        return Conflict("the change conflicts with other records")

    # -- reading ------------------------------------------------------------------------

    def _columns(self, names: Iterable[str] | None) -> list[sa.Column]:
        if names is None:
            return list(self.table.c)
        wanted = {"id", "version", *names}
        return [c for c in self.table.c if c.name in wanted]

    def _serialize(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]],
                   names: list[str] | None = None) -> list[dict[str, Any]]:
        entity = self.entity
        wanted = None if names is None else {"id", *names}
        fields = [f for f in entity.all_fields.values() if (wanted is None or f.name in wanted)]
        titles = self._link_titles(conn, entity, rows, fields)
        children = self._children(conn, rows, [f for f in fields if f.type == "table"])
        result = []
        for row in rows:
            record: dict[str, Any] = {}
            for f in fields:
                if f.type == "table":
                    record[f.name] = children[f.name].get(row["id"], [])
                elif f.type == "link":
                    value = row[f.name]
                    record[f.name] = None if value is None else {"id": value, "title": titles[f.name].get(value)}
                else:
                    record[f.name] = _json(f, row[f.name])
            result.append(record)
        return result

    def _link_titles(self, conn: sa.Connection, entity: Entity, rows: Sequence[Mapping[str, Any]],
                     fields: list[Field]) -> dict[str, dict[int, Any]]:
        titles: dict[str, dict[int, Any]] = {}
        by_target: dict[str, set[int]] = defaultdict(set)
        for f in fields:
            if f.type == "link":
                by_target[f.target].update(row[f.name] for row in rows if row[f.name] is not None)
        found: dict[str, dict[int, Any]] = {}
        for target, ids in by_target.items():
            if not ids:
                found[target] = {}
                continue
            table = self._target_table(target)
            if target == USER_ENTITY:
                title_col = sa.func.coalesce(sa.func.nullif(table.c.display_name, ""), table.c.username)
                title_field = None
            else:
                target_entity = self.model.entity(target)
                title_field = target_entity.field(target_entity.title_field)
                title_col = table.c[title_field.name]
            pairs = conn.execute(sa.select(table.c.id, title_col).where(table.c.id.in_(ids))).all()
            found[target] = {i: (t if title_field is None else _json(title_field, t)) for i, t in pairs}
        for f in fields:
            if f.type == "link":
                titles[f.name] = found.get(f.target, {})
        return titles

    def _children(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]],
                  fields: list[Field]) -> dict[str, dict[int, list[dict[str, Any]]]]:
        result: dict[str, dict[int, list[dict[str, Any]]]] = {}
        ids = [row["id"] for row in rows]
        for f in fields:
            child = self.model.entity(f.target)
            table = self.context.live.tables[child.name]
            grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
            if ids:
                child_rows = conn.execute(sa.select(table).where(table.c.parent_id.in_(ids))
                                          .order_by(table.c.parent_id, table.c.position)).mappings().all()
                child_fields = [c for c in child.all_fields.values()]
                titles = self._link_titles(conn, child, child_rows, child_fields)
                for row in child_rows:
                    item = {}
                    for cf in child_fields:
                        value = row[cf.name]
                        if cf.type == "link":
                            item[cf.name] = None if value is None else {"id": value, "title": titles[cf.name].get(value)}
                        else:
                            item[cf.name] = _json(cf, value)
                    grouped[row["parent_id"]].append(item)
            result[f.name] = grouped
        return result

    def _fetch_row(self, conn: sa.Connection, record_id: int, *, lock: bool = False) -> Mapping[str, Any]:
        if not 0 < record_id < 2**63:
            raise NotFound(f"there is no {self.entity.name} with id {record_id}")
        query = sa.select(self.table).where(self.table.c.id == record_id)
        if lock and conn.dialect.name != "sqlite":
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFound(f"there is no {self.entity.name} with id {record_id}")
        return row

    def get(self, record_id: int, fields: list[str] | None = None) -> dict[str, Any]:
        if fields is not None:
            for name in fields:
                if name not in self.entity.all_fields:
                    raise BadRequest(f"unknown field '{name}' in fields",
                                     errors=[{"field": "fields", "message": f"unknown field '{name}'"}])
        with self.context.engine.connect() as conn:
            row = self._fetch_row(conn, record_id)
            return self._serialize(conn, [row], fields)[0]

    def parse_query(self, args: Mapping[str, Any]) -> ListQuery:
        return parse_list_query(self.entity, args, cursors=self.context.cursors,
                                default_limit=self.context.page_size, max_limit=self.context.max_page_size)

    def list(self, query: ListQuery | Mapping[str, Any] | None = None) -> Page:
        if not isinstance(query, ListQuery):
            query = self.parse_query(query or {})
        where = [self._condition(c) for c in query.conditions]
        if query.search:
            searchable = [self.table.c[f.name].icontains(query.search, autoescape=True)
                          for f in self.entity.search_fields]
            where.append(sa.or_(*searchable) if searchable else sa.false())
        selected = None if query.fields is None else [*query.fields, *(k.field.name for k in query.sort)]
        stmt = sa.select(*self._columns(selected)).where(*where)
        if query.after is not None:
            stmt = stmt.where(*self._after(query.sort, query.after))
        stmt = stmt.order_by(*self._order(query.sort)).limit(query.limit + 1)
        with self.context.engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
            more = len(rows) > query.limit
            rows = rows[:query.limit]
            data = self._serialize(conn, rows, query.fields)
            count = None
            if query.count:
                count = conn.execute(sa.select(sa.func.count()).select_from(self.table).where(*where)).scalar_one()
        next_cursor = None
        if more and rows:
            last = rows[-1]
            values = [_json(k.field, last[k.field.name]) for k in query.sort]
            next_cursor = self.context.cursors.encode(self.entity, query.sort, values)
        return Page(data, next_cursor, count)

    def _condition(self, condition: Condition) -> sa.ColumnElement[bool]:
        column = self.table.c[condition.field.name]
        op, value = condition.op, condition.value
        if op == "eq":
            return column == value
        if op == "ne":
            return sa.or_(column != value, column.is_(None))
        if op == "lt":
            return column < value
        if op == "lte":
            return column <= value
        if op == "gt":
            return column > value
        if op == "gte":
            return column >= value
        if op == "in":
            return column.in_(value)
        if op == "nin":
            return sa.or_(column.not_in(value), column.is_(None))
        if op == "isnull":
            return column.is_(None) if value else column.is_not(None)
        if condition.field.type == "multiselect":
            return self._json_array_contains(column, value)
        if op == "contains":
            return column.icontains(value, autoescape=True)
        return column.istartswith(value, autoescape=True)

    def _json_array_contains(self, column: sa.Column, value: str) -> sa.ColumnElement[bool]:
        if self.context.engine.dialect.name == "postgresql":
            return sa.cast(column, sa.dialects.postgresql.JSONB).contains(sa.cast(sa.func.json_build_array(value), sa.dialects.postgresql.JSONB))
        each = sa.func.json_each(column).table_valued("value").alias("choice")
        return sa.exists(sa.select(sa.literal(1)).select_from(each).where(each.c.value == value))

    def _nullable(self, key: SortKey) -> bool:
        return key.field.name not in NOT_NULL

    def _order(self, keys: list[SortKey]) -> list[Any]:
        # NULL sorts as the largest value on both databases: last ascending, first descending.
        order = []
        for key in keys:
            column = self.table.c[key.field.name]
            if key.descending:
                order.append(column.desc().nulls_first() if self._nullable(key) else column.desc())
            else:
                order.append(column.asc().nulls_last() if self._nullable(key) else column.asc())
        return order

    def _after(self, keys: list[SortKey], values: list[Any]) -> list[sa.ColumnElement[bool]]:
        """Keyset condition: rows strictly after ``values`` in the order ``keys``."""
        def equal(key: SortKey, value: Any):
            column = self.table.c[key.field.name]
            return column.is_(None) if value is None else column == sa.literal(value, column.type)

        def beyond(key: SortKey, value: Any):
            column = self.table.c[key.field.name]
            if value is not None:
                # booleans compare too (false < true), which SQLAlchemy allows only for a bound value
                value = sa.literal(value, column.type)
            if key.descending:
                return column.is_not(None) if value is None else column < value
            if value is None:
                return None
            return sa.or_(column > value, column.is_(None)) if self._nullable(key) else column > value

        alternatives = []
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            step = beyond(key, value)
            if step is not None:
                alternatives.append(sa.and_(*(equal(k, v) for k, v in zip(keys[:i], values[:i], strict=True)), step))
        conditions = [sa.or_(*alternatives) if alternatives else sa.false()]
        first, first_value = keys[0], values[0]
        if not self._nullable(first) and first_value is not None:
            # A plain range on the leading key lets the database walk its index.
            column = self.table.c[first.field.name]
            conditions.append(column <= first_value if first.descending else column >= first_value)
        return conditions

    # -- writing ------------------------------------------------------------------------

    def _standard_values(self, now) -> dict[str, Any]:
        return {"version": 1, "created_at": now, "updated_at": now,
                "created_by": self.principal.user_id, "updated_by": self.principal.user_id}

    def _insert_children(self, conn: sa.Connection, parent_id: int, children: Mapping[str, list[dict]]) -> None:
        for field_name, rows in children.items():
            f = self.entity.field(field_name)
            table = self.context.live.tables[f.target]
            payload = [{**{k: v for k, v in row.items() if k != "id"}, "parent_id": parent_id, "position": i}
                       for i, row in enumerate(rows)]
            if payload:
                conn.execute(table.insert(), payload)

    def _validate_links(self, conn: sa.Connection, loaded: Sequence[tuple[dict, dict]], *,
                        indexed: bool = False) -> None:
        """Check every link of every (values, children) pair; for a batch (``indexed``)
        errors start with the row's index, as ``[3].customer``."""
        prefixes = [f"[{i}]." if indexed else "" for i in range(len(loaded))]
        errors = self._check_links(conn, [values for values, _ in loaded], self.entity, prefixes)
        for f in self.entity.table_fields:
            child = self.model.entity(f.target)
            rows, where = [], []
            for prefix, (_values, children) in zip(prefixes, loaded, strict=True):
                for j, row in enumerate(children.get(f.name, ())):
                    rows.append(row)
                    where.append(f"{prefix}{f.name}[{j}].")
            errors += self._check_links(conn, rows, child, where)
        if errors:
            raise ValidationError(f"{len(errors)} invalid value(s)", errors=errors)

    def create(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create one record (with its child rows); returns it as stored."""
        values, children = self._load(data, "create")
        try:
            with write_transaction(self.context.engine) as conn:
                self.hooks.before_record_create(entity=self.entity, values=values, principal=self.principal,
                                                connection=conn)
                self._validate_links(conn, [(values, children)])
                now = utcnow()
                row = {**values, **self._standard_values(now)}
                row.setdefault("owner", self.principal.user_id)
                record_id = conn.execute(self.table.insert().values(row).returning(self.table.c.id)).scalar_one()
                self._insert_children(conn, record_id, children)
                record = self._serialize(conn, [self._fetch_row(conn, record_id)])[0]
                emit(conn, topic="record.created", actor=self.principal.name, entity=self.entity.name,
                     record_id=record_id, payload={"record": record})
                self.hooks.after_record_create(entity=self.entity, record=record, principal=self.principal,
                                               connection=conn)
        except sa.exc.IntegrityError as exc:
            raise self._integrity(exc) from None
        self.hooks.after_record_commit(entity=self.entity, action="created", record=record, principal=self.principal)
        return record

    def bulk_create(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create many records in one transaction: all of them, or none when any is invalid
        (every invalid row is reported, as ``[i].field``)."""
        loaded, errors = [], []
        for i, data in enumerate(rows):
            try:
                loaded.append(self._load(data, "create"))
            except ValidationError as exc:
                errors.extend({**e, "field": f"[{i}].{e['field']}".rstrip(".")} for e in exc.errors)
        if errors:
            raise ValidationError(f"{len(errors)} invalid value(s) in {len(rows)} rows", errors=errors)
        if not loaded:
            return []
        try:
            with write_transaction(self.context.engine) as conn:
                for values, _children in loaded:
                    self.hooks.before_record_create(entity=self.entity, values=values, principal=self.principal,
                                                    connection=conn)
                self._validate_links(conn, loaded, indexed=True)
                now = utcnow()
                payload = []
                for values, _children in loaded:
                    row = {**values, **self._standard_values(now)}
                    row.setdefault("owner", self.principal.user_id)
                    payload.append(row)
                columns = set().union(*payload)
                payload = [{c: row.get(c) for c in columns} for row in payload]
                ids = list(conn.execute(self.table.insert().returning(self.table.c.id, sort_by_parameter_order=True),
                                        payload).scalars())
                for record_id, (_values, children) in zip(ids, loaded, strict=True):
                    self._insert_children(conn, record_id, children)
                records = self._serialize(conn, conn.execute(
                    sa.select(self.table).where(self.table.c.id.in_(ids)).order_by(self.table.c.id)).mappings().all())
                for record in records:
                    emit(conn, topic="record.created", actor=self.principal.name, entity=self.entity.name,
                         record_id=record["id"], payload={"record": record})
                    self.hooks.after_record_create(entity=self.entity, record=record, principal=self.principal,
                                                   connection=conn)
        except sa.exc.IntegrityError as exc:
            raise self._integrity(exc) from None
        for record in records:
            self.hooks.after_record_commit(entity=self.entity, action="created", record=record,
                                           principal=self.principal)
        return ids

    def update(self, record_id: int, data: Mapping[str, Any], *, expected_version: int | None = None,
               mode: str = "partial") -> dict[str, Any]:
        """Change a record. With ``expected_version`` (from If-Match or the body's
        ``version``) a change made by someone else in the meantime is refused with 412."""
        if expected_version is None and isinstance(data, Mapping) and data.get("version") is not None:
            try:
                expected_version = int(data["version"])
            except (TypeError, ValueError):
                raise ValidationError("version must be a whole number",
                                      errors=[{"field": "version", "message": "expected a whole number"}]) from None
        values, children = self._load(data, mode)
        try:
            with write_transaction(self.context.engine) as conn:
                row = self._fetch_row(conn, record_id, lock=True)
                if expected_version is not None and row["version"] != expected_version:
                    raise PreconditionFailed(
                        f"this {self.entity.name} was changed by someone else (now version {row['version']}, "
                        f"you had {expected_version}); reload it and apply your change again")
                before = self._serialize(conn, [row])[0]
                self.hooks.before_record_update(entity=self.entity, record=before, changes=values,
                                                principal=self.principal, connection=conn)
                self._validate_links(conn, [(values, children)])
                values = {k: v for k, v in values.items() if row[k] != v}
                if not values and not children:
                    return before
                stmt = (self.table.update()
                        .where(self.table.c.id == record_id, self.table.c.version == row["version"])
                        .values(**values, version=row["version"] + 1, updated_at=utcnow(),
                                updated_by=self.principal.user_id))
                if conn.execute(stmt).rowcount != 1:
                    raise PreconditionFailed(f"this {self.entity.name} was changed by someone else; reload it")
                self._replace_children(conn, record_id, children)
                after = self._serialize(conn, [self._fetch_row(conn, record_id)])[0]
                changes = {name: [before[name], after[name]] for name in after
                           if before[name] != after[name] and name not in ("version", "updated_at")}
                if not changes:
                    raise _NoChange(before)
                emit(conn, topic="record.updated", actor=self.principal.name, entity=self.entity.name,
                     record_id=record_id, payload={"record": after, "changes": changes})
                self.hooks.after_record_update(entity=self.entity, record=after, changes=changes,
                                               principal=self.principal, connection=conn)
        except _NoChange as unchanged:
            return unchanged.record
        except sa.exc.IntegrityError as exc:
            raise self._integrity(exc) from None
        self.hooks.after_record_commit(entity=self.entity, action="updated", record=after, principal=self.principal)
        return after

    def _replace_children(self, conn: sa.Connection, parent_id: int, children: Mapping[str, list[dict]]) -> None:
        """The given rows become the table's rows: rows with an id are updated, rows without
        one added, rows left out removed."""
        for field_name, rows in children.items():
            table = self.context.live.tables[self.entity.field(field_name).target]
            existing = set(conn.execute(sa.select(table.c.id).where(table.c.parent_id == parent_id)).scalars())
            errors = [{"field": f"{field_name}[{i}].id", "message": f"no row with id {row['id']} in this record"}
                      for i, row in enumerate(rows) if row.get("id") is not None and row["id"] not in existing]
            if errors:
                raise ValidationError("child rows do not belong to this record", errors=errors)
            kept = {row["id"] for row in rows if row.get("id") is not None}
            if existing - kept:
                conn.execute(table.delete().where(table.c.id.in_(existing - kept)))
            for position, row in enumerate(rows):
                values = {k: v for k, v in row.items() if k != "id"}
                if row.get("id") is not None:
                    conn.execute(table.update().where(table.c.id == row["id"]).values(**values, position=position))
                else:
                    conn.execute(table.insert().values(**values, parent_id=parent_id, position=position))

    def delete(self, record_id: int, *, expected_version: int | None = None) -> dict[str, Any]:
        """Delete a record and its child rows; returns its last values. Refused (409) while
        other records link to it."""
        try:
            with write_transaction(self.context.engine) as conn:
                row = self._fetch_row(conn, record_id, lock=True)
                if expected_version is not None and row["version"] != expected_version:
                    raise PreconditionFailed(
                        f"this {self.entity.name} was changed by someone else (now version {row['version']}); "
                        "reload it before deleting")
                record = self._serialize(conn, [row])[0]
                self.hooks.before_record_delete(entity=self.entity, record=record, principal=self.principal,
                                                connection=conn)
                self._refuse_if_linked(conn, record_id)
                for f in self.entity.table_fields:
                    child = self.context.live.tables[f.target]
                    conn.execute(child.delete().where(child.c.parent_id == record_id))
                conn.execute(self.table.delete().where(self.table.c.id == record_id))
                emit(conn, topic="record.deleted", actor=self.principal.name, entity=self.entity.name,
                     record_id=record_id, payload={"record": record})
                self.hooks.after_record_delete(entity=self.entity, record=record, principal=self.principal,
                                               connection=conn)
        except sa.exc.IntegrityError as exc:
            raise Conflict(f"this {self.entity.name} is still linked from other records") from exc
        self.hooks.after_record_commit(entity=self.entity, action="deleted", record=record, principal=self.principal)
        return record

    def _refuse_if_linked(self, conn: sa.Connection, record_id: int) -> None:
        for entity, f in self.model.links_to(self.entity.name):
            table = self.context.live.tables[entity.name]
            count = conn.execute(sa.select(sa.func.count()).select_from(table)
                                 .where(table.c[f.name] == record_id)).scalar_one()
            if count:
                where = entity.name if not entity.child else f"{self.model.parents[entity.name][0].name} lines"
                raise Conflict(f"{count} {where} record(s) still link to this {self.entity.name} "
                               f"through '{f.name}'; change or delete them first")


class _NoChange(Exception):
    """An update that turned out to change nothing: roll back, return the record as it was."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
