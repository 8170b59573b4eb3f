"""Configuration: every setting is declared once here, with its default and help text.

Values come from the environment (``LOOM_<NAME>``); ``create_app(config=...)`` overrides
them, which is how tests and embedding code configure an app.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: request threads of each ``loom serve`` worker; also, unless LOOM_DB_POOL_SIZE says
#: otherwise, the database connections each process keeps, so every thread can hold one
SERVE_THREADS = 8


class SettingError(ValueError):
    """A ``LOOM_*`` variable whose value cannot be used; the message names it and says what it takes."""


def _count(minimum: int) -> Callable[[str], int]:
    """A parser of whole numbers no smaller than ``minimum``."""
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise ValueError(f"'{raw}' is not a whole number of at least {minimum}")
        return value
    return parse


def _switch(raw: str) -> bool:
    """on or off (also true/false, yes/no, 1/0)."""
    lowered = raw.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise ValueError(f"'{raw}' is neither on nor off")


def _seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value < 86400:
        raise ValueError(f"'{raw}' is not a number of seconds above 0 (and below a day)")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", None,
            "SQLAlchemy URL of the database; defaults to SQLite file loom.db in the instance folder."),
    Setting("SECRET_KEY", None,
            "Key that signs sessions and pagination cursors; generated into the instance folder when unset."),
    Setting("SETTINGS_KEY", None,
            "Key plugin settings' secrets are sealed with: a Fernet key (44 characters of URL-safe base64), or "
            "any secret a key is derived from. Unset: derived from LOOM_SECRET_KEY."),
    Setting("SETTINGS_PREVIOUS_KEYS", "",
            "Earlier values of LOOM_SETTINGS_KEY (or of LOOM_SECRET_KEY, when that sealed them), comma-separated: "
            "secrets sealed under them stay readable until `loom settings rotate` seals them under the current key."),
    Setting("INSTANCE_PATH", "instance",
            "Folder for the embedded database, generated secrets and uploaded files."),
    Setting("MAX_CONTENT_LENGTH", 16 * 1024 * 1024,
            "Largest request body accepted, in bytes; larger ones get 413.", int),
    Setting("PAGE_SIZE", 50, "Default number of records in one list page.", int),
    Setting("MAX_PAGE_SIZE", 500, "Largest page a list request may ask for.", int),
    Setting("TIMEZONE", "UTC",
            "Time zone the screens show and read times in: an IANA name such as Asia/Shanghai."),
    Setting("PROXY_HOPS", 0,
            "Reverse proxies in front of Loom whose X-Forwarded-For and X-Forwarded-Proto headers are "
            "trusted (the audit log records the client address they report); 0 trusts none.", int),
    Setting("PLUGINS_DISABLED", "",
            "Installed plugins (entry-point names, comma-separated) not to load."),
    Setting("PLUGINS_ENABLED", "",
            "Installed plugins that are off unless named (they declare loom_enabled_by_default = False), "
            "comma-separated, to load."),
    Setting("SQLITE_SYNCHRONOUS", "NORMAL",
            "How hard a commit waits for the disk on SQLite: NORMAL (the default) survives a crash of Loom "
            "but may lose the last commits on power loss or an operating-system crash; FULL syncs every "
            "commit to disk, so it survives those too, and each commit takes longer. PostgreSQL ignores it."),
    Setting("METADATA_CHECK_INTERVAL", 0.0,
            "Seconds a process trusts its cached metadata version before asking the database "
            "again; 0 asks on every request.", float),
    Setting("DB_POOL_SIZE", None,
            "Database connections each process keeps open for its requests. Unset: the request threads "
            "of a `loom serve` worker (--threads, 8 by default), so that each thread can hold one.", _count(1)),
    Setting("DB_MAX_OVERFLOW", 10,
            "Connections a process may open beyond LOOM_DB_POOL_SIZE while all of those are busy, each "
            "closed when given back; a few requests hold two for a moment, so keep it above 0. On "
            "PostgreSQL, workers x (pool size + overflow), plus the `loom` commands and the outbox running "
            "beside the server, must stay below the server's max_connections (100 by default).", _count(0)),
    Setting("WORKER", True,
            "Whether `loom serve` (and `loom demo`) runs a worker thread in each process, delivering what "
            "integration rules trigger, outbox events and scheduled jobs: on (the default) or off, for "
            "when `loom worker` runs elsewhere.", _switch),
    Setting("WORKER_POLL_INTERVAL", 1.0,
            "Seconds a worker waits between two looks for due work; a delivery enqueued in the worker's "
            "own process wakes it at once.", _seconds),
    Setting("BROKER_URL", None,
            "A Celery broker (redis://host:6379/0 or amqp://user:password@host:5672//): when set, workers send "
            "due deliveries to it as tasks, and Celery workers (`celery -A loom.commands.celery_worker worker`) "
            "run them; the deliveries table stays the source of truth. Unset: workers run deliveries themselves."),
    Setting("BROKER_QUEUE", "loom",
            "The broker queue Loom's tasks go to; give each Loom instance sharing a broker a queue of its own."),
    Setting("DELIVERY_LEASE_SECONDS", 300,
            "Seconds a worker's claim on a delivery stands; the worker renews it every third of that while "
            "the action runs. When it runs out (the worker died), another worker takes the delivery over "
            "and runs it again.", _count(1)),
)


def from_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Read every declared setting from ``LOOM_*`` environment variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(f"LOOM_{setting.name}")
        values[setting.name] = setting.default if raw in (None, "") else _parse(setting, raw)
    return values


def _parse(setting: Setting, raw: str) -> Any:
    try:
        return setting.parse(raw)
    except ValueError as error:
        expected = {int: "a whole number", float: "a number"}.get(setting.parse)
        reason = f"'{raw}' is not {expected}" if expected else str(error)
        raise SettingError(f"LOOM_{setting.name}: {reason}") from None
