"""``loom.db.insert_many`` on SQLite sends many rows in one executemany of its own, each
value converted by its column type: what it stores must be exactly what SQLAlchemy's
own insert of the same rows stores, defaults made in Python included."""

from __future__ import annotations

import datetime as dt
import decimal

import sqlalchemy as sa

from loom.db import COPY_FROM, insert_many

metadata = sa.MetaData()
things = sa.Table(
    "things", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(50)),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("day", sa.Date),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("paid", sa.Boolean),
    sa.Column("data", sa.JSON),
    sa.Column("status", sa.String(20), default="pending"),
)


def rows(n: int, *, status: bool = True) -> list[dict]:
    now = dt.datetime(2026, 12, 2, 13, 45, 1, 123456, tzinfo=dt.UTC)
    made = []
    for i in range(n):
        row = {"name": f"thing {i} 华", "at": now if i % 3 else now + dt.timedelta(seconds=i),
               "day": None if i % 4 == 0 else dt.date(2026, 1, 1 + i % 28), "price": decimal.Decimal(f"{i}.5"),
               "paid": bool(i % 2), "data": None if i % 5 == 0 else {"i": i, "list": [1, None, "x"]}}
        if status:
            row["status"] = "done" if i % 2 else None
        made.append(row)
    return made


def stored(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT name, at, day, price, paid, data, status FROM things ORDER BY id").all()


def test_many_rows_are_stored_as_sqlalchemys_insert_stores_them(tmp_path):
    for status in (True, False):  # without the column, its Python default must be filled in
        ours, theirs = (sa.create_engine(f"sqlite:///{tmp_path}/{name}-{status}.db") for name in ("ours", "theirs"))
        for engine in (ours, theirs):
            metadata.create_all(engine)
        with ours.begin() as conn:
            insert_many(conn, things, rows(COPY_FROM + 7, status=status))
        with theirs.begin() as conn:
            conn.execute(things.insert(), rows(COPY_FROM + 7, status=status))
        assert stored(ours) == stored(theirs)
        assert len(stored(ours)) == COPY_FROM + 7
        assert ("pending" if not status else "done") in {r[-1] for r in stored(ours)}


def test_a_refused_row_is_refused_as_an_insert_refuses_it(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/refused.db")
    table = sa.Table("unique_things", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("code", sa.String(10), unique=True))
    table.metadata.create_all(engine)
    many = [{"code": f"c{i}"} for i in range(COPY_FROM + 3)] + [{"code": "c1"}]
    try:
        with engine.begin() as conn:
            insert_many(conn, table, many)
    except sa.exc.IntegrityError:
        pass
    else:
        raise AssertionError("a duplicate code was stored")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
