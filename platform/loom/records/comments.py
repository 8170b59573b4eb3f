"""Comments on records: short notes users leave on a record they may read.

A comment belongs to one record of one entity. Whoever may read the record may read its
comments and add one (not with a read-only API token); nobody edits or deletes a comment, so the thread stays what people
saw. Adding a comment writes an audit entry (``comment.create``) and an outbox event
(``record.commented``) in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.audit.log import timestamp
from loom.db import Base, BigId, utcnow
from loom.errors import ValidationError, error_entry
from loom.events import emit
from loom.permissions import Forbidden

MAX_LENGTH = 10_000


class Comment(Base):
    __tablename__ = "loom_comments"
    __table_args__ = (sa.Index("ix_loom_comments_entity_record_id", "entity", "record_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entity: Mapped[str] = mapped_column(sa.String(100))
    record_id: Mapped[int] = mapped_column(sa.BigInteger)
    author_id: Mapped[int | None] = mapped_column(sa.BigInteger, sa.ForeignKey("loom_users.id"))
    #: the author's name when they wrote it; kept for principals that are not users
    author: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)


comments: sa.Table = Comment.__table__  # type: ignore[assignment]


def _clean(body: Any) -> str:
    text = body.strip() if isinstance(body, str) else ""
    if not text:
        raise ValidationError("the comment is empty", errors=[error_entry("body", "empty_comment", "write a comment")])
    if len(text) > MAX_LENGTH:
        raise ValidationError(f"the comment has {len(text)} characters", errors=[
            error_entry("body", "too_long", f"at most {MAX_LENGTH} characters", max=MAX_LENGTH)])
    return text


def _reply(row: Any) -> dict[str, Any]:
    return {"id": row["id"], "author": row["author"], "author_id": row["author_id"], "body": row["body"],
            "created_at": timestamp(row["created_at"])}


class Discussion:
    """Comments, as methods of ``RecordService`` (which sets the attributes used here)."""

    context: Any
    entity: Any
    principal: Any
    audit: Any
    require_readable: Any
    _log_refusal: Any
    _writing: Any
    _reading: Any
    _after_commit: Any

    def comments(self, record_id: int, *, checked: bool = False) -> list[dict[str, Any]]:
        """The comments on one record, oldest first, when the caller may read it (else the
        record's NotFound); ``checked``: the caller has just made sure."""
        if not checked:
            self.require_readable(record_id)
        t = comments.c
        query = sa.select(comments).where(t.entity == self.entity.name, t.record_id == record_id).order_by(t.id)
        with self._reading() as conn:
            return [_reply(row) for row in conn.execute(query).mappings()]

    def add_comment(self, record_id: int, body: Any) -> dict[str, Any]:
        """Add a comment from the caller to a record they may read: an outbox event
        (``record.commented``) and an audit entry (``comment.create``) in its transaction,
        and ``after_record_commit`` (action ``commented``) once it committed."""
        principal = self.principal
        if principal.read_only:
            refusal = Forbidden(f"a read-only token cannot comment on {self.entity.name} records",
                                code="read_only_token", params={"action": "comment", "entity": self.entity.name})
            self._log_refusal("comment", refusal, record_id)
            raise refusal
        self.require_readable(record_id)
        text = _clean(body)
        entity = self.entity.name
        with self._writing() as conn:
            row = conn.execute(comments.insert().values(
                entity=entity, record_id=record_id, author_id=principal.user_id, author=principal.name[:200],
                body=text, created_at=utcnow()).returning(*comments.c)).mappings().one()
            emit(conn, topic="record.commented", actor=principal.name, entity=entity, record_id=record_id,
                 payload={"comment_id": row["id"], "body": text})
            self.audit.add(conn, "comment.create", principal=principal, entity=entity, record_id=record_id,
                           detail={"comment_id": row["id"], "body": text})
            reply = _reply(row)
            self._after_commit(conn, "commented", [{"id": record_id, "comment": reply}])
        return reply
