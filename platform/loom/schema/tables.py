"""SQLAlchemy ``Table`` objects for entities, built from the compiled model.

Each entity has a real table (``e_<name>``) with typed, indexed columns, so SQL stays
fast and BI tools can read the data directly.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Mapping
from types import MappingProxyType

import sqlalchemy as sa

from loom.db import NAMING_CONVENTION, BigId
from loom.identity.models import Team, User
from loom.metadata.model import USER_ENTITY, USER_TABLE, AppModel, Entity, Field

MAX_IDENTIFIER = 63


def identifier(*parts: str) -> str:
    """Join ``parts`` with underscores, shortened with a hash to fit PostgreSQL's limit."""
    name = "_".join(parts)
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:MAX_IDENTIFIER - 9]}_{digest}"


def target_table(model: AppModel, target: str) -> str:
    return USER_TABLE if target == USER_ENTITY else model.entity(target).table_name


def column_for(field: Field, model: AppModel) -> sa.Column:
    """The column that stores ``field`` (standard fields included)."""
    kind = field.kind
    args: list = []
    if field.type == "link":
        args.append(sa.ForeignKey(f"{target_table(model, field.target)}.id", ondelete="RESTRICT"))
    if field.name == "id":
        return sa.Column("id", BigId, primary_key=True, autoincrement=True)
    nullable = field.name not in ("version", "created_at", "updated_at")
    return sa.Column(field.name, kind.sql_type(field), *args, nullable=nullable)


def desired_indexes(entity: Entity) -> dict[str, tuple[tuple[tuple[str, bool], ...], bool]]:
    """index name -> ((column, descending), ...), unique) for every index the entity wants."""
    table = entity.table_name
    result: dict[str, tuple[tuple[tuple[str, bool], ...], bool]] = {}
    for f in entity.stored_fields:
        if f.unique:
            result[identifier("uq", table, f.name)] = (((f.name, False),), True)
        elif f.index or f.type == "link":
            result[identifier("ix", table, f.name)] = (((f.name, False),), False)
    for index in entity.indexes:
        columns = index.columns
        prefix = "uq" if index.unique else "ix"
        result[identifier(prefix, table, *(c for c, _ in columns))] = (columns, index.unique)
    if not entity.child:
        result[identifier("ix", table, "owner")] = ((("owner", False),), False)
        result[identifier("ix", table, "created_at")] = ((("created_at", False),), False)
    else:
        result[identifier("ix", table, "parent_id")] = ((("parent_id", False),), False)
    return result


def index_objects(entity: Entity, table: sa.Table) -> list[sa.Index]:
    indexes = []
    for name, (columns, unique) in desired_indexes(entity).items():
        exprs = [table.c[c].desc() if desc else table.c[c] for c, desc in columns]
        indexes.append(sa.Index(name, *exprs, unique=unique))
    return indexes


def entity_table(entity: Entity, model: AppModel, metadata: sa.MetaData) -> sa.Table:
    columns = [column_for(f, model) for f in entity.standard_fields]
    if entity.child:
        parent, _ = model.parents[entity.name]
        columns.append(sa.Column("parent_id", sa.BigInteger,
                                 sa.ForeignKey(f"{parent.table_name}.id", ondelete="CASCADE"), nullable=False))
        columns.append(sa.Column("position", sa.Integer, nullable=False))
    columns.extend(column_for(f, model) for f in entity.stored_fields)
    # AUTOINCREMENT: SQLite would otherwise hand a deleted record's id to the next record
    table = sa.Table(entity.table_name, metadata, *columns, sqlite_autoincrement=True)
    index_objects(entity, table)  # an Index built on a table's columns joins that table
    return table


def build_tables(model: AppModel) -> Mapping[str, sa.Table]:
    """entity name -> Table, all in one ``MetaData`` with the users table they link to."""
    # Building thousands of SQLAlchemy objects sets off the cycle collector again and
    # again while nothing is garbage yet; it runs once, afterwards.
    collecting = gc.isenabled()
    gc.disable()
    try:
        metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
        Team.__table__.to_metadata(metadata)
        User.__table__.to_metadata(metadata)
        tables = {name: entity_table(entity, model, metadata) for name, entity in model.entities.items()}
    finally:
        if collecting:
            gc.enable()
    return MappingProxyType(tables)
