"""Autonumber fields: numbers such as ``SO-202612-00042`` that Loom gives each new record.

A string field declares ``autonumber: "SO-{yyyy}{mm}-{seq:5}"``. The date placeholders
(``{yyyy}``, ``{yy}``, ``{mm}``, ``{dd}``) are the record's creation date in the app's time
zone (LOOM_TIMEZONE, UTC by default); ``{seq:N}`` is a counter, zero-padded to N digits
(more digits once it outgrows them). Each distinct prefix (the text with the date filled
in and the counter left out) has a counter of its own in ``loom_numbering``, so
``SO-{yyyy}{mm}-{seq:5}`` starts again at 1 each month. A counter only moves forward:
the number of a deleted record is never given again.

Where the number is taken decides what a failed create costs and what creates wait for:

- ``gap_free: true``: in the record's own transaction, one ``INSERT ... ON CONFLICT DO
  UPDATE ... RETURNING`` on the counter's row. A create that rolls back gives its number
  back, so the numbers have no gaps; concurrent creates of the same prefix wait for each
  other's transactions on that row (SQLite's writers take turns anyway).
- ``gap_free: false`` (the default): in a short transaction of its own, committed before
  the record's begins, so creates never wait on each other's transactions; a create that
  fails afterwards leaves a gap. Inside a transaction the caller opened (a service given
  a connection, a plugin hook writing another record) the number is taken in that
  transaction, as for a gap-free field: it could not be taken apart from it. On SQLite
  too: its writers take turns whatever happens, so a transaction of its own would let
  no create go sooner and only cost a commit per create; there a failed create leaves
  no gap either. On PostgreSQL that transaction's commit does not wait for the disk
  (see ``Numbering.before``).

A bulk create takes the numbers of all its rows with one statement per field.

Users never write the field: a value given on create or update is refused (422,
read-only). The system principal may give one on create (an import of legacy numbers):
it is stored as given, and when it has the field's format, its prefix's counter moves
past it, so later numbers do not repeat it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, open_write, write_transaction
from loom.metadata.autonumber import Pattern, parse_pattern
from loom.metadata.model import Entity, Field


class NumberCounter(Base):
    """The last number given for one prefix of one autonumber field."""

    __tablename__ = "loom_numbering"

    entity: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    field: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    #: the number's text with the date filled in and the counter as ``#``: SO-202612-#
    prefix: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    last: Mapped[int] = mapped_column(sa.BigInteger)


counters: sa.Table = NumberCounter.__table__  # type: ignore[assignment]


#: patterns parsed once each
_parsed = functools.lru_cache(maxsize=256)(parse_pattern)


def autonumber_fields(entity: Entity) -> tuple[Field, ...]:
    return tuple(f for f in entity.fields if f.autonumber)


def _build_statements(dialect: str) -> tuple[Any, Any]:
    """(take, move past) for ``dialect``: one ``INSERT ... ON CONFLICT DO UPDATE`` each,
    with the entity, field, prefix and a number (``last``) as parameters."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(counters)
    key = [counters.c.entity, counters.c.field, counters.c.prefix]
    given = insert.excluded.last
    take = insert.on_conflict_do_update(index_elements=key, set_={"last": counters.c.last + given})
    move = insert.on_conflict_do_update(index_elements=key, set_={
        "last": sa.case((counters.c.last < given, given), else_=counters.c.last)})
    return take.returning(counters.c.last), move


_statements: dict[str, tuple[Any, Any]] = {}


def _statement(conn: sa.Connection, which: int) -> Any:
    dialect = conn.dialect.name
    if dialect not in _statements:
        _statements[dialect] = _build_statements(dialect)
    return _statements[dialect][which]


def take(conn: sa.Connection, entity: str, field: str, prefix: str, count: int) -> range:
    """The next ``count`` numbers of a counter, taken with one statement in ``conn``'s
    transaction (whose row lock on PostgreSQL holds other takers until it ends)."""
    last = conn.execute(_statement(conn, 0), {"entity": entity, "field": field, "prefix": prefix,
                                              "last": count}).scalar_one()
    return range(last - count + 1, last + 1)


def move_past(conn: sa.Connection, entity: str, field: str, prefix: str, number: int) -> None:
    """Make sure the counter will not give ``number`` (or anything below it) again."""
    conn.execute(_statement(conn, 1), {"entity": entity, "field": field, "prefix": prefix, "last": number})


class Numbering:
    """The numbers of one create (of one or many rows) of ``entity``: ``before`` takes
    those that are not gap-free, ahead of the record's transaction; ``within`` the rest,
    in it, and moves counters past numbers the system gave itself."""

    def __init__(self, engine: sa.Engine, entity: Entity, rows: Sequence[dict[str, Any]], now: dt.datetime,
                 time_zone: str = "UTC", joined: bool = False):
        self.engine, self.entity, self.rows = engine, entity, rows
        self.fields = autonumber_fields(entity)
        self.day = now.astimezone(ZoneInfo(time_zone)).date()
        #: every number is taken in the record's transaction: the caller's is open and
        #: nothing can be taken apart from it, or SQLite's writers take turns anyway
        self.joined = joined or engine.dialect.name == "sqlite" or open_write(engine) is not None
        #: per field, the values the caller gave (the system's legacy numbers), before any is filled
        self.given = {f.name: [row[f.name] for row in rows if isinstance(row.get(f.name), str)] for f in self.fields}

    def _pattern(self, f: Field) -> Pattern:
        return _parsed(f.autonumber or "")

    def _fill(self, conn: sa.Connection, f: Field) -> None:
        pending = [row for row in self.rows if row.get(f.name) is None]
        if not pending:
            return
        pattern = self._pattern(f)
        numbers = take(conn, self.entity.name, f.name, pattern.prefix(self.day), len(pending))
        for row, number in zip(pending, numbers, strict=True):
            row[f.name] = pattern.render(self.day, number)

    def before(self) -> None:
        """Take the numbers of fields that are not gap-free, in a transaction of their own."""
        apart = [f for f in self.fields if not f.gap_free and not self.joined]
        if apart and any(row.get(f.name) is None for f in apart for row in self.rows):
            with write_transaction(self.engine) as conn:
                # No wait for the disk: a number reaches a record only through the record's
                # own commit, which comes later in the write-ahead log and flushes this one
                # with it; lost in a crash, it was in no committed record.
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                for f in apart:
                    self._fill(conn, f)

    def within(self, conn: sa.Connection) -> None:
        """Take the other numbers in the record's transaction ``conn``; move counters past
        numbers given with the rows."""
        for f in self.fields:
            if self.given[f.name]:
                pattern = self._pattern(f)
                highest: dict[str, int] = {}
                for text in self.given[f.name]:
                    parsed = pattern.parse(text)
                    if parsed is not None:
                        highest[parsed[0]] = max(highest.get(parsed[0], 0), parsed[1])
                for prefix, number in sorted(highest.items()):
                    move_past(conn, self.entity.name, f.name, prefix, number)
            self._fill(conn, f)


def numbering(engine: sa.Engine, entity: Entity, rows: Sequence[dict[str, Any]], now: dt.datetime, *,
              time_zone: str = "UTC", joined: bool = False) -> Numbering | None:
    """The ``Numbering`` of a create of ``rows`` (the loaded values, filled in place), with
    the numbers that are not gap-free taken already; None when the entity has no
    autonumber field."""
    if not autonumber_fields(entity):
        return None
    result = Numbering(engine, entity, rows, now, time_zone, joined)
    result.before()
    return result

