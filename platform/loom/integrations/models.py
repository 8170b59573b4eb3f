"""The deliveries table (``loom_deliveries``): one row per action a rule triggered, written
in the transaction of its cause, and the attempts made at it (``loom_delivery_attempts``).

A delivery moves ``pending`` -> ``running`` (claimed by a worker, under a lease) ->
``succeeded``; a failed attempt puts it back to ``pending`` with a later ``available_at``
(backoff), until its last attempt makes it ``dead``. A permanent failure (the remote said
no: a 4xx) makes it ``dead`` at once. A lease that runs out (the worker died) lets another
worker claim it again. ``idempotency_key`` is unique: the same cause never makes two
deliveries of one rule, and the key is handed to the action so the remote end can tell a
retry from a new request.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loom.db import Base, BigId, utcnow

#: every status a delivery can be in
STATUSES = ("pending", "running", "succeeded", "dead")


class Delivery(Base):
    __tablename__ = "loom_deliveries"
    __table_args__ = (
        sa.Index("ix_loom_deliveries_due", "status", "available_at"),
        sa.Index("ix_loom_deliveries_record", "entity", "record_id"),
        sa.Index("ix_loom_deliveries_rule", "rule", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    #: the rule that made it, and what triggered the rule
    rule: Mapped[str] = mapped_column(sa.String(100))
    #: record.created, record.updated, record.deleted, schedule, webhook, flow.state_entered
    trigger: Mapped[str] = mapped_column(sa.String(100))
    action: Mapped[str] = mapped_column(sa.String(200))
    #: the plugin that provides the action ("loom" for the built-in ones)
    plugin: Mapped[str] = mapped_column(sa.String(100))
    entity: Mapped[str | None] = mapped_column(sa.String(100))
    record_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    #: what the rule's mapping is rendered from: {"record": {...}, "changes": {...}, ...}
    #: as the change left it (secrets masked); rendered only when the delivery runs, as
    #: the rule's principal, with only the fields that principal may read
    context: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    #: the user the action runs as (the rule's ``run_as``)
    run_as: Mapped[str] = mapped_column(sa.String(150))
    #: how many rule deliveries led to this one (0: a person's or a schedule's change)
    depth: Mapped[int] = mapped_column(sa.Integer, default=0)
    idempotency_key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, default=8)
    #: exponential or fixed, from the wait after the first failure (seconds)
    backoff: Mapped[str] = mapped_column(sa.String(20), default="exponential")
    backoff_seconds: Mapped[int] = mapped_column(sa.Integer, default=30)
    available_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), default=utcnow)
    #: the worker holding it while running, and until when its claim stands
    lease_owner: Mapped[str | None] = mapped_column(sa.String(200))
    lease_until: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    #: what the action answered (JSON), once it succeeded
    result: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))


class DeliveryAttempt(Base):
    __tablename__ = "loom_delivery_attempts"
    __table_args__ = (sa.Index("ix_loom_delivery_attempts_delivery", "delivery_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.BigInteger)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    worker: Mapped[str] = mapped_column(sa.String(200))
    started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: succeeded, failed (to be retried), permanent (dead at once), dead (the last
    #: attempt failed), lost (the lease ran out before the outcome was recorded)
    outcome: Mapped[str | None] = mapped_column(sa.String(20))
    error: Mapped[str | None] = mapped_column(sa.Text)
    duration_ms: Mapped[float | None] = mapped_column(sa.Float)


deliveries = Delivery.__table__
attempts = DeliveryAttempt.__table__


class JobSchedule(Base):
    """When each scheduled job of a plugin (``scheduled_jobs`` hook) and each scheduled rule
    last ran and runs next, kept by the worker. Workers in several processes take a due run
    by moving ``next_run_at`` on with a compare-and-set, so a job runs once per due time
    however many workers see it due."""

    __tablename__ = "loom_job_schedules"

    #: the job's name, or ``rule:<name>`` for a scheduled rule
    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    #: the plugin whose job it is ("loom" for a scheduled rule)
    plugin: Mapped[str] = mapped_column(sa.String(100))
    #: the schedule ``next_run_at`` was worked out from (a changed schedule is worked out again)
    schedule: Mapped[str] = mapped_column(sa.String(200))
    next_run_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    last_run_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True))
    #: ok or error, and the error's text
    last_outcome: Mapped[str | None] = mapped_column(sa.String(20))
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    last_duration_ms: Mapped[float | None] = mapped_column(sa.Float)


job_schedules = JobSchedule.__table__
