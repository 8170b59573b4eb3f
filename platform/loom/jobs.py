"""Background jobs: work a request starts and does not wait for (an import of a file).

``submit(app, name, fn, **arguments)`` runs ``fn(app, **arguments)`` in a thread of its
own, inside the app's context and nothing more: no request, no signed-in user, no
session. So a job function gets everything it needs as arguments — who acts (a
``Principal``), the interface language, the ids of what to work on — and reads nothing
from ``flask.request`` or ``flask.g``. That is what lets the same job functions run later
in a worker process (from the outbox, or as Celery tasks) instead of a thread of the web
process: a worker has an app too, and the arguments are plain values.

A job records its own outcome where its users look (an import its job row); a failure it
does not catch is logged here, with the job's name, and never reaches the request that
started it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask

log = logging.getLogger("loom.jobs")


@dataclass(frozen=True)
class Job:
    """A submitted job: its name and the thread that runs it."""

    name: str
    thread: threading.Thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job to end (at most ``timeout`` seconds); whether it has."""
        self.thread.join(timeout)
        return not self.thread.is_alive()


def run_job(app: Flask, name: str, fn: Callable[..., Any], **arguments: Any) -> None:
    """Run one job now, in this thread, the way a background job runs: inside the app's
    context only, its failure logged rather than raised."""
    with app.app_context():
        try:
            fn(app, **arguments)
        except Exception:  # a job's failure must not end the thread silently
            log.exception("background job %s failed", name)


def submit(app: Flask, name: str, fn: Callable[..., Any], /, **arguments: Any) -> Job:
    """Start ``fn(app, **arguments)`` in the background and return at once. ``name`` says
    which job it is in logs and thread listings (``import-42``)."""
    thread = threading.Thread(target=run_job, args=(app, name, fn), kwargs=arguments,
                              name=f"loom-job-{name}", daemon=True)
    thread.start()
    return Job(name, thread)
