"""Configuration: every setting is declared once here, with its default and help text.

Values come from the environment (``LOOM_<NAME>``); ``create_app(config=...)`` overrides
them, which is how tests and embedding code configure an app.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str
    parse: type = str


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", None,
            "SQLAlchemy URL of the database; defaults to SQLite file loom.db in the instance folder."),
    Setting("SECRET_KEY", None,
            "Key that signs sessions and pagination cursors; generated into the instance folder when unset."),
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
)


def from_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Read every declared setting from ``LOOM_*`` environment variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(f"LOOM_{setting.name}")
        values[setting.name] = setting.default if raw in (None, "") else setting.parse(raw)
    return values
