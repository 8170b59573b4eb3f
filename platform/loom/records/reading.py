"""Reading records: get and list, with the caller's row scope in the SQL and only the
fields the caller may read in the reply. Part of the record service."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from loom.errors import BadRequest, NotFound, error_entry
from loom.expressions.sql import table_resolver
from loom.metadata.model import USER_ENTITY, Entity, Field
from loom.permissions import EntityAccess
from loom.records.auditing import RecordAudit
from loom.records.gate import Gate
from loom.records.memory import Memory
from loom.records.query import Condition, ListQuery, SortKey, parse_list_query
from loom.sql import condition_sql

#: standard columns that are never NULL, so keyset pagination needs no NULL handling
NOT_NULL = {"id", "version", "created_at", "updated_at"}
EXPORT_PAGE = 500


@dataclass
class Page:
    data: list[dict[str, Any]]
    next_cursor: str | None
    count: int | None = None
    #: more records match than the query's ``count_limit``, which ``count`` then holds
    count_exceeds: bool = False


#: types whose stored values are already what JSON shows
PLAIN_JSON = frozenset({"string", "text", "email", "phone", "url", "select", "integer", "boolean",
                        "multiselect", "json", "attachment"})


def _json(field: Field, value: Any) -> Any:
    return None if value is None else field.kind.to_json(value)


class RecordReader(Gate, RecordAudit):
    """The reading half of ``RecordService`` (which sets the attributes used here)."""

    entity: Entity
    table: sa.Table
    access: EntityAccess
    #: what the write under way has read (None outside a write)
    _memory: Memory | None = None

    def _target_table(self, target: str) -> sa.Table:
        if target == USER_ENTITY:
            return self.table.metadata.tables["loom_users"]
        return self.context.live.tables[target]

    def _scope(self, access: EntityAccess, table: sa.Table, action: str) -> list[sa.ColumnElement[bool]]:
        clause = access.scope(table, action, self.table.metadata.tables["loom_users"], self.dialect)
        return [] if clause is None else [clause]

    def _columns(self, names: Iterable[str] | None) -> list[sa.Column]:
        if names is None:
            return list(self.table.c)
        wanted = {"id", "version", *names}
        return [c for c in self.table.c if c.name in wanted]

    def _serialize(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]],
                   names: Iterable[str] | None = None, *, full: bool = False) -> list[dict[str, Any]]:
        """Rows as JSON records: only fields the caller may read, unless ``full`` (for
        events and hooks, which see the whole record)."""
        entity = self.entity
        # with the id always comes the version, which a later If-Match needs
        wanted = set(entity.all_fields) if names is None else {"id", "version", *names}
        if not full:
            wanted &= self.access.readable()
        fields = [f for f in entity.all_fields.values() if f.name in wanted]
        titles = self._link_titles(conn, rows, fields, full)
        children = self._children(conn, rows, [f for f in fields if f.type == "table"], full)
        plan = [(f.name, f.type, None if f.type in PLAIN_JSON else f.kind.to_json) for f in fields]
        result = []
        for row in rows:
            record: dict[str, Any] = {}
            for name, kind, convert in plan:
                value = row[name] if kind != "table" else None
                if kind == "table":
                    record[name] = children[name].get(row["id"], [])
                elif value is None:
                    record[name] = None
                elif kind == "link":
                    record[name] = {"id": value, "title": titles[name].get(value)}
                else:
                    record[name] = value if convert is None else convert(value)
            result.append(record)
        return result

    def _reply_is_full(self) -> bool:
        """Whether the caller sees a record exactly as events do: every field, and the
        titles of every record it links to. Then a reply needs no serialization of its own."""
        if self.access.unrestricted:
            return True
        entities = [self.entity, *(self.model.entity(f.target) for f in self.entity.table_fields)]
        for entity in entities:
            access = self.access_for(entity)
            if access.readable() != set(entity.all_fields):
                return False
            for f in entity.fields:
                if f.type != "link" or f.target == USER_ENTITY:
                    continue
                target = self.access_for(self.model.entity(f.target))
                if (not target.allowed("read") or self._scope(target, self._target_table(f.target), "read")
                        or self.model.entity(f.target).title_field not in target.readable()):
                    return False
        return True

    def _link_titles(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]], fields: list[Field],
                     full: bool) -> dict[str, dict[int, Any]]:
        """Titles of linked records, for links the caller may follow: a record outside
        the caller's reach shows its id only. Inside a write, titles it has already read
        are not read again (``loom.records.memory``)."""
        by_target: dict[str, set[int]] = defaultdict(set)
        for f in fields:
            if f.type == "link":
                by_target[f.target].update(row[f.name] for row in rows if row[f.name] is not None)
        found: dict[str, dict[int, Any]] = {}
        for target, ids in by_target.items():
            found[target] = {}
            if not ids:
                continue
            query, title_field = self._title_query(target)
            where: list[sa.ColumnElement[bool]] = []
            if title_field is not None and not full:
                access = self.access_for(self.model.entity(target))
                if not access.allowed("read") or title_field.name not in access.readable():
                    continue
                where = self._scope(access, self._target_table(target), "read")
            mode = "full" if full or title_field is None else "scoped"
            if self._memory is not None:
                found[target], ids = self._memory.titles(conn, target, mode, self._with_writer(target, ids))
            if ids:
                pairs = conn.execute(query.where(*where) if where else query, {"ids": sorted(ids)}).all()
                titles = {i: (t if title_field is None else _json(title_field, t)) for i, t in pairs}
                found[target].update(titles)
                if self._memory is not None:
                    self._memory.remember_titles(conn, target, mode, ids, titles)
        return {f.name: found.get(f.target, {}) for f in fields if f.type == "link"}

    def _with_writer(self, target: str, ids: set[int]) -> set[int]:
        """Inside a write, users looked up come with the writer: the record as written
        names them (its updater, for a new record its creator and owner), and the write
        then finds their name remembered instead of reading it in a statement of its own."""
        writer = self.principal.user_id
        if target != USER_ENTITY or writer is None or writer in ids:
            return ids
        return ids | {writer}

    def _title_query(self, target: str) -> tuple[sa.Select, Field | None]:
        """``SELECT id, title FROM <target> WHERE id IN (:ids)`` and the title field (None
        for users), built once per metadata version: a statement built anew costs more
        than the lookup it runs, and every write and most reads look titles up."""
        def build() -> tuple[sa.Select, Field | None]:
            table = self._target_table(target)
            if target == USER_ENTITY:
                title_field, title = None, sa.func.coalesce(sa.func.nullif(table.c.display_name, ""), table.c.username)
            else:
                entity = self.model.entity(target)
                title_field = entity.field(entity.title_field)
                title = table.c[title_field.name]
            return sa.select(table.c.id, title).where(table.c.id.in_(sa.bindparam("ids", expanding=True))), title_field
        return self.context.live.derive(f"titles:{target}", build)

    def _child_rows(self, conn: sa.Connection, child: str, ids: list[int]) -> list[Mapping[str, Any]]:
        """The child rows of records ``ids`` in table field order: remembered, inside a
        write that has read or written them, else read."""
        if self._memory is not None:
            known = self._memory.child_rows(conn, child, ids)
            if known is not None:
                return [row for pid in ids for row in known[pid]]
        table = self.context.live.tables[child]
        query = self.context.live.derive(f"child_rows:{child}", lambda: sa.select(table).where(
            table.c.parent_id.in_(sa.bindparam("ids", expanding=True))).order_by(table.c.parent_id, table.c.position))
        rows = conn.execute(query, {"ids": ids}).mappings().all()
        if self._memory is not None:
            self._memory.remember_child_rows(conn, child, ids, rows)
        return rows

    def _children(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]], fields: list[Field],
                  full: bool) -> dict[str, dict[int, list[dict[str, Any]]]]:
        result: dict[str, dict[int, list[dict[str, Any]]]] = {}
        ids = [row["id"] for row in rows]
        for f in fields:
            child = self.model.entity(f.target)
            readable = set(child.all_fields) if full else self.access_for(child).readable()
            child_fields = [c for c in child.all_fields.values() if c.name in readable]
            grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
            if ids:
                child_rows = self._child_rows(conn, child.name, ids)
                titles = self._link_titles(conn, child_rows, child_fields, full)
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

    def _fetch_row(self, conn: sa.Connection, record_id: int, *, action: str = "read", lock: bool = False,
                   extra: Sequence[sa.ColumnElement[Any]] = ()) -> Mapping[str, Any]:
        """The row (with the ``extra`` columns), if it exists within the caller's scope for
        ``action``; else 404, exactly as if it did not exist."""
        missing = NotFound(f"there is no {self.entity.name} with id {record_id}", code="no_such_record",
                           params={"entity": self.entity.name, "id": record_id})
        if not 0 < record_id < 2**63:
            raise missing
        scope = self._scope(self.access, self.table, action)
        lock = lock and conn.dialect.name != "sqlite"
        if scope or extra:
            query = sa.select(self.table, *extra).where(self.table.c.id == record_id, *scope)
            row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        else:
            # every record within reach: the one statement, built once per metadata version
            table = self.table

            def build() -> sa.Select:
                query = sa.select(table).where(table.c.id == sa.bindparam("record_id"))
                return query.with_for_update() if lock else query
            row = conn.execute(self.context.live.derive(f"fetch:{self.entity.name}:{lock}", build),
                               {"record_id": record_id}).mappings().first()
        if row is None:
            raise missing
        return row

    def require_readable(self, record_id: int) -> None:
        """Refuse (404, or 403 without read access) unless the caller may read the record;
        reads none of its values, so it is not logged as a read."""
        self.require("read", record_id)
        with self._reading() as conn:
            self._fetch_row(conn, record_id)

    def get(self, record_id: int, fields: list[str] | None = None) -> dict[str, Any]:
        self.require("read", record_id)
        if fields is not None:
            readable = self.access.readable()
            for name in fields:
                if name not in readable:
                    raise BadRequest(f"unknown field '{name}' in fields", code="unknown_field", params={"name": name},
                                     errors=[error_entry("fields", "unknown_field", f"unknown field '{name}' in fields",
                                                         name=name)])
        with self._reading() as conn:
            row = self._fetch_row(conn, record_id)
            record = self._serialize(conn, [row], fields)[0]
        self._log_read(record_id)
        return record

    def parse_query(self, args: Mapping[str, Any], action: str = "read") -> ListQuery:
        """List arguments checked against what the caller may see; refused first when the
        caller may not ``action`` this entity at all."""
        self.require(action)
        def rows_of(table: Field) -> tuple[Entity, set[str]]:
            child = self.model.entity(table.target)
            return child, self.access_for(child).readable()

        return parse_list_query(self.entity, args, cursors=self.context.cursors,
                                default_limit=self.context.page_size, max_limit=self.context.max_page_size,
                                readable=self.access.readable(), children=rows_of)

    def list(self, query: ListQuery | Mapping[str, Any] | None = None, *, action: str = "read") -> Page:
        """A page of records in the caller's scope for ``action`` (read, or export)."""
        self.require(action)
        if not isinstance(query, ListQuery):
            query = self.parse_query(query or {})
        where = self.list_conditions(query, action)
        selected = None if query.fields is None else [*query.fields, *(k.field.name for k in query.sort)]
        stmt = sa.select(*self._columns(selected)).where(*where)
        if query.after is not None:
            stmt = stmt.where(*self._after(query.sort, query.after))
        stmt = stmt.order_by(*self._order(query.sort)).limit(query.limit + 1)
        with self._reading() as conn:
            rows = conn.execute(stmt).mappings().all()
            more = len(rows) > query.limit
            rows = rows[:query.limit]
            data = self._serialize(conn, rows, query.fields)
            count, exceeds = None, False
            if query.count:
                matches = sa.select(sa.literal(1)).select_from(self.table).where(*where)
                if query.count_limit is not None:
                    matches = matches.limit(query.count_limit + 1)
                count = conn.execute(sa.select(sa.func.count()).select_from(matches.subquery())).scalar_one()
                if query.count_limit is not None and count > query.count_limit:
                    count, exceeds = query.count_limit, True
        next_cursor = None
        if more and rows:
            last = rows[-1]
            values = [_json(k.field, last[k.field.name]) for k in query.sort]
            next_cursor = self.context.cursors.encode(self.entity, query.sort, values)
        return Page(data, next_cursor, count, exceeds)

    def export(self, query: ListQuery) -> Iterator[dict[str, Any]]:
        """Every record the list ``query`` matches, page by page (flat memory), as far as the
        caller may export and read them. The audit entry, with the query and the number of
        matching records, is written before the first record is read: an export that cannot
        be logged does not run, and no more records are sent than the entry counts."""
        self.require("export")
        query.limit = EXPORT_PAGE
        with self._reading() as conn:
            matches = sa.select(sa.literal(1)).select_from(self.table).where(*self.list_conditions(query, "export"))
            total = conn.execute(sa.select(sa.func.count()).select_from(matches.subquery())).scalar_one()
        self._log_export(query, total)
        return self._export_pages(query, total)

    def _export_pages(self, query: ListQuery, total: int) -> Iterator[dict[str, Any]]:
        sent = 0
        while sent < total:
            page = self.list(query, action="export")
            for record in page.data[:total - sent]:
                yield record
                sent += 1
            if page.next_cursor is None:
                return
            query.after = self.context.cursors.decode(self.entity, query.sort, page.next_cursor)

    def each_matching(self, expression: Any, *, now: Any = None, batch: int = 500) -> Iterator[dict[str, Any]]:
        """Every record in the caller's read scope for which ``expression`` (a checked
        ``Expression`` over this entity, as a scheduled rule's filter; None: every one) holds, in id order,
        as the caller may read it; read ``batch`` at a time, each batch in a read of its own."""
        self.require("read")
        where = self._scope(self.access, self.table, "read")
        if expression is not None:
            resolve = table_resolver(self.table, self.context.live.tables, self.entity, self.model)
            where.append(expression.to_sql(resolve, user=self.principal, now=now))
        after = 0
        while True:
            with self._reading() as conn:
                rows = conn.execute(sa.select(*self._columns(None)).where(*where, self.table.c.id > after)
                                    .order_by(self.table.c.id).limit(batch)).mappings().all()
                records = self._serialize(conn, rows, None) if rows else []
            yield from records
            if len(rows) < batch:
                return
            after = rows[-1]["id"]

    def list_conditions(self, query: ListQuery, action: str = "read") -> list[sa.ColumnElement[bool]]:
        """The WHERE clause of a list: the query's filters and search, within the caller's scope."""
        where = [self._condition(c) for c in query.conditions]
        if query.search:
            readable = self.access.readable()
            searchable = [self.table.c[f.name].icontains(query.search, autoescape=True)
                          for f in self.entity.search_fields if f.name in readable]
            where.append(sa.or_(*searchable) if searchable else sa.false())
        return where + self._scope(self.access, self.table, action)

    def _condition(self, condition: Condition) -> sa.ColumnElement[bool]:
        if condition.through is not None:
            rows = self.context.live.tables[condition.through.target]
            match = condition_sql(rows.c[condition.field.name], condition.field.type, condition.op,
                                  condition.value, self.dialect)
            return sa.exists().where(rows.c.parent_id == self.table.c.id, match)
        return condition_sql(self.table.c[condition.field.name], condition.field.type, condition.op,
                             condition.value, self.dialect)

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
