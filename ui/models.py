"""The screens' own tables: saved list views and import jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, BigId, utcnow

TIMESTAMP = sa.DateTime(timezone=True)


class SavedView(Base):
    """A user's named list view of one entity: its filters, search, columns and sort, kept
    as the list's query string. At most one per user and entity is the default."""

    __tablename__ = "loom_saved_views"
    __table_args__ = (sa.UniqueConstraint("user_id", "entity", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(sa.String(100))
    name: Mapped[str] = mapped_column(sa.String(200))
    query: Mapped[str] = mapped_column(sa.Text, default="")
    is_default: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)


class ImportJob(Base):
    """A spreadsheet import: the column mapping, its progress and the rows it rejected
    with the reason (its file is an ``ImportFile``). Kept in the database, so any process
    can report progress and a reload finds the job where it is."""

    __tablename__ = "loom_import_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id", ondelete="CASCADE"))
    entity: Mapped[str] = mapped_column(sa.String(100))
    filename: Mapped[str] = mapped_column(sa.String(255))
    #: mapping, queued, running, done, failed
    status: Mapped[str] = mapped_column(sa.String(20), default="mapping")
    mapping: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    total: Mapped[int] = mapped_column(sa.Integer, default=0)
    processed: Mapped[int] = mapped_column(sa.Integer, default=0)
    imported: Mapped[int] = mapped_column(sa.Integer, default=0)
    #: [{"row": line number, "values": {...}, "reason": "..."}]
    rejected: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    message: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(TIMESTAMP, default=utcnow)


class ImportFile(Base):
    """A part (1 MiB) of the file an import job reads, in order of ``part``. Apart from the
    job's row: that row is updated after every chunk of rows, and SQLite writes a whole
    row again on every update of it. In parts, so that the file is written and read a
    part at a time (``loom.ui.spreadsheets``), never held whole."""

    __tablename__ = "loom_import_files"

    job_id: Mapped[int] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_import_jobs.id", ondelete="CASCADE"),
                                        primary_key=True, autoincrement=False)
    part: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)


saved_views: sa.Table = SavedView.__table__  # type: ignore[assignment]
import_jobs: sa.Table = ImportJob.__table__  # type: ignore[assignment]
import_files: sa.Table = ImportFile.__table__  # type: ignore[assignment]
