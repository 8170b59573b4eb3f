"""The ``loom`` command: init, serve, demo, metadata, users, tokens, roles, permissions and the audit log;
the plugin host's groups (plugin, outbox, jobs) and the commands plugins add."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from loom.app import create_app
from loom.commands import (
    CommandFailed,
    author_name,
    current_loom,
    fail,
    has_instance,
    needs_instance,
)
from loom.commands.plugins import jobs_group, outbox_group, plugin_group, settings_group
from loom.config import SERVE_THREADS, SettingError
from loom.errors import LoomError, MetadataError
from loom.plugins.migrations import upgrade as upgrade_with_plugins


def upgrade(engine: sa.Engine) -> None:
    """Loom's own tables, then those of the app's plugins (their own revision trees)."""
    upgrade_with_plugins(engine, current_loom().plugins)


_loom = current_loom
_fail = fail
_author = author_name


class LoomGroup(FlaskGroup):
    """The ``loom`` group: whatever goes wrong in a command ends in one line that says what
    to do, never a traceback (``LOOM_DEBUG=1`` shows it, for bug reports)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except LoomError as error:
            raise CommandFailed(error.detail.replace("\n", "; ")) from error
        except SettingError as error:
            raise CommandFailed(str(error)) from None
        except sa.exc.OperationalError as error:
            if os.environ.get("LOOM_DEBUG"):
                raise
            reason = str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
            raise CommandFailed(f"the database did not answer as expected ({reason}); check LOOM_DATABASE_URL "
                                "and that the database server is running") from error
        except Exception as error:
            if os.environ.get("LOOM_DEBUG"):
                raise
            logging.getLogger("loom").debug("command failed", exc_info=True)
            raise CommandFailed(f"{type(error).__name__}: {error} (run with LOOM_DEBUG=1 to see where; "
                                "please report it)") from error


_apps: list = []


def _cli_app():
    app = create_app()
    _apps.append(app)
    return app


def _close_apps() -> None:
    """Return the command's database connections when it ends, however it ends."""
    while _apps:
        _apps.pop().extensions["loom"].engine.dispose()


@click.group(cls=LoomGroup, create_app=_cli_app, add_default_commands=False,
             add_version_option=False, load_dotenv=False, set_debug_flag=False)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Loom: a metadata-driven low-code platform."""
    ctx.call_on_close(_close_apps)


@main.command()
@with_appcontext
def init() -> None:
    """Create or upgrade Loom's own tables (and the plugins') in the configured database,
    and publish the metadata plugins ship that the live metadata lacks."""
    from loom.plugins.metadata import publish_shipped, shipped_folders

    upgrade(_loom().engine)
    _loom().metadata.ensure_ids_never_reused(author="loom init")
    click.echo(f"database ready: {_loom().engine.url.render_as_string(hide_password=True)}")
    try:
        plan = publish_shipped(_loom().metadata, shipped_folders(_loom().plugins), author="system:plugins")
    except LoomError as error:
        _fail(error)
    if plan is not None:
        click.echo(f"published version {plan.to_version} with the plugins' metadata:")
        for line in plan.summary:
            click.echo(f"  {line}")


def _check_port(host: str, port: int) -> None:
    """Fail in one line when the server could not listen on ``host:port``."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise CommandFailed(f"cannot resolve the host '{host}'; use an address such as 127.0.0.1") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandFailed(f"port {port} is in use on {host}; stop what uses it or try "
                                    f"--port {port + 1}") from None
            raise CommandFailed(f"cannot listen on {host}:{port} ({error.strerror}); try another --host "
                                "or --port") from None


#: seconds a worker may take to finish its requests after SIGTERM before it is killed
WORKER_STOP_SECONDS = 30


def _serve(host: str, port: int, threads: int, workers: int = 1) -> None:
    """Serve with granian: this process does the one-time work (port check, upgrade, ids,
    orphan files), then starts ``workers`` processes that each build their own app, engine
    and connection pool with ``loom.app:create_app`` and answer with ``threads`` threads."""
    from granian.constants import Interfaces
    from granian.server import Server

    loom = _loom()
    _check_port(host, port)
    upgrade(loom.engine)
    loom.metadata.ensure_ids_never_reused(author="loom serve")
    _remove_orphan_files()
    pool_size = current_app.config.get("DB_POOL_SIZE") or threads
    _check_connections(loom.engine, workers, pool_size, current_app.config["DB_MAX_OVERFLOW"])
    if workers > 1 and loom.engine.dialect.name == "sqlite":
        click.echo(f"note: {workers} processes write to one SQLite file: their writers take turns in SQLite's busy "
                   "timeout, not in Loom's fair queue, so under many writes some wait far longer than others; "
                   "for write-heavy use run one process (--workers 1) or PostgreSQL")
    click.echo(f"Loom is running on http://{host}:{port}/  (API: http://{host}:{port}/api/openapi.json)")
    # the workers read their settings from the environment, as every Loom process does;
    # unset, their pool holds one connection per request thread
    os.environ["LOOM_DB_POOL_SIZE"] = str(pool_size)
    # No engine or pooled connection crosses the fork: each worker opens its own.
    loom.engine.dispose()
    server = Server("loom.app:create_app", interface=Interfaces.WSGI, address=host, port=port,
                    workers=workers, blocking_threads=threads, websockets=False, respawn_failed_workers=True,
                    workers_kill_timeout=WORKER_STOP_SECONDS)
    server.serve(target_loader=_worker_app, wrap_loader=False)


def _worker_app():
    """The app of one worker, built in the worker: ``loom.app:create_app()``.

    Ctrl-C sends SIGINT to every process of the terminal's group, and the master then
    sends each worker SIGTERM; a granian worker that gets the two signals at the same
    moment can hang in its signal handler until it is killed. So a worker leaves SIGINT
    to the master (blocked here, before the worker starts its threads, which inherit
    the mask) and stops on the master's SIGTERM alone."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    app = create_app()
    if app.config["WORKER"]:
        # every process runs one: claims keep them from running a delivery twice
        from loom.integrations.worker import start_in_process

        start_in_process(app, dispatch=_dispatch(app))
    return _without_process_environment(app)


def _dispatch(app):
    """With LOOM_BROKER_URL, what sends due deliveries to Celery instead of running them."""
    if not app.config.get("BROKER_URL"):
        return None
    from loom.integrations.tasks import dispatch_due

    return dispatch_due


#: the keys of a WSGI environ that granian itself sets for every request
_SERVER_KEYS = frozenset({"GATEWAY_INTERFACE", "SCRIPT_NAME", "SERVER_SOFTWARE", "SERVER_NAME", "SERVER_PORT",
                          "SERVER_PROTOCOL", "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REMOTE_ADDR"})


def _without_process_environment(app):
    """``app`` given each request's environ without the variables of the worker's own
    environment, which granian copies into every environ: an ``HTTP_*`` variable of the
    process would read as a header the client never sent, and the secrets in ``LOOM_*``
    have no business in a request."""
    copied = {key: value for key, value in os.environ.items() if key not in _SERVER_KEYS}

    def wsgi_app(environ, start_response):
        for key, value in copied.items():
            if environ.get(key) == value:  # a header the client sent with another value stays
                del environ[key]
        return app(environ, start_response)
    return wsgi_app


def _check_connections(engine: sa.Engine, workers: int, pool_size: int, max_overflow: int) -> None:
    """Warn when the workers' pools together could take every connection PostgreSQL allows."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        allowed = int(conn.exec_driver_sql("SHOW max_connections").scalar_one())
        reserved = int(conn.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one())
    most = workers * (pool_size + max_overflow)
    if most >= allowed - reserved:
        click.echo(f"warning: {workers} worker(s) x (LOOM_DB_POOL_SIZE {pool_size} + LOOM_DB_MAX_OVERFLOW "
                   f"{max_overflow}) = {most} connections, and PostgreSQL takes at most {allowed - reserved} "
                   f"(max_connections {allowed}, {reserved} kept for superusers), with none left for commands "
                   "and the outbox; lower those settings or --workers, or raise max_connections", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--threads", default=SERVE_THREADS, show_default=True, type=click.IntRange(min=1),
              help="Request threads of each worker.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes that answer requests, each with its own threads and database connections.")
@with_appcontext
def serve(host: str, port: int, threads: int, workers: int) -> None:
    """Serve Loom (granian): one process, or --workers N."""
    _serve(host, port, threads, workers)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--serve/--no-serve", "run_server", default=True, help="Start the server after setting up.")
@click.option("--reset", is_flag=True,
              help="Publish the demo metadata again over the instance's (data is kept; changed fields are set aside).")
@with_appcontext
def demo(host: str, port: int, run_server: bool, reset: bool) -> None:
    """Set up the demo app (CRM + ERP) with sample data, and serve it. An instance that
    already has metadata is used as it is, unless --reset."""
    from loom.seed.setup import DEMO_USERS, demo_password, install_demo

    loom = _loom()
    if run_server:
        _check_port(host, port)
    existing = has_instance(loom.engine)
    upgrade(loom.engine)
    live = loom.metadata.live().number
    if existing and live and not reset:
        click.echo(f"using the existing instance in {current_app.instance_path} as it is (metadata version {live}); "
                   "'loom demo --reset' publishes the demo metadata again")
    else:
        counts = install_demo(loom)
        if counts:
            click.echo("demo data: " + ", ".join(f"{n} {entity}" for entity, n in counts.items()))
        else:
            click.echo("demo metadata published; demo data already present")
    click.echo("sign in as (username / password / role; passwords as the demo set them):")
    for username, display, role, _team in DEMO_USERS:
        click.echo(f"  {username:<8} {demo_password(username):<20} {role:<14} {display}")
    if run_server:
        _serve(host, port, threads=SERVE_THREADS)


@main.command()
@click.option("--once", is_flag=True, help="Run what is due now, then exit.")
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(min=1),
              help="Threads that run deliveries, each claiming its own.")
@with_appcontext
@needs_instance
def worker(once: bool, concurrency: int) -> None:
    """Run deliveries of integration rules, outbox events and scheduled jobs as they fall
    due, until Ctrl-C or SIGTERM (the deliveries under way are finished first)."""
    import threading

    from loom.integrations.worker import request_stop, run_threads

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = threading.Event()
    dispatch = _dispatch(app)
    if once:
        click.echo(run_threads(app, concurrency=concurrency, stop=stop, once=True, dispatch=dispatch).summary)
        return
    handlers = {sig: signal.signal(sig, lambda *_: request_stop(stop)) for sig in (signal.SIGINT, signal.SIGTERM)}
    where = "; deliveries go to the broker, for Celery workers" if dispatch is not None else ""
    click.echo(f"worker running with {concurrency} thread(s){where}; Ctrl-C stops it")
    try:
        run_threads(app, concurrency=concurrency, stop=stop, dispatch=dispatch)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    click.echo("worker stopped")


@main.group()
def metadata() -> None:
    """Check, publish and roll back metadata."""


DIRECTORY = click.Path(file_okay=False, path_type=Path)


@metadata.command("validate")
@click.argument("directory", type=DIRECTORY)
def validate(directory: Path) -> None:
    """Check a directory of metadata files, with the installed plugins' own; report every
    problem. With an instance, also what a publish checks in its database (whom rules run as)."""
    from loom.plugins import plugin_manager
    from loom.plugins.metadata import load_with_shipped, shipped_folders

    try:
        model = load_with_shipped(directory, shipped_folders(plugin_manager()))
    except MetadataError as error:
        _fail(error)
    if has_instance(_loom().engine):
        # users are not metadata: whom rules run as can be checked only against an instance
        problems = _loom().metadata.database_problems(model)
        if problems:
            _fail(MetadataError(problems))
    click.echo(f"ok: {len(model.entities)} entities in {len(model.documents)} documents")
    for note in model.layout_notes:
        click.echo(f"note: {note}")


def _load(directory: Path):
    try:
        return _loom().metadata.load_directory(directory)
    except MetadataError as error:
        _fail(error)


@metadata.command("diff")
@click.argument("directory", type=DIRECTORY)
@with_appcontext
@needs_instance
def diff(directory: Path) -> None:
    """Show what applying DIRECTORY would change; changes nothing."""
    upgrade(_loom().engine)
    plan = _loom().metadata.plan(_load(directory))
    if plan.is_empty:
        click.echo(f"no changes against version {plan.from_version}")
        return
    click.echo(f"version {plan.from_version} -> {plan.to_version}:")
    for line in plan.summary:
        click.echo(f"  {line}")
    for problem in plan.problems:
        click.echo(f"refused: {problem}", err=True)
    if plan.problems:
        sys.exit(1)


@metadata.command("apply")
@click.argument("directory", type=DIRECTORY)
@click.option("--author", help="Who publishes (recorded with the version).")
@click.option("--base-version", type=click.IntRange(min=0),
              help="The version DIRECTORY was made from (e.g. exported); refused if another has been published since.")
@with_appcontext
@needs_instance
def apply(directory: Path, author: str | None, base_version: int | None) -> None:
    """Publish DIRECTORY as the live metadata, migrating the database."""
    upgrade(_loom().engine)
    model = _load(directory)
    try:
        plan = _loom().metadata.apply(model, author=_author(author), base_version=base_version)
    except LoomError as error:
        _fail(error)
    if plan.is_empty:
        click.echo(f"no changes; version {plan.from_version} stays live")
        return
    click.echo(f"published version {plan.to_version}:")
    for line in plan.summary:
        click.echo(f"  {line}")
    for note in model.layout_notes:
        click.echo(f"note: {note}")


@metadata.command("export")
@click.argument("directory", type=DIRECTORY)
@with_appcontext
@needs_instance
def export(directory: Path) -> None:
    """Write the live metadata as files into DIRECTORY."""
    number = _loom().metadata.live().number
    written = _loom().metadata.export(directory, number)
    click.echo(f"wrote {len(written)} files to {directory} (version {number}; "
               f"publish them edited with --base-version {number})")


@metadata.command("history")
@with_appcontext
@needs_instance
def history() -> None:
    """List the published versions, newest first."""
    versions = _loom().metadata.history()
    if not versions:
        click.echo("no metadata published yet")
    for v in versions:
        click.echo(f"{v.number:>4}  {v.created_at:%Y-%m-%d %H:%M:%S}  {v.author}  {v.source}")
        for line in v.summary:
            click.echo(f"        {line}")


@metadata.command("rollback")
@click.argument("version", type=int)
@click.option("--author", help="Who rolls back (recorded with the version).")
@with_appcontext
@needs_instance
def rollback(version: int, author: str | None) -> None:
    """Publish the metadata of VERSION again; data set aside since then comes back."""
    try:
        plan = _loom().metadata.rollback(version, author=_author(author))
    except LoomError as error:
        _fail(error)
    if plan.is_empty:
        click.echo(f"version {version} is what is live already")
        return
    click.echo(f"published version {plan.to_version} (rollback to {version}):")
    for line in plan.summary:
        click.echo(f"  {line}")


@main.group()
def user() -> None:
    """Manage users."""


@user.command("create")
@click.argument("username")
@click.option("--role", "roles", multiple=True, help="A role to assign (repeatable).")
@click.option("--team", help="The user's team.")
@click.option("--display-name", default="")
@click.option("--email")
@click.option("--superuser", is_flag=True, help="Not bound by roles.")
@with_appcontext
@needs_instance
def create_user(username: str, roles: tuple[str, ...], team: str | None, display_name: str,
                email: str | None, superuser: bool) -> None:
    """Create USERNAME. The password is read from standard input, or generated and printed."""
    import secrets

    loom = _loom()
    upgrade(loom.engine)
    known = loom.metadata.live().model.roles
    for role in roles:
        if role not in known:
            _fail(LoomError(f"there is no role named {role}; see 'loom role list'"))
    generated = sys.stdin.isatty() or not (password := sys.stdin.readline().rstrip("\n"))
    if generated:
        password = secrets.token_urlsafe(12)
    try:
        loom.identity.create_user(username, password=password, roles=roles, team=team, display_name=display_name,
                                  email=email, is_superuser=superuser, actor=_author(None))
    except LoomError as error:
        _fail(error)
    click.echo(f"created user {username}" + (f" with password {password}" if generated else ""))


def _user_and_role(username: str, role: str, *, published: bool) -> tuple[int, str]:
    loom = _loom()
    if published and role not in loom.metadata.live().model.roles:
        _fail(LoomError(f"there is no role named {role}; see 'loom role list'"))
    with loom.engine.connect() as conn:
        try:
            return loom.identity.user_id(conn, username), role
        except LoomError as error:
            _fail(error)
    raise AssertionError("unreachable")


@user.command("grant")
@click.argument("username")
@click.argument("role")
@with_appcontext
@needs_instance
def grant_role(username: str, role: str) -> None:
    """Give USERNAME the published ROLE (audited); a role they hold already is left as it is."""
    user_id, role = _user_and_role(username, role, published=True)
    _loom().identity.assign(user_id, role, actor=_author(None))
    click.echo(f"{username} holds the role {role}")


@user.command("revoke")
@click.argument("username")
@click.argument("role")
@with_appcontext
@needs_instance
def revoke_role(username: str, role: str) -> None:
    """Take ROLE from USERNAME (audited)."""
    user_id, role = _user_and_role(username, role, published=False)
    _loom().identity.unassign(user_id, role, actor=_author(None))
    click.echo(f"{username} no longer holds the role {role}")


@main.group()
def token() -> None:
    """Manage API tokens."""


@token.command("create")
@click.argument("username")
@click.option("--expires", "days", type=int, help="Days until the token expires.")
@click.option("--read-only", is_flag=True, help="The token may only read.")
@click.option("--name", default="", help="What the token is for.")
@with_appcontext
@needs_instance
def create_token(username: str, days: int | None, read_only: bool, name: str) -> None:
    """Create an API token for USERNAME and print it (alone on one line; it is not shown again)."""
    upgrade(_loom().engine)
    try:
        new = _loom().identity.create_token(username, name=name, expires_days=days, read_only=read_only,
                                            actor=_author(None))
    except LoomError as error:
        _fail(error)
    click.echo(new.token)


@main.group()
def team() -> None:
    """Manage teams."""


@team.command("create")
@click.argument("name")
@click.option("--parent", help="The team above this one.")
@click.option("--label", default="")
@with_appcontext
@needs_instance
def create_team(name: str, parent: str | None, label: str) -> None:
    """Create team NAME (optionally below PARENT)."""
    upgrade(_loom().engine)
    try:
        _loom().identity.create_team(name, label=label, parent=parent, actor=_author(None))
    except LoomError as error:
        _fail(error)
    click.echo(f"created team {name}")


@main.group()
def role() -> None:
    """Inspect roles (they are declared in metadata)."""


@role.command("list")
@with_appcontext
@needs_instance
def list_roles() -> None:
    """List the roles of the live metadata with what they grant."""
    model = _loom().metadata.live().model
    if not model.roles:
        click.echo("no roles declared; add kind: role documents to the metadata")
    for r in model.roles.values():
        inherits = f" (inherits {', '.join(r.inherits)})" if r.inherits else ""
        click.echo(f"{r.name}{inherits}: {r.title('en')}")
        if r.admin:
            click.echo(f"    admin: {', '.join(sorted(r.admin))}")
        for entity, grant in r.grants.items():
            scope = grant.scope if grant.scope != "where" else f"where {dict(grant.where)}"
            click.echo(f"    {entity}: {', '.join(sorted(grant.actions)) or '-'}; scope {scope}")


@main.group()
def perm() -> None:
    """Explain permissions."""


@perm.command("explain")
@click.argument("username")
@click.argument("entity")
@click.argument("action", default="read")
@click.option("--record", "record_id", type=int, help="Also say whether this record is within reach.")
@with_appcontext
@needs_instance
def explain_permission(username: str, entity: str, action: str, record_id: int | None) -> None:
    """Say why USERNAME may or may not ACTION (default read) ENTITY records. Exits 1 when refused."""
    from loom.permissions import Policy
    from loom.permissions.explain import ACTIONS, explain

    loom = _loom()
    live = loom.metadata.live()
    if entity not in live.model.entities:
        _fail(LoomError(f"there is no entity named {entity}"))
    if action not in ACTIONS:
        _fail(LoomError(f"unknown action {action}; use one of: {', '.join(ACTIONS)}"))
    try:
        principal = loom.identity.principal_for(username)
    except LoomError as error:
        _fail(error)
    policy = live.derive("policy", lambda: Policy(live.model))
    table = live.tables[entity]
    with loom.engine.connect() as conn:
        allowed, lines = explain(policy, principal, live.model.entity(entity), action, connection=conn,
                                 table=table, users=table.metadata.tables["loom_users"], record_id=record_id)
    for line in lines:
        click.echo(line)
    if not allowed:
        sys.exit(1)


@main.group()
def audit() -> None:
    """Check, export and archive the audit log."""


def _anchor(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise click.BadParameter("expected SEQ:HASH as printed by an earlier verify", param_hint="--expect")
    return int(seq), digest


@audit.command("verify")
@click.option("--archive", "archive_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also walk the archive files in this folder (from the first entry ever written).")
@click.option("--expect", help="SEQ:HASH noted down earlier: the chain must still contain that entry.")
@with_appcontext
@needs_instance
def verify_audit(archive_dir: Path | None, expect: str | None) -> None:
    """Walk the hash chain. Exits 1 naming the first entry edited, removed or moved."""
    from loom.audit.chain import check

    loom = _loom()
    verdict = check(loom.engine, loom.audit, actor="system:cli", archive_dir=archive_dir, expect=_anchor(expect))
    seq, digest = verdict.head
    if verdict.ok:
        archives = f" and {verdict.archives} archive files" if verdict.archives else ""
        click.echo(f"ok: {verdict.checked} entries{archives} checked; head {seq}:{digest}")
        return
    click.echo(f"FAILED at entry {verdict.first_bad}: {verdict.problem}", err=True)
    click.echo(f"the chain is intact up to entry {seq} ({verdict.checked} entries checked)", err=True)
    sys.exit(1)


@audit.command("archive")
@click.option("--before", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Archive whole months before this date's month.")
@click.option("--to", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the compressed JSON Lines files.")
@with_appcontext
@needs_instance
def archive_audit(before, directory: Path) -> None:
    """Move old months of the log into compressed JSON Lines files, keeping the chain checkable."""
    from loom.audit.chain import archive

    loom = _loom()
    files = archive(loom.engine, before.date(), directory)
    for f in files:
        click.echo(f"{f.file}: entries {f.first_seq} to {f.last_seq} ({f.entries})")
    if not files:
        click.echo("nothing to archive before that month")
    loom.audit.add_alone("audit.archive", actor="system:cli", rows=sum(f.entries for f in files),
                         detail={"before": before.date().isoformat(), "files": [f.file for f in files]})


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-", help="A file (default: stdout).")
@click.option("--since", help="From this date or time (UTC).")
@click.option("--until", help="Before this date or time (UTC).")
@with_appcontext
@needs_instance
def export_audit(fmt: str, output, since: str | None, until: str | None) -> None:
    """Write the log (oldest first) as JSON Lines or CSV, streamed."""
    import json

    from loom.audit.api import csv_lines
    from loom.audit.reading import AuditQuery, stream

    loom = _loom()
    args = {k: v for k, v in {"since": since, "until": until}.items() if v}
    try:
        query = AuditQuery.parse(args)
    except LoomError as error:
        _fail(error)
    entries = stream(loom.engine, query)
    count = 0

    def counted():
        nonlocal count
        for entry in entries:
            count += 1
            yield entry

    lines = csv_lines(counted()) if fmt == "csv" else (json.dumps(e, ensure_ascii=False) + "\n" for e in counted())
    for chunk in lines:
        output.write(chunk)
    loom.audit.add_alone("audit.export", actor="system:cli", rows=count, detail={"filters": args, "format": fmt})


@audit.command("lock")
@click.argument("role")
@with_appcontext
@needs_instance
def lock_audit(role: str) -> None:
    """PostgreSQL: take UPDATE, DELETE and TRUNCATE on the audit log away from ROLE, the
    database role the application connects as (it keeps SELECT and INSERT)."""
    import sqlalchemy as sa

    from loom.audit.log import partitions

    loom = _loom()
    if loom.engine.dialect.name != "postgresql":
        _fail(LoomError("rights can be revoked on PostgreSQL only; on SQLite the triggers guard the log"))
    quoted = loom.engine.dialect.identifier_preparer.quote(role)
    with loom.engine.begin() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first():
            _fail(LoomError(f"there is no database role named {role}"))
        tables = ["loom_audit", *partitions(conn)]
        for table in tables:
            conn.exec_driver_sql(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {quoted}")
            conn.exec_driver_sql(f"GRANT SELECT, INSERT ON {table} TO {quoted}")
    click.echo(f"{role} may read and append to the audit log ({len(tables)} tables), not change it")


@main.group()
def files() -> None:
    """Attachment files."""


@files.command("clean")
@click.option("--grace-hours", default=24, show_default=True, type=click.IntRange(min=0),
              help="Keep files uploaded more recently than this, attached or not.")
@with_appcontext
@needs_instance
def clean_files(grace_hours: int) -> None:
    """Remove uploaded files no record holds (never attached, record deleted, field cleared);
    ``loom serve`` does this when it starts."""
    removed = _remove_orphan_files(grace_hours)
    click.echo(f"{removed} file(s) no record holds removed")


def _remove_orphan_files(grace_hours: int = 24) -> int:
    import datetime as dt

    from loom.records.files import app_files

    live = _loom().metadata.live()
    return app_files().remove_orphans(live.model, live.tables, grace=dt.timedelta(hours=grace_hours))


main.add_command(plugin_group)
main.add_command(settings_group)
main.add_command(outbox_group)
main.add_command(jobs_group)
