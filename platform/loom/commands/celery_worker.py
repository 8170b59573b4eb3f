"""The Celery app of the Loom instance the environment names (``LOOM_*`` settings, with
``LOOM_BROKER_URL``), for Celery's own worker command:

    celery -A loom.commands.celery_worker worker --pool threads --concurrency 4

It runs the ``loom.deliver`` tasks that ``loom worker`` (or ``loom serve``'s worker
thread) sends for due deliveries (``loom.integrations.tasks``)."""

from __future__ import annotations

from loom.app import create_app
from loom.integrations.tasks import celery_app

loom_app = create_app()
if not loom_app.config.get("BROKER_URL"):
    raise SystemExit("error: set LOOM_BROKER_URL (redis://... or amqp://...) to the broker loom worker sends to")
#: what ``celery -A`` looks for (``app``, then ``celery``): the Celery app, not the Flask one
app = celery = celery_app(loom_app)
