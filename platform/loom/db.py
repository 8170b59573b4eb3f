"""Database plumbing: the engine, the declarative base for Loom's own tables, and the
alembic upgrade that creates them."""

from __future__ import annotations

import datetime as dt
import logging
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from importlib.resources import files

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

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


def create_engine(url: str, **kwargs) -> sa.Engine:
    """An engine set up the way Loom needs it on each database."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = sa.create_engine(url, **kwargs)
        _configure_sqlite(engine)
        return engine
    # Connections are recycled rather than pinged before every use: a ping is a round trip
    # on every checkout, several per request.
    kwargs.setdefault("pool_recycle", 1800)
    kwargs.setdefault("pool_size", 10)
    return sa.create_engine(url, **kwargs)


def _configure_sqlite(engine: sa.Engine) -> None:
    # pysqlite's own transaction handling does not put DDL inside a transaction; taking it
    # over makes a metadata publish atomic on SQLite as on PostgreSQL.
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write_lock") else "BEGIN")


def reading(engine: sa.Engine) -> sa.Connection:
    """A connection for reads that change nothing. On PostgreSQL it runs in autocommit:
    under READ COMMITTED each statement has its own snapshot anyway, and the BEGIN and
    ROLLBACK round trips around every request's reads are saved."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


#: the write transaction each thread (or task) has open, per engine: a nested write joins it
_open_writes: ContextVar[Mapping[sa.Engine, sa.Connection] | None] = ContextVar("loom_open_writes", default=None)


@contextmanager
def write_transaction(engine: sa.Engine, join: sa.Connection | None = None) -> Iterator[sa.Connection]:
    """A transaction that will write. On SQLite it takes the write lock at BEGIN, so two
    writers queue instead of one failing half-way when the other commits first. Work
    registered with ``before_commit`` runs as its last statements, work registered with
    ``after_commit`` once it committed, work registered with ``after_end`` once it ended
    either way.

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
    with engine.connect() as conn:
        conn.info["write_lock"] = True
        conn.info["after_commit"] = []
        conn.info["after_end"] = []
        token = _open_writes.set({**open_writes, engine: conn})
        committed: list[Callable[[], None]] = []
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
            # the connection is back in the pool before follow-up work opens its own
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


__all__ = ["Base", "BigId", "NAMING_CONVENTION", "after_commit", "after_end", "before_commit", "create_engine", "deferring", "downgrade",
           "open_write", "reading", "run_before_commit", "upgrade", "utcnow", "write_transaction"]
