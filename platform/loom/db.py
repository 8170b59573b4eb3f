"""Database plumbing: the engine, the declarative base for Loom's own tables, and the
alembic upgrade that creates them."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.resources import files
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from loom.config import SERVE_THREADS

log = logging.getLogger(__name__)

#: predictable constraint and index names, so migrations can refer to them
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: an auto-incrementing 64-bit key (SQLite only auto-increments INTEGER PRIMARY KEY)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: the values of LOOM_SQLITE_SYNCHRONOUS: with WAL, NORMAL does not wait for the disk at each
#: commit (the last commits may be lost on power loss, never on a crash of the process),
#: FULL does (each commit survives power loss too, at the price of a sync per commit)
SQLITE_SYNCHRONOUS = ("NORMAL", "FULL")
#: seconds a writer waits in line for its turn before it fails, as SQLite's busy timeout
#: (the same 30 s) fails a writer of another process
WRITE_TURN_TIMEOUT = 30.0


def create_engine(url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = SERVE_THREADS,
                  max_overflow: int = 10, **kwargs) -> sa.Engine:
    """An engine set up the way Loom needs it on each database. ``sqlite_synchronous``
    (one of ``SQLITE_SYNCHRONOUS``) is how hard a SQLite commit waits for the disk;
    ``pool_size`` and ``max_overflow`` (LOOM_DB_POOL_SIZE, LOOM_DB_MAX_OVERFLOW) are the
    connections the process keeps, and those it may open beyond them while all are busy."""
    in_memory = url.startswith("sqlite") and sa.make_url(url).database in (None, "", ":memory:")
    if not in_memory:  # an in-memory SQLite database has a connection per thread, no pool to size
        kwargs.setdefault("pool_size", pool_size)
        kwargs.setdefault("max_overflow", max_overflow)
    if url.startswith("sqlite"):
        synchronous = str(sqlite_synchronous).upper()
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"LOOM_SQLITE_SYNCHRONOUS: '{sqlite_synchronous}' is not one of "
                             f"{', '.join(SQLITE_SYNCHRONOUS)}")
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = sa.create_engine(url, **kwargs)
        _configure_sqlite(engine, synchronous)
        _write_queues[engine] = WriteQueue(WRITE_TURN_TIMEOUT)
        return engine
    # Connections are recycled rather than pinged before every use: a ping is a round trip
    # on every checkout, several per request.
    kwargs.setdefault("pool_recycle", 1800)
    return sa.create_engine(url, **kwargs)


def _configure_sqlite(engine: sa.Engine, synchronous: str) -> None:
    # pysqlite's own transaction handling does not put DDL inside a transaction; taking it
    # over makes a metadata publish atomic on SQLite as on PostgreSQL.
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.info.get("write_lock"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif not conn.get_execution_options().get("loom_reading"):
            conn.exec_driver_sql("BEGIN")


class WriteQueue:
    """The writers of one SQLite engine, one at a time, first come first served.

    SQLite lets one transaction write at a time. Left to SQLite, the threads of a process
    wait for that lock in its busy handler, which sleeps and tries again, longer after
    each miss: a writer that keeps missing waited seconds while others went straight
    through. Here they wait in line instead, and each hands the turn to the next as its
    transaction ends, so within a process no writer sleeps in the busy handler; SQLite's
    busy timeout only waits for other processes. A turn not given within ``timeout``
    seconds fails as SQLite's own wait would: "database is locked"."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._mutex = threading.Lock()
        #: the thread whose turn it is, if any
        self._holder: int | None = None
        #: the threads waiting, in order, each with a lock released to give it the turn
        self._waiting: deque[tuple[int, threading.Lock]] = deque()

    def acquire(self) -> None:
        """Wait for this thread's turn: at once when nobody has it, else after every
        writer that asked before."""
        me = threading.get_ident()
        with self._mutex:
            if self._holder is None:
                self._holder = me
                return
            if self._holder == me:
                # it would wait for itself until the timeout
                raise RuntimeError("this thread already has a write transaction open on this database; "
                                   "a nested write must join it (write_transaction does when it can see it)")
            turn = threading.Lock()
            turn.acquire()
            waiter = (me, turn)
            self._waiting.append(waiter)
        if turn.acquire(timeout=self.timeout):
            return
        with self._mutex:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
                raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(
                    f"database is locked (no turn to write within {self.timeout:g} s)"))
        # the turn was given just as the wait ended: it is ours

    def release(self) -> None:
        """End this thread's turn: the next writer in line has it at once."""
        with self._mutex:
            if self._holder != threading.get_ident():
                raise RuntimeError("only the thread whose turn it is can end it")
            if self._waiting:
                self._holder, turn = self._waiting.popleft()
                turn.release()
            else:
                self._holder = None

    @property
    def waiting(self) -> int:
        """How many writers wait for their turn."""
        return len(self._waiting)


#: the write queue of each SQLite engine made by ``create_engine``
_write_queues: weakref.WeakKeyDictionary[sa.Engine, WriteQueue] = weakref.WeakKeyDictionary()


def write_queue(engine: sa.Engine) -> WriteQueue | None:
    """The queue writers of ``engine`` wait in, in this process; None on PostgreSQL,
    whose row locks let writers of different rows go on at once."""
    return _write_queues.get(engine)


@contextmanager
def write_turn(engine: sa.Engine) -> Iterator[None]:
    """Wait for this thread's turn to write on ``engine`` (at once where there is no
    queue), and end it afterwards: for a write transaction not opened by
    ``write_transaction``, such as a metadata publish."""
    queue = write_queue(engine)
    if queue is None:
        yield
        return
    queue.acquire()
    try:
        yield
    finally:
        queue.release()


def reading(engine: sa.Engine) -> sa.Connection:
    """A connection for reads that change nothing, in autocommit: each statement has its
    own snapshot (as under PostgreSQL's READ COMMITTED anyway), and the BEGIN and ROLLBACK
    around every request's reads are saved (round trips on PostgreSQL, statements on SQLite)."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    else:
        conn = conn.execution_options(loom_reading=True)
    return conn


def newest_first(engine: sa.Engine, table: sa.Table, key: sa.Column, conditions: Sequence[Any], before: int | None,
                 limit: int) -> tuple[list[Any], str | None]:
    """A page of ``table``'s rows meeting ``conditions``, newest (highest ``key``) first, below
    ``before`` when given, and the cursor of the next (older) page: the last row's key,
    or None when there is no more."""
    stmt = sa.select(table).where(*conditions)
    if before is not None:
        stmt = stmt.where(key < before)
    stmt = stmt.order_by(key.desc()).limit(limit + 1)
    with reading(engine) as conn:
        rows = conn.execute(stmt).mappings().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return list(rows), (str(rows[-1][key.name]) if more and rows else None)


#: the write transaction each thread (or task) has open, per engine: a nested write joins it
_open_writes: ContextVar[Mapping[sa.Engine, sa.Connection] | None] = ContextVar("loom_open_writes", default=None)


@contextmanager
def write_transaction(engine: sa.Engine, join: sa.Connection | None = None) -> Iterator[sa.Connection]:
    """A transaction that will write. On SQLite it takes the write lock at BEGIN, so two
    writers queue instead of one failing half-way when the other commits first. Work
    registered with ``before_commit`` runs as its last statements, work registered with
    ``after_commit`` once it committed, work registered with ``after_end`` once it ended
    either way.

    On SQLite the writers of a process take turns in the engine's ``WriteQueue`` before
    BEGIN, first come first served, and the turn passes on as the transaction ends.

    With ``join`` (a connection whose transaction the caller owns) the write is a
    savepoint in that transaction: it commits or rolls back with it. A write begun while
    the same thread already has one open on ``engine`` (a plugin hook writing another
    record) joins it the same way, rather than waiting for the outer transaction's lock,
    which it would never get."""
    open_writes = _open_writes.get() or {}
    outer = join if join is not None else open_writes.get(engine)
    if outer is not None:
        _follow(outer)
        token = _open_writes.set({**open_writes, engine: outer})
        try:
            with outer.begin_nested():
                yield outer
        finally:
            _open_writes.reset(token)
        return
    committed: list[Callable[[], None]] = []
    ended: list[Callable[[], None]] = []
    try:
        # the turn is taken before the connection, so no writer holds one while in line
        with write_turn(engine), engine.connect() as conn:
            conn.info["write_lock"] = True
            conn.info["after_commit"] = []
            conn.info["after_end"] = []
            token = _open_writes.set({**open_writes, engine: conn})
            try:
                with deferring(conn), conn.begin():
                    yield conn
                    run_before_commit(conn)
                committed = conn.info["after_commit"]
            finally:
                _open_writes.reset(token)
                ended = conn.info.pop("after_end", [])
                conn.info.pop("write_lock", None)
                conn.info.pop("after_commit", None)
    finally:
        # the turn has passed on and the connection is back in the pool before follow-up
        # work (which may write itself) runs; work after the end runs after a rollback too
        _run(committed + ended)


def open_write(engine: sa.Engine) -> sa.Connection | None:
    """The write transaction this thread has open on ``engine``, if any: reads made while
    it is open use it, so they see what it has written."""
    return (_open_writes.get() or {}).get(engine)


#: connections given follow-up lists by ``_follow`` (listeners are attached once to each)
_followed: weakref.WeakSet[sa.Connection] = weakref.WeakSet()


def _follow(conn: sa.Connection) -> None:
    """Give a connection that ``write_transaction`` did not open (one a caller joined) the
    same follow-up lists. SQLAlchemy announces a commit or rollback before it happens, so
    the work runs once it has: when the connection begins its next transaction or goes
    back to the pool, whichever comes first."""
    if "after_commit" in conn.info:
        return
    conn.info["after_commit"], conn.info["after_end"] = [], []
    if conn in _followed:
        return
    _followed.add(conn)
    sa.event.listen(conn, "commit", lambda c: _ended(c.info, True))
    sa.event.listen(conn, "rollback", lambda c: _ended(c.info, False))
    sa.event.listen(conn, "begin", lambda c: _run_followed(c.info))
    pool = conn.engine.pool
    if not getattr(pool, "_loom_follows", False):
        pool._loom_follows = True  # type: ignore[attr-defined]
        sa.event.listen(pool, "checkin", lambda _dbapi, record: record is not None and _run_followed(record.info))


def _ended(info: dict, committed: bool) -> None:
    if "after_commit" in info:
        info["loom_outcome"] = committed


def _run_followed(info: dict) -> None:
    """Run a followed connection's work, once its transaction has ended."""
    if "loom_outcome" not in info:
        return
    committed = info.pop("loom_outcome")
    work = info.pop("after_commit", []) if committed else []
    info.pop("after_commit", None)
    _run(work + info.pop("after_end", []))


def _run(work: list[Callable[[], None]]) -> None:
    for callback in work:
        try:
            callback()
        except Exception:
            # the change is committed (or rolled back): a failing follow-up must not turn
            # the outcome into an error
            log.exception("work after a transaction failed")


def after_commit(conn: sa.Connection, callback: Callable[[], None]) -> None:
    """Run ``callback`` once ``conn``'s transaction has committed (never if it rolls back);
    at once when ``conn`` was not opened by ``write_transaction``."""
    pending = conn.info.get("after_commit")
    if pending is None:
        callback()
    else:
        pending.append(callback)


def after_end(engine: sa.Engine, callback: Callable[[], None], connection: sa.Connection | None = None) -> bool:
    """Run ``callback`` once the write transaction of ``connection`` (by default the one
    this thread has open on ``engine``) has ended, committed or rolled back; False (and
    nothing registered) when there is none. For what must be written whatever becomes of
    that transaction, such as the audit entry of a refusal met inside it."""
    conn = connection if connection is not None else open_write(engine)
    if conn is None:
        return False
    _follow(conn)
    conn.info["after_end"].append(callback)
    return True


@contextmanager
def deferring(conn: sa.Connection) -> Iterator[sa.Connection]:
    """Mark ``conn`` as one whose transaction calls ``run_before_commit`` before it
    commits; work still pending when the block ends (a rollback) is dropped."""
    conn.info["before_commit"] = {}
    try:
        yield conn
    finally:
        conn.info.pop("before_commit", None)


def before_commit(conn: sa.Connection) -> dict[str, Callable[[sa.Connection], None]] | None:
    """The work to run as the last statements of ``conn``'s transaction, by key; None when
    the transaction was not opened by ``write_transaction`` or ``deferring`` (then work
    must be done at once)."""
    return conn.info.get("before_commit")


def run_before_commit(conn: sa.Connection) -> None:
    pending = conn.info.get("before_commit") or {}
    while pending:
        _key, callback = pending.popitem()
        callback(conn)


def alembic_config(connection: sa.Connection | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("loom.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring Loom's own tables up to ``revision`` (alembic)."""
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: sa.Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


__all__ = ["Base", "BigId", "NAMING_CONVENTION", "SQLITE_SYNCHRONOUS", "WriteQueue", "after_commit", "after_end",
           "before_commit", "create_engine", "deferring", "downgrade", "open_write", "reading", "run_before_commit",
           "upgrade", "utcnow", "write_queue", "write_transaction", "write_turn"]


#: from this many rows on, ``insert_many`` on PostgreSQL copies instead of inserting
COPY_FROM = 20


def insert_many(conn: sa.Connection, table: sa.Table, rows: list[dict], statement: sa.Insert | None = None) -> None:
    """``conn.execute(table.insert(), rows)`` (rows with the same keys), in the caller's
    transaction. On PostgreSQL, from ``COPY_FROM`` rows on, the rows are sent with ``COPY
    ... FROM STDIN`` instead, a fraction of the cost of even a pipelined executemany: each
    value passes through its column type's own conversion first, columns left out get
    their Python-side defaults here and their server defaults from PostgreSQL, and
    constraints and triggers apply to copied rows as to inserted ones; a refused row
    raises the same SQLAlchemy error (``IntegrityError`` ...) an insert would. On SQLite
    many rows are sent by ``_sqlite_many``."""
    if conn.dialect.name == "sqlite" and len(rows) >= COPY_FROM and _sqlite_many(conn, table, rows, statement):
        return
    if conn.dialect.name != "postgresql" or len(rows) < COPY_FROM:
        conn.execute(statement if statement is not None else table.insert(), rows)
        return
    import psycopg
    from psycopg import sql

    dialect = conn.dialect
    given = list(rows[0])
    defaults = {c.name: c.default for c in table.c
                if c.name not in rows[0] and c.default is not None and not c.default.is_sequence}
    names = given + list(defaults)
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]
    target = sql.Identifier(*(p for p in (table.schema, table.name) if p))
    command = sql.SQL("COPY {} ({}) FROM STDIN").format(target, sql.SQL(", ").join(map(sql.Identifier, names)))
    try:
        with conn.connection.dbapi_connection.cursor() as cursor:
            text = command.as_string(cursor)
            # listeners counting or logging statements see the COPY as the statement it is
            conn.dispatch.before_cursor_execute(conn, cursor, text, (), None, True)
            with cursor.copy(command) as copy:
                for row in rows:
                    values = [row[name] for name in given]
                    values += [d.arg if d.is_scalar else d.arg(None) for d in defaults.values()]
                    copy.write_row([v if p is None else p(v) for v, p in zip(values, processors, strict=True)])
            conn.dispatch.after_cursor_execute(conn, cursor, text, (), None, True)
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(f"COPY {table.name}", None, error, psycopg.Error) from None


def _sqlite_many(conn: sa.Connection, table: sa.Table, rows: list[dict], statement: sa.Insert | None) -> bool:
    """Insert ``rows`` on SQLite with one executemany of the compiled statement, each value
    passed through its column type's conversion as SQLAlchemy would, but without its
    per-row work around it (the parameters set up anew for every row), which costs a bulk
    create of 1,000 records more than the conversions do. A value the rows share (the
    write's time, in every row) is converted once. False, and nothing done, when the
    statement takes parameters the rows do not give (a column default made in Python):
    ``conn.execute`` then inserts them as always."""
    names = list(rows[0])
    compiled = (statement if statement is not None else table.insert()).compile(dialect=conn.dialect,
                                                                               column_keys=names)
    order = compiled.positiontup
    if order is None or sorted(order) != sorted(names) or any(name not in table.c for name in order):
        return False
    dialect = conn.dialect
    columns = []
    for name in order:
        columns.append((name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)))
    params = [[row[name] for name in order] for row in rows]
    for i, (_name, process) in enumerate(columns):
        if process is None:
            continue
        seen: object = _NOTHING
        done: object = None
        for values in params:
            value = values[i]
            if value is not seen:
                seen, done = value, process(value)
            values[i] = done
    conn.exec_driver_sql(compiled.string, [tuple(values) for values in params])
    return True


_NOTHING = object()
