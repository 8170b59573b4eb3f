"""Saved list views: a user's named filters, columns and sort for one entity.

A view is stored as the list's query string; applying it runs the list exactly as the
user would by typing that URL, so the record service checks it again every time (a field
the user may no longer read makes the view fail with a message, it never leaks).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from loom.db import reading, utcnow, write_transaction
from loom.errors import Conflict, NotFound, ValidationError, error_entry
from loom.ui.models import saved_views

#: list arguments a view keeps (a cursor is a position, not a view)
KEPT = ("search", "sort", "limit", "columns")


@dataclass(frozen=True)
class SavedViewRow:
    id: int
    name: str
    query: str
    is_default: bool

    def args(self) -> MultiDict:
        return MultiDict(parse_qsl(self.query, keep_blank_values=False))


def view_query(args: MultiDict) -> str:
    """The part of list arguments a view keeps, as a query string."""
    items = [(k, v) for k, v in args.items(multi=True) if (k in KEPT or k.startswith("filter[")) and v != ""]
    return urlencode(items)


class SavedViews:
    """The saved views of one user for one entity."""

    def __init__(self, engine: sa.Engine, user_id: int, entity: str):
        self.engine = engine
        self.user_id = user_id
        self.entity = entity

    def _mine(self):
        return (saved_views.c.user_id == self.user_id) & (saved_views.c.entity == self.entity)

    def all(self) -> list[SavedViewRow]:
        with reading(self.engine) as conn:
            rows = conn.execute(sa.select(saved_views.c.id, saved_views.c.name, saved_views.c.query,
                                          saved_views.c.is_default)
                                .where(self._mine()).order_by(saved_views.c.name)).all()
        return [SavedViewRow(*row) for row in rows]

    def get(self, view_id: int) -> SavedViewRow:
        for view in self.all():
            if view.id == view_id:
                return view
        raise NotFound(f"there is no saved view with id {view_id}")

    def default(self) -> SavedViewRow | None:
        return next((v for v in self.all() if v.is_default), None)

    def save(self, name: str, query: str, *, is_default: bool) -> int:
        """Save (or replace, by name) a view; a new default replaces the old one."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ValidationError("a view needs a name", errors=[error_entry("name", "too_long", "1 to 200 characters", max=200)])
        with write_transaction(self.engine) as conn:
            if is_default:
                conn.execute(saved_views.update().where(self._mine()).values(is_default=False))
            existing = conn.execute(sa.select(saved_views.c.id).where(self._mine(), saved_views.c.name == name)).scalar()
            if existing is not None:
                conn.execute(saved_views.update().where(saved_views.c.id == existing)
                             .values(query=query, is_default=is_default))
                return existing
            try:
                return conn.execute(saved_views.insert().values(
                    user_id=self.user_id, entity=self.entity, name=name, query=query, is_default=is_default,
                    created_at=utcnow()).returning(saved_views.c.id)).scalar_one()
            except sa.exc.IntegrityError:
                raise Conflict("a view with this name was just saved; try again") from None

    def delete(self, view_id: int) -> None:
        with write_transaction(self.engine) as conn:
            deleted = conn.execute(saved_views.delete().where(self._mine(), saved_views.c.id == view_id)).rowcount
        if not deleted:
            raise NotFound(f"there is no saved view with id {view_id}")
