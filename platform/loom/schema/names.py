"""The names each live entity has had, and when: read from the published metadata
versions, so that a record's history (kept in the append-only audit log under the entity
name of the day) follows its entity through renames, and an entity that later takes an
old name does not inherit the history written under it before.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any

import sqlalchemy as sa

from loom.db import reading
from loom.metadata.diff import pair_renames
from loom.schema.models import MetadataVersion

versions = MetadataVersion.__table__


@dataclass(frozen=True)
class NameSpan:
    """Entity name ``name`` belonged to the entity from ``since`` until ``until`` (None: still)."""

    name: str
    since: dt.datetime | None
    until: dt.datetime | None


def spans_from_versions(rows: list[tuple[dt.datetime, list[dict[str, Any]]]]) -> dict[str, tuple[NameSpan, ...]]:
    """Live entity name -> the spans of every name it had, from (published at, documents)
    of each version, oldest first. A removed entity that comes back (its table restored)
    keeps its earlier spans; a new entity with a used name starts afresh."""
    lineages: list[list[NameSpan]] = []
    current: dict[str, int] = {}
    removed: dict[str, list[int]] = {}
    previous: dict[str, SimpleNamespace] = {}

    def close(index: int, at: dt.datetime) -> None:
        last = lineages[index][-1]
        lineages[index][-1] = NameSpan(last.name, last.since, at)

    for at, documents in rows:
        entities = {d["name"]: SimpleNamespace(renamed_from=d.get("renamed_from"))
                    for d in documents if d.get("kind") == "entity"}
        renames = pair_renames(previous, entities)
        following: dict[str, int] = {}
        for name in entities:
            if name in renames:
                index = current[renames[name]]
                close(index, at)
                lineages[index].append(NameSpan(name, at, None))
            elif name in current:
                index = current[name]
            else:
                if removed.get(name):
                    index = removed[name].pop()
                else:
                    index = len(lineages)
                    lineages.append([])
                lineages[index].append(NameSpan(name, at, None))
            following[name] = index
        kept = set(following.values())
        for name, index in current.items():
            if index not in kept:
                close(index, at)
                removed.setdefault(name, []).append(index)
        current, previous = following, entities
    return {name: tuple(lineages[index]) for name, index in current.items()}


def entity_name_spans(engine: sa.Engine, live: Any) -> Mapping[str, tuple[NameSpan, ...]]:
    """Live entity name -> its name spans, computed once per live metadata version."""
    def load() -> Mapping[str, tuple[NameSpan, ...]]:
        with reading(engine) as conn:
            rows = conn.execute(sa.select(versions.c.created_at, versions.c.documents)
                                .where(versions.c.number <= live.number).order_by(versions.c.number)).all()
        return MappingProxyType(spans_from_versions([(r.created_at, r.documents) for r in rows]))
    return live.derive("entity name spans", load)
