"""The history of one record, read from the audit log: its logged changes as a reader
of the record may see them. The record service's ``history`` decides who may ask."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from loom.audit.log import timestamp
from loom.audit.reading import history_query
from loom.db import reading
from loom.schema.names import entity_name_spans


def record_changes(engine: sa.Engine, live: Any, entity: str, record_id: int,
                   readable: set[str] | frozenset[str], child_readable: Mapping[str, frozenset[str]],
                   connection: sa.Connection | None = None) -> list[dict[str, Any]]:
    """The logged changes of one record, oldest first, showing only the fields in
    ``readable`` (and, for child rows, ``child_readable`` per table field). The record
    service's ``history`` decides who may ask and which fields they read."""
    names = entity_name_spans(engine, live).get(entity, ())
    query = history_query(entity, record_id, names)
    if connection is not None:
        rows = connection.execute(query).mappings().all()
    else:
        with reading(engine) as conn:
            rows = conn.execute(query).mappings().all()
    history = []
    for row in rows:
        changes = {}
        for name, pair in (json.loads(row["changes"]) if row["changes"] else {}).items():
            if name not in readable:
                continue
            if name in child_readable:
                pair = [None if rows_ is None else [{k: v for k, v in r.items() if k in child_readable[name]}
                                                     for r in rows_] for rows_ in pair]
            changes[name] = pair
        if not changes and row["action"] == "record.update":
            continue
        history.append({"id": row["seq"], "at": timestamp(row["at"]), "actor": row["actor"], "actor_id": row["actor_id"],
                        "action": row["action"], "changes": changes})
    return history
