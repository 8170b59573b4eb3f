"""Link checks of record writes: a link must name a record that exists and that the
writer may read. Part of the record service.

Every link of a write is checked with one query per linked entity, whatever the number of
fields, child rows and records (a bulk create of 1,000 orders checks its customers with
one query and the products of all their lines with another). A link the write has
already seen while reading the record (an update that sends back the customer it had) is
not looked up again (``loom.records.memory``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from loom.errors import ValidationError, error_entry
from loom.metadata.model import AppModel, Entity
from loom.records.memory import Memory


class LinkChecks:
    """The link checks of ``RecordService`` (which sets the attributes used here)."""

    entity: Entity
    model: AppModel
    _memory: Memory | None
    access_for: Any
    _scope: Any
    _target_table: Any
    _title_query: Any
    _with_writer: Any

    def _validate_links(self, conn: sa.Connection, loaded: Sequence[tuple[dict, dict]], *,
                        indexed: bool = False) -> None:
        """Check every link of every (values, children) pair; for a batch (``indexed``)
        errors start with the row's index, as ``[3].customer``."""
        prefixes = [f"[{i}]." if indexed else "" for i in range(len(loaded))]
        # (entity, rows, path prefix of each row): the records, then the rows of each table field
        groups = [(self.entity, [values for values, _children in loaded], prefixes)]
        for f in self.entity.table_fields:
            rows, where = [], []
            for prefix, (_values, children) in zip(prefixes, loaded, strict=True):
                for j, row in enumerate(children.get(f.name, ())):
                    rows.append(row)
                    where.append(f"{prefix}{f.name}[{j}].")
            groups.append((self.model.entity(f.target), rows, where))
        wanted: dict[str, set[int]] = defaultdict(set)
        for entity, rows, _where in groups:
            for f in entity.fields:
                if f.type == "link":
                    wanted[f.target].update(row[f.name] for row in rows if row.get(f.name) is not None)
        found = {target: self._linkable(conn, target, ids) for target, ids in wanted.items() if ids}
        errors = [error_entry(prefix + f.name, "no_such_record", f"there is no {f.target} with id {row[f.name]}",
                              entity=f.target, id=row[f.name])
                  for entity, rows, where in groups for f in entity.fields if f.type == "link"
                  for prefix, row in zip(where, rows, strict=True)
                  if row.get(f.name) is not None and row[f.name] not in found[f.target]]
        if errors:
            raise ValidationError(f"{len(errors)} invalid value(s)", errors=errors)

    def _linkable(self, conn: sa.Connection, target: str, ids: set[int]) -> set[int]:
        """The ``ids`` of records of ``target`` a write may link to: records that exist
        and, but for users, that the caller may read (a record the caller may not read is,
        to them, a record that does not exist)."""
        query, title_field = self._title_query(target)
        scope: list[sa.ColumnElement[bool]] = []
        if title_field is None:  # users: every one may be linked to
            modes: tuple[str, ...] = ("full",)
        else:
            access = self.access_for(self.model.entity(target))
            if not access.allowed("read"):
                return set()
            scope = self._scope(access, self._target_table(target), "read")
            # where the caller reads every record, what exists and what it may read are one
            modes = ("scoped",) if scope else ("scoped", "full")
        found: set[int] = set()
        missing = set(ids)
        if self._memory is not None:
            missing = self._with_writer(target, missing)  # the write will show the writer's name
            for mode in modes:
                known, unknown = self._memory.titles(conn, target, mode, missing)
                found |= known.keys()
                missing &= unknown
        if missing:
            pairs = conn.execute(query.where(*scope) if scope else query, {"ids": sorted(missing)}).all()
            titles = {i: t if title_field is None or t is None else title_field.kind.to_json(t) for i, t in pairs}
            found |= titles.keys()
            if self._memory is not None:
                for mode in modes:
                    self._memory.remember_titles(conn, target, mode, missing, titles)
        return found

