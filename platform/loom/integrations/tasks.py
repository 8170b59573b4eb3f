"""Deliveries as Celery tasks, for when one machine's worker is not enough.

With ``LOOM_BROKER_URL`` set (``redis://...`` or ``amqp://...``), ``loom worker`` (and the
worker thread of ``loom serve``) no longer runs actions itself: it claims due deliveries
as before (``loom.integrations.worker.claim``), each claim under a token of its own
(``celery:<uuid>``), and sends one ``loom.deliver`` task per delivery to the broker.
A Celery worker (``celery -A loom.commands.celery_worker worker``) runs the task: the
delivery's action runs only while the claim still stands under that token, and its
outcome is recorded with the same ``finish`` as the worker's own.

The deliveries table stays the source of truth. A task the broker loses, or a Celery
worker that dies mid-task, leaves its delivery ``running`` with a lease that runs out;
the next claim takes it over (the attempt recorded as ``lost``) and sends a new task
under a new token, and a late copy of the old task finds its token gone and does nothing.
So a delivery is never lost, and never run twice at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

import sqlalchemy as sa
from celery import Celery

from loom.db import utcnow, write_transaction
from loom.integrations import execute
from loom.integrations.models import deliveries
from loom.integrations.worker import DEFAULT_LEASE, LeaseKeeper, claim, finish

log = logging.getLogger(__name__)

TASK = "loom.deliver"


def celery_app(app: Any) -> Celery:
    """The Celery app of a Loom app (one per Loom app, made on first use) with the
    ``loom.deliver`` task bound to it."""
    made = app.extensions.get("loom_celery")
    if made is not None:
        return made
    celery = Celery("loom", broker=app.config["BROKER_URL"], set_as_current=False)
    celery.conf.update(
        # a task is taken off the queue only once it ran: a Celery worker that dies
        # mid-task leaves it for another (and the lease decides who may run it)
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=4,
        task_ignore_result=True, broker_connection_retry_on_startup=True,
        task_serializer="json", accept_content=["json"], timezone="UTC",
        # several Loom instances may share one broker, each with a queue of its own
        task_default_queue=app.config.get("BROKER_QUEUE") or "loom",
    )

    @celery.task(name=TASK, ignore_result=True, shared=False)
    def deliver(delivery_id: int, token: str, lease_seconds: float | None = None) -> str:
        with app.app_context():
            return run_dispatched(app, delivery_id, token, lease_seconds)

    app.extensions["loom_celery"] = celery
    return celery


def dispatch_due(app: Any, *, limit: int, lease: dt.timedelta, now: dt.datetime | None = None) -> int:
    """Claim up to ``limit`` due deliveries under a new token and send a task for each;
    how many were sent. A send that fails (the broker is down) leaves the delivery claimed:
    its lease runs out and a later round sends it again."""
    loom = app.extensions["loom"]
    token = f"celery:{uuid.uuid4()}"
    rows = claim(loom.engine, token, limit=limit, lease=lease, now=now, audit=loom.audit)
    celery = celery_app(app)
    sent = 0
    for row in rows:
        try:
            celery.send_task(TASK, args=[row.id, token, lease.total_seconds()])
            sent += 1
        except Exception:  # the broker is unreachable: the lease brings the delivery back
            log.exception("delivery %s could not be sent to the broker; it is sent again once its lease "
                          "runs out", row.id)
    return sent


def run_dispatched(app: Any, delivery_id: int, token: str, lease_seconds: float | None = None) -> str:
    """Run one delivery a task names, if the claim under ``token`` still stands, renewing
    the claim (of ``lease_seconds``, the dispatcher's) while the action runs; what
    happened: its outcome (succeeded, failed, dead), or ``dropped``."""
    loom = app.extensions["loom"]
    seconds = lease_seconds or app.config.get("DELIVERY_LEASE_SECONDS") or DEFAULT_LEASE.total_seconds()
    # the claim is taken up in one compare-and-set: still this token's and not lapsed (a
    # task that waited in the queue past its lease may have been sent again meanwhile),
    # and renewed from now, so that nobody can take it over between the check and the run
    d = deliveries
    now = utcnow()
    with write_transaction(loom.engine) as conn:
        taken = conn.execute(d.update().where(d.c.id == delivery_id, d.c.status == "running", d.c.lease_owner == token,
                                              d.c.lease_until > now)
                             .values(lease_until=now + dt.timedelta(seconds=seconds))).rowcount
        row = conn.execute(sa.select(d).where(d.c.id == delivery_id)).first() if taken else None
    if row is None:
        log.info("task for delivery %s under %s dropped: the claim passed on or lapsed", delivery_id, token)
        return "dropped"
    with LeaseKeeper(loom.engine, token, delivery_id, dt.timedelta(seconds=seconds)):
        outcome = execute.run(app, row)
    if not finish(loom.engine, token, delivery_id, outcome, audit=loom.audit):
        return "dropped"
    return outcome.kind
