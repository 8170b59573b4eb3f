"""Principals cached per process, by credential, for as long as nothing they were made of
has changed.

Every change to a credential or to what a principal is made of (a user, their roles,
team or manager, the team tree, a session, a token) moves the identity version in the
same transaction (triggers on those tables, see ``IdentityVersion``). Each request reads
that number first, in the statement that also reads the metadata version; when it
differs from the number the cache was filled under, the cache is emptied before the
request's credential is looked at. So a revoked token, an ended session, a deactivated
user, a removed role or a changed team is refused or applied on the very next request in
every process: the staleness is zero, not a time bound. A request already past that
check when the change commits finishes as the principal it started with, as it did
before caching.

Only valid credentials are kept (an unknown token would let anyone fill the cache), at
most ``CACHED_CREDENTIALS`` of them; each entry keeps its credential's expiry, checked on
every use.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from loom.db import write_transaction
from loom.identity.models import IdentityVersion
from loom.principal import Principal

identity_versions = IdentityVersion.__table__

#: credentials one process keeps principals for; past it the oldest entry makes room
CACHED_CREDENTIALS = 4096


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    expires_at: dt.datetime | None


class CredentialCache:
    """Principals by credential key, and the team tree, all read under one identity version.

    ``observe`` is told the version a request has just read; anything kept under another
    version is dropped. ``keep`` takes what a request read after observing ``version``
    and stores it only if that is still the cache's version: a reader that lost a race
    with a change cannot put back what the change made stale. Versions only grow, so an
    older number observed late (a slow thread) changes nothing."""

    def __init__(self, capacity: int = CACHED_CREDENTIALS):
        self.capacity = capacity
        self._lock = threading.Lock()
        self._version: int | None = None
        self._principals: dict[str, _Entry] = {}
        self._team_tree: Any = None

    def observe(self, version: int | None) -> None:
        """The identity version as a request has just read it (None: the database has none,
        nothing is cached)."""
        if version == self._version:
            return
        with self._lock:
            if version is None or self._version is None or version > self._version:
                self._version = version
                self._principals = {}
                self._team_tree = None

    def principal(self, key: str, now: dt.datetime) -> Principal | None:
        """The principal kept for ``key``, unless its credential has expired by ``now``."""
        entry = self._principals.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= now:
            self._principals.pop(key, None)
            return None
        return entry.principal

    def keep(self, key: str, principal: Principal, expires_at: dt.datetime | None, version: int | None) -> None:
        """Keep ``principal`` for ``key``, read after ``version`` was observed."""
        with self._lock:
            if version is None or version != self._version:
                return
            if key not in self._principals and len(self._principals) >= self.capacity:
                self._principals.pop(next(iter(self._principals)))
            self._principals[key] = _Entry(principal, expires_at)

    def team_tree(self, version: int | None) -> Any:
        """The team tree kept under ``version``, if any."""
        return self._team_tree if version is not None and version == self._version else None

    def keep_team_tree(self, tree: Any, version: int | None) -> None:
        with self._lock:
            if version is not None and version == self._version:
                self._team_tree = tree

    def __len__(self) -> int:
        return len(self._principals)


_VERSION = sa.select(identity_versions.c.number).where(identity_versions.c.id == 1).scalar_subquery()


def version_query() -> sa.ScalarSelect:
    """The identity version, as a scalar subquery to read beside others in one statement
    (one object, so that the statement reading it can be built once)."""
    return _VERSION


@contextmanager
def changing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A write transaction that changes what principals are made of. It takes the identity
    version's row first: the triggers take it as each statement ends, after that
    statement's rows, so two changes would otherwise take the same rows in other orders
    and deadlock on PostgreSQL (SQLite has one writer at a time)."""
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(identity_versions.c.id).where(identity_versions.c.id == 1).with_for_update())
        yield conn


def token_key(digest: str) -> str:
    return f"token:{digest}"


def session_key(digest: str) -> str:
    return f"session:{digest}"
