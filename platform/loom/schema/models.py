"""Loom's record of the live metadata: every published version, and the columns and
tables set aside by removals so that no change destroys data."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, BigId, utcnow


class MetadataVersion(Base):
    """One published metadata version; the newest row is the live metadata."""

    __tablename__ = "loom_metadata_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[int] = mapped_column(sa.Integer, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    author: Mapped[str] = mapped_column(sa.String(200))
    #: how it came to be: "apply", or "rollback to N"
    source: Mapped[str] = mapped_column(sa.String(100))
    #: the change in words, one line per change
    summary: Mapped[list[str]] = mapped_column(sa.JSON)
    documents: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))


class SetAside(Base):
    """A column or table kept, renamed out of the way, after its field or entity was removed
    (or before a type change), until an explicit purge."""

    __tablename__ = "loom_set_aside"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entity: Mapped[str] = mapped_column(sa.String(100))
    #: the field, or None when a whole entity's table was set aside
    field: Mapped[str | None] = mapped_column(sa.String(100))
    stored_name: Mapped[str] = mapped_column(sa.String(100))
    #: the field or entity definition at the time, to restore it with the right type
    definition: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    reason: Mapped[str] = mapped_column(sa.String(20))
    version_number: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    restored_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    purged_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
