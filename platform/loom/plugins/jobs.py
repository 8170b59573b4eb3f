"""Scheduled jobs plugins declare (``scheduled_jobs`` hook): a registry that knows each
job's schedule and when it runs next, and runs a job now. Running jobs on time is the
worker's business; this is what it (and ``loom jobs``) builds on."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pluggy
from croniter import croniter

from loom.plugins import plugin_name

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class ScheduledJob:
    """A job of ``plugin``: a cron expression or an interval, and what to run."""

    plugin: str
    name: str
    schedule: str | dt.timedelta
    run: Callable[[], Any]

    @property
    def description(self) -> str:
        if isinstance(self.schedule, dt.timedelta):
            return f"every {_interval_text(self.schedule)}"
        return f"cron {self.schedule}"

    def next_run(self, after: dt.datetime, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
        """The first time after ``after`` (aware) the job is due: for an interval, one
        interval after ``after`` (the worker passes the last run); for a cron expression,
        its next match, read in ``zone``."""
        if after.tzinfo is None:
            raise ValueError("next_run needs an aware datetime")
        if isinstance(self.schedule, dt.timedelta):
            return after + self.schedule
        return croniter(self.schedule, after.astimezone(zone)).get_next(dt.datetime)


def _interval_text(interval: dt.timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def _schedule(plugin: str, name: str, schedule: Any) -> str | dt.timedelta:
    if isinstance(schedule, bool):
        raise ValueError(f"job {name} of {plugin}: the schedule must be a cron expression or an interval")
    if isinstance(schedule, int | float):
        schedule = dt.timedelta(seconds=schedule)
    if isinstance(schedule, dt.timedelta):
        if schedule < dt.timedelta(seconds=1):
            raise ValueError(f"job {name} of {plugin}: the interval must be at least a second")
        return schedule
    if isinstance(schedule, str) and croniter.is_valid(schedule):
        return schedule
    raise ValueError(f"job {name} of {plugin}: {schedule!r} is neither a cron expression (such as "
                     "'*/15 * * * *') nor an interval (a timedelta or seconds)")


def registry(manager: pluggy.PluginManager) -> dict[str, ScheduledJob]:
    """Every plugin's jobs by name, each checked: a usable name, a valid schedule, a
    callable, and no name twice."""
    jobs: dict[str, ScheduledJob] = {}
    for impl in reversed(manager.hook.scheduled_jobs.get_hookimpls()):
        plugin = plugin_name(manager, impl.plugin)
        for entry in impl.function() or ():
            if not (isinstance(entry, tuple | list) and len(entry) == 3 and isinstance(entry[0], str)
                    and callable(entry[2])):
                raise TypeError(f"scheduled_jobs of {plugin} must return (name, schedule, callable), "
                                f"not {entry!r}")
            name, schedule, run = entry
            if not _NAME.match(name):
                raise ValueError(f"job names are lower case letters, digits, '_', '-' and '.': not {name!r} "
                                 f"(of {plugin})")
            if name in jobs:
                raise ValueError(f"two jobs are named {name} ({jobs[name].plugin} and {plugin})")
            jobs[name] = ScheduledJob(plugin, name, _schedule(plugin, name, schedule), run)
    return jobs


def run_job(job: ScheduledJob, audit) -> None:
    """Run ``job`` now, audited as ``job.run`` (``ok``, or ``error`` with the exception's
    type); the exception is raised again for the caller to report."""
    actor = f"system:job:{job.name}"
    try:
        job.run()
    except Exception as error:
        log.exception("job %s of %s failed", job.name, job.plugin)
        audit.add_alone("job.run", actor=actor, outcome="error",
                        detail={"job": job.name, "plugin": job.plugin, "error": type(error).__name__})
        raise
    audit.add_alone("job.run", actor=actor, detail={"job": job.name, "plugin": job.plugin})


def zone_of(app) -> dt.tzinfo:
    """The time zone cron expressions are read in: the app's ``LOOM_TIMEZONE``."""
    return ZoneInfo(app.config.get("BABEL_DEFAULT_TIMEZONE") or "UTC")
