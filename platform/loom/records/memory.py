"""What one record write has already read, so that it does not read it again. Part of
the record service.

A write reads the titles of the records it links to more than once: to check its links,
for the record as it was (hooks and the audit entry see it) and for the record as it is
now (the reply, the event). An update reads the record's child rows before it writes and
again after. Most of the time nothing those reads show has changed in between, and the
second read is a statement saved.

What is remembered stays valid only while no write through the record service has
touched that entity's table on the same connection: every write notes itself there
(``note_write``), and every lookup compares that count with the one it was read at. A
plugin's hook that renames a linked record through the door between the two reads is
therefore seen, and the titles are read again. The memory lives for one operation of one
service; reads outside a write (get, list) never use it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

#: ``conn.info`` key: entity name -> how many record-service writes touched its table
_WRITES = "loom_record_writes"


def note_write(conn: sa.Connection, entity: str) -> None:
    """Say that the table of ``entity`` has just been written on ``conn``: what any
    operation remembered of it is stale from now on."""
    writes = conn.info.setdefault(_WRITES, {})
    writes[entity] = writes.get(entity, 0) + 1


def _generation(conn: sa.Connection, entity: str) -> int:
    return conn.info.get(_WRITES, {}).get(entity, 0)


class Memory:
    """Titles of linked records and child rows read during one write operation."""

    def __init__(self) -> None:
        #: (target entity, "full" or "scoped") -> (generation, ids looked up, {id: title})
        self._titles: dict[tuple[str, str], tuple[int, set[int], dict[int, Any]]] = {}
        #: child entity -> (generation, {parent id: child rows in position order})
        self._rows: dict[str, tuple[int, dict[int, list[Mapping[str, Any]]]]] = {}

    def titles(self, conn: sa.Connection, target: str, mode: str,
               ids: Iterable[int]) -> tuple[dict[int, Any], set[int]]:
        """(the remembered titles among ``ids``, the ids not looked up yet). ``mode`` is
        "full" (every record that exists) or "scoped" (the records the caller may read);
        an id looked up and not found has no title and is not asked for again."""
        ids = set(ids)
        entry = self._titles.get((target, mode))
        if entry is None or entry[0] != _generation(conn, target):
            return {}, ids
        _generation_seen, looked_up, titles = entry
        return {i: titles[i] for i in ids if i in titles}, ids - looked_up

    def remember_titles(self, conn: sa.Connection, target: str, mode: str, looked_up: Iterable[int],
                        titles: Mapping[int, Any]) -> None:
        generation = _generation(conn, target)
        entry = self._titles.get((target, mode))
        if entry is None or entry[0] != generation:
            entry = self._titles[target, mode] = (generation, set(), {})
        entry[1].update(looked_up)
        entry[2].update(titles)

    def child_rows(self, conn: sa.Connection, child: str,
                   parent_ids: Iterable[int]) -> dict[int, list[Mapping[str, Any]]] | None:
        """The remembered child rows of every one of ``parent_ids``, or None when those of
        any of them are not known (or no longer valid)."""
        entry = self._rows.get(child)
        if entry is None or entry[0] != _generation(conn, child):
            return None
        rows = entry[1]
        parent_ids = list(parent_ids)
        if any(pid not in rows for pid in parent_ids):
            return None
        return {pid: rows[pid] for pid in parent_ids}

    def remember_child_rows(self, conn: sa.Connection, child: str, parent_ids: Iterable[int],
                            rows: Iterable[Mapping[str, Any]]) -> None:
        """Remember ``rows`` as all the child rows of ``parent_ids`` (a parent without rows
        has none); rows are kept in position order."""
        generation = _generation(conn, child)
        entry = self._rows.get(child)
        if entry is None or entry[0] != generation:
            entry = self._rows[child] = (generation, {})
        by_parent: dict[int, list[Mapping[str, Any]]] = {pid: [] for pid in parent_ids}
        for row in rows:
            by_parent.setdefault(row["parent_id"], []).append(row)
        for pid, found in by_parent.items():
            entry[1][pid] = sorted(found, key=lambda r: r["position"])
