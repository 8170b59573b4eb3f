"""The worker: runs the deliveries integration rules made, fires scheduled rules, hands
out the outbox events plugins consume, and runs the jobs plugins schedule.

A delivery is claimed before it runs: one short transaction moves it to ``running`` under
a lease (``lease_owner``, ``lease_until``), counts the attempt and writes the attempt's
row, and does no other work. On PostgreSQL the claim reads with ``FOR UPDATE SKIP LOCKED``,
so workers in other processes take other deliveries; on SQLite it runs inside the write
lock (``write_transaction``), one claim at a time. The action then runs with no
transaction open, its lease renewed while it runs (``LeaseKeeper``), and ``finish``
records its outcome in a second short transaction, only if the claim still stands: a
worker that died (or could not renew its lease) has its delivery taken over by another
worker once the lease ran out, which records the open attempt as ``lost``; the first
worker's late outcome is then dropped. So two workers never run one delivery at once, and
an action may see a delivery again only after a lease ran out, with the same idempotency
key.

A failed attempt puts the delivery back to ``pending`` after a backoff (exponential, a
random part between half and the whole of the wait, at most an hour; or fixed), until its
last attempt makes it ``dead``; every attempt is written to ``loom_delivery_attempts`` and
the audit log (``delivery.attempt``).
"""

from __future__ import annotations

import atexit
import datetime as dt
import itertools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import util as multiprocessing_util
from typing import Any

import sqlalchemy as sa

from loom.audit.log import AuditLog
from loom.db import reading, utcnow, write_transaction
from loom.events import outbox
from loom.identity.service import users
from loom.integrations import execute, schedules
from loom.integrations.context import DELIVERIES_WRITTEN, wake_workers
from loom.integrations.execute import Outcome
from loom.integrations.models import attempts, deliveries, job_schedules
from loom.integrations.schedules import scheduled_rules
from loom.plugins.jobs import ScheduledJob, registry, run_job, zone_of
from loom.plugins.outbox import deliver_pending

log = logging.getLogger(__name__)

#: how long a claim stands before another worker may take the delivery over
#: (LOOM_DELIVERY_LEASE_SECONDS): longer than any action should take
DEFAULT_LEASE = dt.timedelta(minutes=5)
#: seconds between looks for due work when nothing wakes the worker (LOOM_WORKER_POLL_INTERVAL)
DEFAULT_POLL_INTERVAL = 1.0
#: deliveries one claim takes
BATCH = 10
#: the longest wait between two attempts of a delivery
MAX_BACKOFF = dt.timedelta(hours=1)
#: seconds the in-process worker is given to finish its delivery when its process stops
STOP_SECONDS = 20.0

#: set when work was enqueued in this process (``loom.integrations.context.wake_workers``,
#: which a commit that wrote deliveries calls), so waiting workers look at once
_wake = DELIVERIES_WRITTEN
_ids = itertools.count(1)


def notify() -> None:
    """Wake this process's workers: call after committing a transaction that wrote deliveries."""
    wake_workers()


def request_stop(stop: threading.Event) -> None:
    """Ask workers running with ``stop`` to end once their current delivery is recorded."""
    stop.set()
    _wake.set()


def new_worker_id(thread: str | None = None) -> str:
    """A name no other worker has: host, process, thread (by default this one) and a counter."""
    host = socket.gethostname()[:100]
    return f"{host}:{os.getpid()}:{(thread or threading.current_thread().name)[:40]}:{next(_ids)}"


def backoff(kind: str, first: dt.timedelta, attempts: int, rng: random.Random | None = None) -> dt.timedelta:
    """The wait before the next attempt of a delivery that failed ``attempts`` times:
    ``fixed``, always ``first``; ``exponential``, ``first`` doubled after each failure, at
    most an hour, of which a random amount between half and the whole is taken (so that
    deliveries failing together do not all come back at once)."""
    if kind == "fixed":
        return first
    ceiling = min(first * 2 ** max(attempts - 1, 0), MAX_BACKOFF)
    return ceiling * (rng or random).uniform(0.5, 1.0)


def _utc(value: dt.datetime | None) -> dt.datetime:
    value = value or utcnow()
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# -- claiming and finishing --------------------------------------------------------------

def claim(engine: sa.Engine, worker_id: str, *, limit: int, lease: dt.timedelta, now: dt.datetime | None = None,
          audit: AuditLog | None = None) -> list[sa.Row]:
    """Claim up to ``limit`` due deliveries for ``worker_id`` until ``now + lease``: those
    pending whose ``available_at`` has come, and those running whose lease ran out (their
    open attempt is recorded as ``lost``; one whose lost attempt was its last is dead
    instead). Returns the claimed rows, ``attempts`` counting the attempt about to be made."""
    now = _utc(now)
    audit = audit or AuditLog(engine)
    d = deliveries
    # two reads, each an index range that stops at ``limit`` however long the backlog:
    # the few deliveries whose lease ran out first, then the pending ones, oldest first
    lapsed = sa.select(d).where(d.c.status == "running", d.c.lease_until < now).order_by(d.c.lease_until, d.c.id)
    pending = sa.select(d).where(d.c.status == "pending", d.c.available_at <= now).order_by(d.c.available_at,
                                                                                          d.c.id)
    if not _any(engine, lapsed, pending):  # an idle worker never takes the write lock
        return []
    with write_transaction(engine) as conn:
        rows = []
        for query in (lapsed, pending):
            if len(rows) >= limit:
                break
            query = query.limit(limit - len(rows))
            if engine.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows.extend(conn.execute(query).all())
        if not rows:
            return []
        taken: list[sa.Row] = []
        for row in rows:
            if row.status == "running" and not _take_over(conn, audit, row, now):
                continue
            taken.append(row)
        if not taken:
            return []
        ids = [row.id for row in taken]
        conn.execute(d.update().where(d.c.id.in_(ids)).values(
            status="running", lease_owner=worker_id, lease_until=now + lease, attempts=d.c.attempts + 1))
        conn.execute(attempts.insert(), [{"delivery_id": row.id, "attempt": row.attempts + 1, "worker": worker_id,
                                          "started_at": now} for row in taken])
        return conn.execute(sa.select(d).where(d.c.id.in_(ids)).order_by(d.c.available_at, d.c.id)).all()


def _any(engine: sa.Engine, *queries: sa.Select) -> bool:
    """Whether any of ``queries`` finds a row, read without a transaction."""
    with reading(engine) as conn:
        return any(conn.execute(query.with_only_columns(query.selected_columns[0]).limit(1)).first() is not None
                   for query in queries)


def release(engine: sa.Engine, worker_id: str, delivery_ids: list[int]) -> None:
    """Give back deliveries ``worker_id`` claimed but did not start (it is stopping): they
    are pending again at once, their unmade attempt neither counted nor recorded."""
    if not delivery_ids:
        return
    d = deliveries
    with write_transaction(engine) as conn:
        mine = list(conn.execute(sa.select(d.c.id, d.c.attempts).where(
            d.c.id.in_(delivery_ids), d.c.status == "running", d.c.lease_owner == worker_id)))
        for row in mine:
            conn.execute(attempts.delete().where(attempts.c.delivery_id == row.id,
                                                 attempts.c.attempt == row.attempts, attempts.c.worker == worker_id))
            conn.execute(d.update().where(d.c.id == row.id).values(
                status="pending", lease_owner=None, lease_until=None, attempts=row.attempts - 1))


def _take_over(conn: sa.Connection, audit: AuditLog, row: sa.Row, now: dt.datetime) -> bool:
    """Record the open attempt of a delivery whose lease ran out as lost; False (and the
    delivery dead) when that was its last attempt."""
    error = (f"the worker {row.lease_owner} did not finish this attempt before its lease ran out "
             "(it stopped, or lost the database)")
    conn.execute(attempts.update().where(attempts.c.delivery_id == row.id, attempts.c.attempt == row.attempts,
                                         attempts.c.outcome.is_(None))
                 .values(outcome="lost", finished_at=now, error=error))
    _audit_attempt(conn, audit, row, attempt=row.attempts, outcome="lost", error=error, worker=row.lease_owner)
    if row.attempts < row.max_attempts:
        return True
    conn.execute(deliveries.update().where(deliveries.c.id == row.id).values(
        status="dead", lease_owner=None, lease_until=None, finished_at=now, last_error=error))
    return False


def finish(engine: sa.Engine, worker_id: str, delivery_id: int, outcome: Outcome, *,
           now: dt.datetime | None = None, audit: AuditLog | None = None,
           rng: random.Random | None = None) -> bool:
    """Record ``outcome`` of the attempt ``worker_id`` made at a delivery it claimed, its
    attempt row and audit entry with it. False, and nothing recorded, when the claim no
    longer stands (the lease ran out and another worker took the delivery over)."""
    now = _utc(now)
    audit = audit or AuditLog(engine)
    d = deliveries
    query = sa.select(d).where(d.c.id == delivery_id)
    if engine.dialect.name == "postgresql":
        query = query.with_for_update()
    with write_transaction(engine) as conn:
        row = conn.execute(query).first()
        if row is None or row.status != "running" or row.lease_owner != worker_id:
            log.warning("the outcome (%s) of delivery %s by %s is dropped: its lease was lost to %s", outcome.kind,
                        delivery_id, worker_id, row.lease_owner if row is not None else "nobody")
            return False
        kind = outcome.kind
        if kind == "failed" and row.attempts >= row.max_attempts:
            kind = "dead"
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if kind == "succeeded":
            values.update(status="succeeded", result=outcome.result, last_error=None, finished_at=now)
        elif kind == "failed":
            wait = backoff(row.backoff, dt.timedelta(seconds=row.backoff_seconds), row.attempts, rng)
            values.update(status="pending", available_at=now + wait, last_error=outcome.error)
        else:
            values.update(status="dead", last_error=outcome.error, finished_at=now)
        conn.execute(d.update().where(d.c.id == delivery_id).values(**values))
        conn.execute(attempts.update().where(attempts.c.delivery_id == delivery_id,
                                             attempts.c.attempt == row.attempts)
                     .values(finished_at=now, outcome=kind, error=outcome.error, duration_ms=outcome.duration_ms))
        _audit_attempt(conn, audit, row, attempt=row.attempts, outcome=kind, error=outcome.error, worker=worker_id,
                       duration_ms=outcome.duration_ms)
    return True


def _audit_attempt(conn: sa.Connection, audit: AuditLog, row: sa.Row, *, attempt: int, outcome: str,
                   error: str | None, worker: str | None, duration_ms: float | None = None) -> None:
    """The audit entry of one attempt, made as the rule's user (by name, even when that
    user no longer exists)."""
    actor_id = conn.execute(sa.select(users.c.id).where(users.c.username == row.run_as)).scalar()
    audit.add(conn, "delivery.attempt", actor=row.run_as, actor_id=actor_id, entity=row.entity,
              record_id=row.record_id, outcome="ok" if outcome == "succeeded" else "error",
              detail={"delivery": row.id, "rule": row.rule, "action": row.action, "plugin": row.plugin,
                      "attempt": attempt, "outcome": outcome, "error": error, "duration_ms": duration_ms,
                      "worker": worker})


class LeaseKeeper:
    """Renews a worker's claim on a delivery while its action runs: every third of the
    lease, the claim is extended to a whole lease from then, as long as it is still this
    worker's. So only a worker that stopped (died, or hangs with its process) loses a
    delivery to another, however long its action takes."""

    def __init__(self, engine: sa.Engine, worker_id: str, delivery_id: int, lease: dt.timedelta):
        self.engine, self.worker_id, self.delivery_id, self.lease = engine, worker_id, delivery_id, lease
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"loom-lease-{delivery_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        d = deliveries
        while not self._done.wait(self.lease.total_seconds() / 3):
            try:
                with write_transaction(self.engine) as conn:
                    renewed = conn.execute(d.update().where(d.c.id == self.delivery_id, d.c.status == "running",
                                                            d.c.lease_owner == self.worker_id)
                                           .values(lease_until=utcnow() + self.lease)).rowcount
            except sa.exc.DBAPIError:  # the database is away: try again at the next third
                log.warning("could not renew the lease of %s on delivery %s", self.worker_id, self.delivery_id,
                            exc_info=True)
                continue
            if not renewed:
                return


# -- scheduled jobs ----------------------------------------------------------------------

def _take_job_run(engine: sa.Engine, job: ScheduledJob, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
    """The time ``job`` was due at, when this worker is to run it now: it is due, and this
    worker moved its next run on first (a compare-and-set on ``next_run_at``); else None.
    A job seen for the first time is due at once when it runs at an interval, at its next
    match when it has a cron expression. Runs missed while no worker looked are not made
    up: the next run is worked out from now."""
    t = job_schedules
    schedule = job.description
    with reading(engine) as conn:  # most looks find it not due: no write lock for those
        seen = conn.execute(sa.select(t.c.schedule, t.c.next_run_at).where(t.c.name == job.name)).first()
    if seen is not None and seen.schedule == schedule and _utc(seen.next_run_at) > now:
        return None
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(t).where(t.c.name == job.name)).first()
        if row is None or row.schedule != schedule:
            first = now if isinstance(job.schedule, dt.timedelta) else _utc(job.next_run(now, zone))
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(t.insert().values(name=job.name, plugin=job.plugin, schedule=schedule,
                                                       next_run_at=first))
                except sa.exc.IntegrityError:  # another worker saw it first
                    return None
            else:
                conn.execute(t.update().where(t.c.name == job.name).values(schedule=schedule, next_run_at=first))
            due_at = first
        else:
            due_at = _utc(row.next_run_at)
        if due_at > now:
            return None
        moved = conn.execute(t.update().where(t.c.name == job.name, t.c.next_run_at == due_at).values(
            next_run_at=_utc(job.next_run(now, zone)), last_run_at=now, plugin=job.plugin))
        return due_at if moved.rowcount == 1 else None


def _record_run(engine: sa.Engine, name: str, started: float, error: str | None) -> None:
    with write_transaction(engine) as conn:
        conn.execute(job_schedules.update().where(job_schedules.c.name == name).values(
            last_outcome="ok" if error is None else "error", last_error=error,
            last_duration_ms=round((time.perf_counter() - started) * 1000, 3)))


def run_due_jobs(app, *, now: dt.datetime | None = None) -> list[str]:
    """Run every plugin job that is due (``scheduled_jobs`` hook), each audited as
    ``job.run``; returns the names of those run. A job that fails is logged and recorded
    (``last_outcome``), and runs again at its next time."""
    loom = app.extensions["loom"]
    try:
        jobs = registry(loom.plugins)
    except (TypeError, ValueError) as error:
        log.error("scheduled jobs are not run: %s", error)
        return []
    if not jobs:
        return []
    now = _utc(now)
    zone = zone_of(app)
    ran = []
    for job in jobs.values():
        if _take_job_run(loom.engine, job, now, zone) is None:
            continue
        started, error_text = time.perf_counter(), None
        try:
            with app.app_context():
                run_job(job, loom.audit)
        except Exception as error:  # logged and audited by run_job; the worker goes on
            error_text = f"{type(error).__name__}: {error}"[:execute.ERROR_WIDTH]
        _record_run(loom.engine, job.name, started, error_text)
        ran.append(job.name)
    return ran


def run_due_rules(app, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Fire every scheduled rule of the live metadata whose time has come, once per due
    time however many workers look, with the time it was due at (``schedules.fire``);
    returns how many deliveries each rule fired wrote. Its schedule is kept as
    ``rule:<name>`` beside the plugins' jobs."""
    loom = app.extensions["loom"]
    rules = scheduled_rules(loom.metadata.live().model)
    if not rules:
        return {}
    now = _utc(now)
    zone = zone_of(app)
    fired = {}
    for rule in rules:
        job = ScheduledJob("loom", f"rule:{rule.name}", rule.trigger.cron or "", lambda: None)
        due_at = _take_job_run(loom.engine, job, now, zone)
        if due_at is None:
            continue
        started, error_text = time.perf_counter(), None
        try:
            with app.app_context():
                fired[rule.name] = schedules.fire(app, rule, due_at)
        except Exception as error:  # a database that went away: the next due time tries again
            log.exception("scheduled rule %s failed at %s", rule.name, due_at)
            error_text = f"{type(error).__name__}: {error}"[:execute.ERROR_WIDTH]
        _record_run(loom.engine, job.name, started, error_text)
    if any(fired.values()):
        notify()
    return fired


# -- the worker --------------------------------------------------------------------------

@dataclass
class Report:
    """What a worker did: deliveries by outcome, outbox events handed out, jobs run."""

    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    #: outcomes not recorded because the lease had run out and another worker took over
    dropped: int = 0
    #: deliveries sent to the broker, to run as Celery tasks
    sent: int = 0
    events: int = 0
    jobs: list[str] = field(default_factory=list)
    #: scheduled rules fired, with the deliveries each wrote
    rules: dict[str, int] = field(default_factory=dict)

    def add(self, other: Report) -> None:
        for name in ("claimed", "succeeded", "retried", "dead", "dropped", "sent", "events"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.jobs.extend(other.jobs)
        self.rules.update(other.rules)

    @property
    def summary(self) -> str:
        done = (f"{self.sent} sent to the broker" if self.sent else
                f"{self.succeeded} succeeded, {self.retried} to try again, {self.dead} dead")
        return (f"{self.claimed} delivery(ies): {done}"
                + (f", {self.dropped} outcome(s) dropped (lease lost)" if self.dropped else "")
                + f"; {self.events} outbox event(s); {len(self.jobs)} job(s) run; "
                f"{len(self.rules)} scheduled rule(s) fired")


#: sends due deliveries elsewhere instead of running them: ``dispatch(app, limit=, lease=,
#: now=)`` claims up to ``limit`` and returns how many it sent (``loom.integrations.tasks.dispatch_due``)
Dispatch = Callable[..., int]


class Worker:
    """One worker of ``app``: claims deliveries and runs them one after another. With
    ``housekeeping`` it also fires due scheduled rules, hands out due outbox events and
    runs due scheduled jobs. With ``dispatch`` it sends due deliveries on (to Celery's
    broker) instead of running them."""

    def __init__(self, app, *, worker_id: str | None = None, lease: dt.timedelta | None = None,
                 batch: int = BATCH, housekeeping: bool = True, dispatch: Dispatch | None = None):
        self.app = app
        self.dispatch = dispatch
        self.loom = app.extensions["loom"]
        self.id = worker_id or new_worker_id()
        seconds = app.config.get("DELIVERY_LEASE_SECONDS")
        self.lease = lease or (dt.timedelta(seconds=seconds) if seconds else DEFAULT_LEASE)
        self.batch = batch
        self.housekeeping = housekeeping

    def run_once(self, limit: int | None = None, *, now: dt.datetime | None = None,
                 stop: threading.Event | None = None) -> Report:
        """Claim up to ``limit`` due deliveries, run each and record its outcome. Once
        ``stop`` is set, the claimed deliveries not yet started are given back."""
        report = Report()
        engine, audit = self.loom.engine, self.loom.audit
        if self.dispatch is not None:
            report.claimed = report.sent = self.dispatch(self.app, limit=limit or self.batch, lease=self.lease,
                                                         now=now)
            return report
        claimed = claim(engine, self.id, limit=limit or self.batch, lease=self.lease, now=now, audit=audit)
        for index, row in enumerate(claimed):
            if stop is not None and stop.is_set():
                release(engine, self.id, [r.id for r in claimed[index:]])
                break
            report.claimed += 1
            with LeaseKeeper(engine, self.id, row.id, self.lease):
                outcome = execute.run(self.app, row)
            if not finish(engine, self.id, row.id, outcome, now=now, audit=audit):
                report.dropped += 1
                continue
            if outcome.kind == "succeeded":
                report.succeeded += 1
            elif outcome.kind == "failed" and row.attempts < row.max_attempts:
                report.retried += 1
            else:
                report.dead += 1
        return report

    def run_due(self, *, now: dt.datetime | None = None, stop: threading.Event | None = None) -> Report:
        """With housekeeping, fire the scheduled rules that are due; run deliveries until
        none is due (or ``stop`` is set); then, with housekeeping, hand out the due outbox
        events and run the due scheduled jobs."""
        report = Report()
        if self.housekeeping:
            report.rules = run_due_rules(self.app, now=now)
        while stop is None or not stop.is_set():
            done = self.run_once(now=now, stop=stop)
            report.add(done)
            if done.claimed < self.batch:
                break
        if self.housekeeping and (stop is None or not stop.is_set()):
            due_events = sa.select(outbox.c.id).where(outbox.c.status == "pending", outbox.c.available_at <= _utc(now))
            if _any(self.loom.engine, due_events):
                report.events = deliver_pending(self.loom.engine, self.loom.plugins, now=now).claimed
            report.jobs = run_due_jobs(self.app, now=now)
        return report

    def run_forever(self, stop: threading.Event, poll_interval: float | None = None) -> None:
        """Run what is due, then wait ``poll_interval`` seconds or until ``notify()``, until
        ``stop`` is set (``request_stop``); the delivery under way is finished first."""
        if poll_interval is None:
            poll_interval = self.app.config.get("WORKER_POLL_INTERVAL") or DEFAULT_POLL_INTERVAL
        while not stop.is_set():
            _wake.clear()
            try:
                self.run_due(stop=stop)
            except Exception:  # a database that went away: try again after the wait
                log.exception("worker %s: a round failed; trying again in %s s", self.id, poll_interval)
            if stop.is_set():
                break
            _wake.wait(poll_interval)


def run_threads(app, *, concurrency: int, stop: threading.Event, once: bool = False,
                poll_interval: float | None = None, dispatch: Dispatch | None = None) -> Report:
    """Run ``concurrency`` workers of ``app``, each in a thread of its own, until ``stop``
    is set, or with ``once`` until nothing is due; the first also fires scheduled rules,
    runs the outbox and the scheduled jobs; with ``dispatch``, deliveries are sent on
    rather than run. Returns what they did together; with ``once``, what made a worker
    fail is raised."""
    reports = [Report() for _ in range(concurrency)]
    failures: list[Exception] = []

    def work(index: int) -> None:
        worker = Worker(app, housekeeping=index == 0, dispatch=dispatch)
        if not once:
            worker.run_forever(stop, poll_interval)
            return
        try:
            reports[index] = worker.run_due(stop=stop)
        except Exception as error:  # raised again below, in the caller's thread
            log.debug("worker %s failed", worker.id, exc_info=True)
            failures.append(error)

    threads = [threading.Thread(target=work, args=(i,), name=f"loom-worker-{i + 1}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # joined in slices, so the signal handlers of the caller run
            thread.join(0.5)
    if failures:
        raise failures[0]
    total = Report()
    for report in reports:
        total.add(report)
    return total


@dataclass
class InProcessWorker:
    """The worker thread ``loom serve`` runs beside the requests of each process."""

    thread: threading.Thread
    stop_event: threading.Event

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Stop it once its current delivery is recorded; whether it ended within ``timeout``."""
        request_stop(self.stop_event)
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_in_process(app, *, registrar: Callable[[Callable[[], Any]], Any] = atexit.register,
                     dispatch: Dispatch | None = None) -> InProcessWorker:
    """Start one worker of ``app`` in a daemon thread of this process, stopped when the
    process ends (``registrar`` registers that; also with ``multiprocessing``'s finalizers,
    which a server's worker process runs instead of ``atexit``)."""
    stop = threading.Event()
    worker = Worker(app, worker_id=new_worker_id("loom-worker"), dispatch=dispatch)
    thread = threading.Thread(target=worker.run_forever, args=(stop,), name="loom-worker", daemon=True)
    thread.start()
    handle = InProcessWorker(thread, stop)
    registrar(handle.stop)
    multiprocessing_util.Finalize(None, handle.stop, exitpriority=10)
    return handle
