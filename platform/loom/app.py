"""The app factory: wires configuration, database, metadata, plugins and blueprints
together. It holds no logic of its own."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
import sqlalchemy as sa
from flask import Flask, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from loom import config as settings
from loom import edge
from loom.audit.log import AuditLog
from loom.audit.refusals import log_refusal
from loom.db import create_engine
from loom.errors import LoomError
from loom.identity import auth
from loom.identity.service import IdentityService
from loom.plugins import flatten, plugin_manager
from loom.plugins import webhooks as plugin_webhooks
from loom.plugins.metadata import directory_loader
from loom.plugins.settings import PluginSettings, previous_keys_setting
from loom.problems import problem
from loom.records.query import Cursors
from loom.schema.service import MetadataService

log = logging.getLogger("loom")


@dataclass
class Loom:
    """The running Loom inside a Flask app: ``current_app.extensions['loom']``."""

    engine: sa.Engine
    metadata: MetadataService
    identity: IdentityService
    audit: AuditLog
    plugins: pluggy.PluginManager
    cursors: Cursors
    page_size: int
    max_page_size: int
    #: endpoints reachable without signing in: Loom's own and those plugins open
    public_endpoints: frozenset[str] = frozenset()
    #: endpoints a read-only token may write to: Loom's own and those plugins name
    read_only_endpoints: frozenset[str] = frozenset()
    #: every plugin's settings (``plugin_settings_schema`` hook)
    settings: PluginSettings | None = None
    #: inbound webhooks by (plugin, name) (``webhooks`` hook)
    webhooks: dict[tuple[str, str], plugin_webhooks.Webhook] = field(default_factory=dict)
    #: the time zone of LOOM_TIMEZONE (an IANA name)
    time_zone: str = "UTC"


def _secret_key(instance: Path) -> str:
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _time_zone(name: str) -> str:
    import pytz

    try:
        pytz.timezone(name)
    except pytz.UnknownTimeZoneError:
        raise ValueError(f"LOOM_TIMEZONE: there is no time zone named '{name}'; "
                         "use an IANA name such as Asia/Shanghai or Europe/Berlin") from None
    return name


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build a Loom app. ``config`` overrides settings read from ``LOOM_*`` variables;
    ``PLUGINS`` (a list of objects) registers extra plugins, ``DISCOVER_PLUGINS=False``
    skips the installed ones."""
    values = settings.from_environment()
    values.update(config or {})
    instance = Path(values["INSTANCE_PATH"]).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    app = Flask("loom", instance_path=str(instance))
    app.config.update(values)
    # first: hostile input is refused, and the request has its id, before anything reads it
    edge.install(app)
    app.config["SECRET_KEY"] = values.get("SECRET_KEY") or _secret_key(instance)
    app.config["MAX_CONTENT_LENGTH"] = values["MAX_CONTENT_LENGTH"]
    url = values.get("DATABASE_URL") or f"sqlite:///{instance / 'loom.db'}"
    app.config["DATABASE_URL"] = url
    app.config["BABEL_DEFAULT_TIMEZONE"] = _time_zone(values.get("TIMEZONE") or "UTC")
    hops = int(values.get("PROXY_HOPS") or 0)
    if hops > 0:
        # only as many forwarded entries as there are proxies of ours: a client cannot
        # choose the address the audit log records by sending the header itself
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    engine = values.get("ENGINE") or create_engine(
        url, sqlite_synchronous=values.get("SQLITE_SYNCHRONOUS") or "NORMAL",
        pool_size=values.get("DB_POOL_SIZE") or settings.SERVE_THREADS, max_overflow=values["DB_MAX_OVERFLOW"])
    metadata = MetadataService(engine, values["METADATA_CHECK_INTERVAL"])
    plugins = plugin_manager(values.get("PLUGINS", ()), discover=values.get("DISCOVER_PLUGINS", True),
                             enabled=values.get("PLUGINS_ENABLED", ""), disabled=values.get("PLUGINS_DISABLED", ""))
    metadata.directory_loader = directory_loader(plugins)
    app.extensions["loom"] = Loom(
        engine=engine,
        metadata=metadata,
        identity=IdentityService(engine, metadata.audit),
        audit=metadata.audit,
        plugins=plugins,
        cursors=Cursors(app.config["SECRET_KEY"]),
        time_zone=app.config["BABEL_DEFAULT_TIMEZONE"],
        page_size=values["PAGE_SIZE"],
        max_page_size=values["MAX_PAGE_SIZE"],
        public_endpoints=auth.PUBLIC_ENDPOINTS | frozenset(flatten(plugins.hook.public_endpoints())),
        read_only_endpoints=auth.READ_ONLY_ALLOWED | frozenset(flatten(plugins.hook.read_only_endpoints())),
        settings=PluginSettings(engine, app.config["SECRET_KEY"], plugins, metadata.audit,
                                settings_key=values.get("SETTINGS_KEY") or None,
                                previous_keys=previous_keys_setting(values.get("SETTINGS_PREVIOUS_KEYS"))),
        webhooks=plugin_webhooks.collect(flatten(plugins.hook.webhooks())),
    )

    from loom.audit.api import audit_api
    from loom.identity.admin import admin
    from loom.identity.api import auth as auth_api
    from loom.integrations.api import deliveries_api
    from loom.plugins.api import settings_api
    from loom.records.api import api
    from loom.records.uploading import uploads_api
    from loom.schema.api import metadata_api

    auth.install(app)
    app.register_blueprint(auth_api)
    app.register_blueprint(admin)
    app.register_blueprint(api)
    app.register_blueprint(uploads_api)
    app.register_blueprint(audit_api)
    app.register_blueprint(deliveries_api)
    app.register_blueprint(settings_api)
    app.register_blueprint(metadata_api)
    app.register_blueprint(plugin_webhooks.webhooks)
    for blueprint in flatten(plugins.hook.register_blueprints()):
        app.register_blueprint(blueprint)
    plugins.hook.register_commands(cli=app.cli)
    _register_error_handlers(app)

    @app.after_request
    def _headers(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    plugins.hook.startup(app=app)
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(LoomError)
    def _loom_error(exc: LoomError):
        log_refusal(exc)  # a refusal outside the record service's own logging
        response = problem(exc.status, exc.title, exc.detail, exc.type, exc.errors, code=exc.code, params=exc.params)
        if getattr(exc, "retry_after", None):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        detail = exc.description or exc.name
        if exc.code == 413:
            detail = f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"
        return problem(exc.code or 500, exc.name, detail)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error in %s %s", request.method, request.path)
        return problem(500, "Internal error",
                        "something went wrong on our side; the request id identifies it in the server log")


