"""Turning a metadata diff into database changes, with alembic's operations API.

Nothing here destroys data: a removed field's column and a removed entity's table are
renamed aside and recorded in ``loom_set_aside`` (restored when the field or entity comes
back, e.g. on rollback); a type change keeps the old column aside too and is refused
when any existing value would not convert. The caller runs all of it in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from loom.db import utcnow
from loom.metadata.compiler import compile_entity, compile_field
from loom.metadata.conversion import canonical, convert, round_trip, same
from loom.metadata.diff import EntityDiff, FieldChange, ModelDiff, diff_entity
from loom.metadata.model import AppModel, Entity, Field
from loom.metadata.types import FieldType
from loom.schema.ids import ensure_ids_never_reused
from loom.schema.models import SetAside
from loom.schema.renames import (
    follow_entity_rename,
    follow_field_rename,
    move_comments,
    rename_table,
)
from loom.schema.tables import build_tables, column_for, desired_indexes, identifier, target_table

set_aside_table = SetAside.__table__
#: how many failing values a refusal quotes
SAMPLES = 3


def raw_entity(model: AppModel, name: str) -> dict[str, Any]:
    return next(d for d in model.documents if d.get("kind") == "entity" and d.get("name") == name)


def raw_field(model: AppModel, entity: str, name: str) -> dict[str, Any]:
    return next(f for f in raw_entity(model, entity)["fields"] if f["name"] == name)


def aside_name(version: int, name: str) -> str:
    return identifier(f"_x{version}", name)


@dataclass
class _Restore:
    row_id: int
    stored_name: str
    definition: dict[str, Any]


@dataclass
class Migration:
    """The database side of publishing ``new`` over ``old`` as version ``version``."""

    connection: sa.Connection
    old: AppModel
    new: AppModel
    diff: ModelDiff
    version: int
    #: extra lines for the change summary (restorations)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ops = Operations(MigrationContext.configure(self.connection))
        self.sqlite = self.connection.dialect.name == "sqlite"
        self.new_tables = build_tables(self.new)
        self._restored_tables: dict[str, _Restore] = {}
        self._restored_fields: dict[tuple[str, str], _Restore] = {}
        #: (entity, field) -> the set-aside copy a type change back restores values from
        self._retype_copies: dict[tuple[str, str], _Restore] = {}
        self._find_restorations()

    # -- what can be restored -------------------------------------------------------

    def _aside_rows(self, entity: str, field_name: str | None) -> _Restore | None:
        t = set_aside_table
        query = (sa.select(t.c.id, t.c.stored_name, t.c.definition)
                 .where(t.c.entity == entity, t.c.reason == "removed",
                        t.c.restored_at.is_(None), t.c.purged_at.is_(None))
                 .order_by(t.c.id.desc()).limit(1))
        query = query.where(t.c.field.is_(None) if field_name is None else t.c.field == field_name)
        row = self.connection.execute(query).first()
        return _Restore(row.id, row.stored_name, row.definition) if row else None

    def _find_restorations(self) -> None:
        for change in self.diff.entities:
            if change.action == "add":
                found = self._aside_rows(change.new.name, None)
                if found:
                    self._restored_tables[change.new.name] = found
            if change.action in ("add", "keep", "rename"):
                for fc in self._field_changes(change):
                    if fc.action == "add":
                        found = self._aside_rows(change.new.name, fc.new.name)
                        if found:
                            self._restored_fields[(change.new.name, fc.new.name)] = found
                    elif fc.action == "retype":
                        found = self._retype_copy(change.new.name, fc.new)
                        if found:
                            self._retype_copies[(change.new.name, fc.new.name)] = found

    def _retype_copy(self, entity: str, new: Field) -> _Restore | None:
        """The column a type change set aside, when this change goes back to its type: the
        values nobody changed since come back from it exactly as they were."""
        t = set_aside_table
        row = self.connection.execute(
            sa.select(t.c.id, t.c.stored_name, t.c.definition)
            .where(t.c.entity == entity, t.c.field == new.name, t.c.reason == "retype",
                   t.c.restored_at.is_(None), t.c.purged_at.is_(None))
            .order_by(t.c.id.desc()).limit(1)).first()
        if row is None or compile_field(row.definition).storage_signature() != new.storage_signature():
            return None
        return _Restore(row.id, row.stored_name, row.definition)

    def _field_changes(self, change: EntityDiff) -> tuple[FieldChange, ...]:
        """Changes to fields that have columns, including those against a restored table's
        old definition. A table field has child rows instead of a column: a field that
        turns into or out of one is an addition or a removal of a column."""
        if change.action == "add":
            restore = self._restored_tables.get(change.new.name)
            if restore is None:
                return ()
            changes = diff_entity(compile_entity(restore.definition), change.new).fields
        else:
            changes = change.fields
        result = []
        for fc in changes:
            old_stored = fc.old is not None and fc.old.stored
            new_stored = fc.new is not None and fc.new.stored
            if fc.action in ("rename", "retype") and old_stored != new_stored:
                if old_stored:
                    result.append(FieldChange("remove", fc.old, None))
                if new_stored:
                    result.append(FieldChange("add", None, fc.new))
            elif old_stored or new_stored:
                result.append(fc)
        return tuple(result)

    def _before(self, change: EntityDiff) -> Entity:
        if change.action == "add":
            return compile_entity(self._restored_tables[change.new.name].definition)
        return change.old  # type: ignore[return-value]

    def restorations(self) -> list[str]:
        """What the change brings back from set-aside columns and tables."""
        found = [f"table of {name} with its data" for name in self._restored_tables]
        found += [f"{entity}.{name} with its data" for entity, name in self._restored_fields]
        return found

    # -- checks against the data ----------------------------------------------------

    def problems(self) -> list[str]:
        """Why the change cannot be applied to the data as it stands (empty if it can)."""
        found: list[str] = []
        for change in self.diff.entities:
            if change.action == "remove" or (change.action == "add" and change.new.name not in self._restored_tables):
                continue
            table = (self._restored_tables[change.new.name].stored_name if change.action == "add"
                     else change.old.table_name)
            for fc in self._field_changes(change):
                source = self._source_column(change.new.name, fc)
                old_field = self._old_field(change.new.name, fc)
                if source is None or old_field is None:
                    continue
                if old_field.storage_signature() != fc.new.storage_signature():
                    copy = self._retype_copies.get((change.new.name, fc.new.name)) if fc.action == "retype" else None
                    found.extend(self._conversion_problems(change.new.name, table, source, old_field, fc.new, copy))
        for change in self.diff.entities:
            if change.action == "remove":
                continue
            found.extend(self._uniqueness_problems(change))
        return found

    def _source_column(self, entity: str, fc: FieldChange) -> str | None:
        """The existing column a field's values come from, or None for a new field."""
        if fc.action == "add":
            restore = self._restored_fields.get((entity, fc.new.name))
            return restore.stored_name if restore else None
        if fc.action in ("retype", "rename"):
            return fc.old.name
        return None

    def _old_field(self, entity: str, fc: FieldChange) -> Field | None:
        if fc.action == "add":
            restore = self._restored_fields.get((entity, fc.new.name))
            return compile_field(restore.definition) if restore else None
        return fc.old

    def _conversion_problems(self, entity: str, table: str, column: str, old: Field, new: Field,
                             copy: _Restore | None = None) -> list[str]:
        """Rows whose value would not come back exactly if the change were undone (values
        that come back from ``copy`` unchanged need no conversion)."""
        failures = []
        total = 0
        for ident, value, kept in self._values(table, column, old, copy):
            total += 1
            if kept is not None:
                continue
            try:
                round_trip(value, old, new)
            except ValueError as exc:
                failures.append((ident, value, str(exc)))
        problems = []
        if failures:
            samples = "; ".join(f"id {i}: {FieldType.to_json(None, v)!r} ({why})"  # type: ignore[arg-type]
                                for i, v, why in failures[:SAMPLES])
            problems.append(f"{entity}.{new.name}: {len(failures)} of {total} rows hold values that "
                            f"cannot become {new.type} without changing, e.g. {samples}. "
                            "Fix or clear them first.")
        elif new.type == "link" and total:
            target = sa.table(self._table_now(new.target), sa.column("id"))
            source = sa.table(table, sa.column(column))
            missing = self.connection.execute(
                sa.select(sa.func.count()).select_from(source)
                .where(source.c[column].is_not(None), source.c[column].not_in(sa.select(target.c.id)))).scalar_one()
            if missing:
                problems.append(f"{entity}.{new.name}: {missing} rows link to ids that are not {new.target} records")
        return problems

    def _table_now(self, entity: str) -> str:
        """The table that holds ``entity``'s records before this change runs (a renamed or
        restored entity's table still has its old name)."""
        for change in self.diff.entities:
            if change.new is not None and change.new.name == entity:
                if change.action == "rename":
                    return change.old.table_name
                if change.action == "add" and entity in self._restored_tables:
                    return self._restored_tables[entity].stored_name
        return target_table(self.new, entity)

    def _uniqueness_problems(self, change: EntityDiff) -> list[str]:
        entity = change.new
        before = self._before(change) if change.action != "add" or entity.name in self._restored_tables else None
        if before is None:
            return []
        table = (self._restored_tables[entity.name].stored_name if change.action == "add" else before.table_name)
        old_unique = {cols for cols, unique in desired_indexes(before).values() if unique}
        problems = []
        renames = {fc.new.name: fc.old.name for fc in self._field_changes(change) if fc.action == "rename"}
        for columns, unique in desired_indexes(entity).values():
            if not unique or columns in old_unique:
                continue
            names = []
            for column, _ in columns:
                fc_source = renames.get(column, column)
                restore = self._restored_fields.get((entity.name, column))
                if restore:
                    fc_source = restore.stored_name
                elif column not in before.all_fields and fc_source == column:
                    names = []
                    break
                names.append(fc_source)
            if not names:
                continue
            t = sa.table(table, *(sa.column(n) for n in names))
            dupes = (sa.select(*(t.c[n] for n in names)).where(*(t.c[n].is_not(None) for n in names))
                     .group_by(*(t.c[n] for n in names)).having(sa.func.count() > 1).subquery())
            count = self.connection.execute(sa.select(sa.func.count()).select_from(dupes)).scalar_one()
            if count:
                label = ", ".join(c for c, _ in columns)
                problems.append(f"{entity.name}.{label}: cannot be made unique: {count} values occur more than once")
        return problems

    # -- running it -----------------------------------------------------------------

    def run(self) -> None:
        """Apply every change; the caller's transaction makes it all-or-nothing."""
        changes = self.diff.entities
        for change in changes:
            if change.action == "remove":
                self._set_aside_table(change.old)
        for change in changes:
            if change.action == "rename":
                self._drop_indexes(change.old.table_name, lambda cols: True)
                rename_table(self.connection, self.ops, change.old.table_name, change.new.table_name)
                follow_entity_rename(self.connection, change.old.name, change.new.name)
        created = []
        for change in changes:
            if change.action == "add":
                restore = self._restored_tables.get(change.new.name)
                if restore:
                    rename_table(self.connection, self.ops, restore.stored_name, change.new.table_name)
                    move_comments(self.connection, restore.stored_name, change.new.name)
                    self._mark_restored(restore)
                    self.notes.append(f"  restored table of {change.new.name} with its data")
                else:
                    created.append(change.new.table_name)
        if created:
            metadata = next(iter(self.new_tables.values())).metadata
            for table in metadata.sorted_tables:
                if table.name in created:
                    table.create(self.connection)
        for change in changes:
            restored = change.action == "add" and change.new.name in self._restored_tables
            if restored or (change.action in ("keep", "rename") and change.needs_ddl):
                self._migrate_fields(change)
        rebuilt = ensure_ids_never_reused(self.connection, {e.name: e.table_name for e in self.new.entities.values()})
        self.notes.extend(f"  {name}: table rebuilt so that no record id is ever used twice" for name in rebuilt)

    def _set_aside_table(self, entity: Entity) -> None:
        stored = aside_name(self.version, entity.table_name)
        self._drop_indexes(entity.table_name, lambda cols: True)
        rename_table(self.connection, self.ops, entity.table_name, stored)
        # its comments wait with it, under the stored name, for a restore
        move_comments(self.connection, entity.name, stored)
        self._record_aside(entity.name, None, stored, raw_entity(self.old, entity.name))

    def _record_aside(self, entity: str, field_name: str | None, stored: str, definition: dict, reason: str = "removed") -> None:
        self.connection.execute(set_aside_table.insert().values(
            entity=entity, field=field_name, stored_name=stored, definition=definition,
            reason=reason, version_number=self.version, created_at=utcnow()))

    def _mark_restored(self, restore: _Restore) -> None:
        self.connection.execute(set_aside_table.update().where(set_aside_table.c.id == restore.row_id)
                                .values(restored_at=utcnow()))

    def _existing_indexes(self, table: str) -> dict[str, list[str]]:
        inspector = sa.inspect(self.connection)
        return {ix["name"]: [c for c in ix["column_names"] if c] for ix in inspector.get_indexes(table)}

    def _drop_indexes(self, table: str, affected) -> None:
        for name, columns in self._existing_indexes(table).items():
            if name and affected(set(columns)):
                self.ops.drop_index(name, table_name=table)

    def _add_column(self, table: str, field: Field) -> None:
        column = column_for(field, self.new)
        if not (self.sqlite and column.foreign_keys):
            self.ops.add_column(table, column)
            return
        # SQLite cannot add a constraint to a table, but accepts REFERENCES on a new column.
        fk = next(iter(column.foreign_keys))
        plain = sa.Column(column.name, column.type)
        sa.Table(table, sa.MetaData(), plain)
        ddl = sa.schema.CreateColumn(plain).compile(dialect=self.connection.dialect)
        target, target_column = fk.target_fullname.split(".")
        self.connection.exec_driver_sql(
            f'ALTER TABLE "{table}" ADD COLUMN {ddl} REFERENCES "{target}" ("{target_column}") '
            f"ON DELETE {fk.ondelete}")

    def _rename_column(self, table: str, old: str, new: str) -> None:
        self.ops.alter_column(table, old, new_column_name=new)

    def _migrate_fields(self, change: EntityDiff) -> None:
        entity = change.new
        table = entity.table_name
        field_changes = self._field_changes(change)
        touched = {fc.old.name for fc in field_changes if fc.old is not None and fc.action != "alter"}
        touched |= {fc.new.name for fc in field_changes if fc.new is not None and fc.action != "alter"}
        self._drop_indexes(table, lambda cols: bool(cols & touched) or change.indexes_changed)
        conversions: list[tuple[str, Field, Field, _Restore | None]] = []
        # Columns leave before others arrive, so a new field may take a removed one's name.
        for fc in field_changes:
            if fc.action == "remove":
                stored = aside_name(self.version, fc.old.name)
                self._rename_column(table, fc.old.name, stored)
                self._record_aside(entity.name, fc.old.name, stored, raw_field_of(self, change, fc.old.name))
        for fc in field_changes:
            if fc.action == "rename":
                self._rename_column(table, fc.old.name, fc.new.name)
                follow_field_rename(self.connection, entity.name, fc.old.name, fc.new.name)
        for fc in field_changes:
            if fc.action == "retype":
                stored = aside_name(self.version, fc.new.name)
                self._rename_column(table, fc.new.name, stored)
                self._record_aside(entity.name, fc.new.name, stored,
                                   raw_field_of(self, change, fc.old.name), reason="retype")
                self._add_column(table, fc.new)
                copy = self._retype_copies.get((entity.name, fc.new.name))
                if copy is not None:
                    self._mark_restored(copy)
                conversions.append((stored, fc.old, fc.new, copy))
        for fc in field_changes:
            if fc.action != "add":
                continue
            restore = self._restored_fields.get((entity.name, fc.new.name))
            if restore is None:
                self._add_column(table, fc.new)
                continue
            self._mark_restored(restore)
            previous = compile_field(restore.definition)
            self.notes.append(f"  restored {entity.name}.{fc.new.name} with its data")
            if previous.storage_signature() == fc.new.storage_signature():
                self._rename_column(table, restore.stored_name, fc.new.name)
            else:
                self._add_column(table, fc.new)
                conversions.append((restore.stored_name, previous, fc.new, None))
        for source, old, new, copy in conversions:
            self._convert(table, source, old, new, copy)
        self._create_indexes(entity)

    def _values(self, table: str, column: str, old: Field, copy: _Restore | None):
        """(id, value, value kept in ``copy``) for every row holding a value in ``column``;
        the kept value is None unless the row still holds what the copy converted to."""
        source = sa.table(table, sa.column("id"), sa.column(column, old.kind.sql_type(old)))
        kept_field = compile_field(copy.definition) if copy else None
        selected = [source.c.id, source.c[column]]
        if copy is not None:
            selected.append(sa.column(copy.stored_name, kept_field.kind.sql_type(kept_field)))
        query = sa.select(*selected).select_from(source).where(source.c[column].is_not(None)).order_by(source.c.id)
        for row in self.connection.execute(query):
            kept = row[2] if copy is not None else None
            if kept is not None and not _unchanged(kept, kept_field, row[1], old):
                kept = None
            yield row[0], row[1], kept

    def _convert(self, table: str, source: str, old: Field, new: Field, copy: _Restore | None = None) -> None:
        rows = list(self._values(table, source, old, copy))
        if not rows:
            return
        dst = sa.table(table, sa.column("id"), sa.column(new.name, new.kind.sql_type(new)))
        statement = (dst.update().where(dst.c.id == sa.bindparam("_id"))
                     .values({new.name: sa.bindparam("_v", type_=new.kind.sql_type(new))}))
        values = [{"_id": ident, "_v": kept if kept is not None else convert(value, old, new)}
                  for ident, value, kept in rows]
        for start in range(0, len(values), 5000):
            self.connection.execute(statement, values[start:start + 5000])

    def _create_indexes(self, entity: Entity) -> None:
        existing = self._existing_indexes(entity.table_name)
        table = self.new_tables[entity.name]
        wanted = {ix.name: ix for ix in table.indexes}
        for name in existing:
            if name not in wanted and not name.startswith("sqlite_"):
                self.ops.drop_index(name, table_name=entity.table_name)
        for name, index in wanted.items():
            if name not in existing:
                index.create(self.connection)


def _unchanged(kept: Any, kept_field: Field, value: Any, field: Field) -> bool:
    """Whether ``value`` is still what ``kept`` became when its type changed."""
    try:
        return same(convert(kept, kept_field, field), canonical(value, field))
    except ValueError:
        return False


def raw_field_of(migration: Migration, change: EntityDiff, name: str) -> dict[str, Any]:
    """The document text of field ``name`` as it was before this change."""
    if change.action == "add":
        definition = migration._restored_tables[change.new.name].definition
        return next(f for f in definition["fields"] if f["name"] == name)
    return raw_field(migration.old, change.old.name, name)
