"""``loom plugin``: list the installed plugins, show and change their settings, take a
plugin's tables away before uninstalling it; ``loom settings rotate``: seal the settings'
secrets again under the current key; ``loom plugin new``: start a new plugin project."""

from __future__ import annotations

import json
import keyword
import re
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from loom.commands import CommandFailed, author_name, current_loom, fail, needs_instance
from loom.errors import LoomError, ValidationError
from loom.plugins import ENTRY_POINT_GROUP, plugin_name
from loom.plugins.migrations import downgrade_plugin, plugin_trees


@click.group("plugin")
def plugin_group() -> None:
    """Installed plugins and their settings."""


@plugin_group.command("list")
@with_appcontext
def list_plugins() -> None:
    """List the registered plugins: built-in and installed."""
    loom = current_loom()
    manager = loom.plugins
    for plugin in manager.get_plugins():
        name = plugin_name(manager, plugin)
        hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or ())
        click.echo(f"{name}: {', '.join(hooks) or 'no hooks'}")
    for name in sorted(loom.settings.schemas):
        click.echo(f"settings: {name} (loom plugin settings {name})")


@plugin_group.command("settings")
@click.argument("name")
@with_appcontext
@needs_instance
def show_settings(name: str) -> None:
    """Show plugin NAME's settings (secrets as ***) and the ones it declares but lacks."""
    settings = current_loom().settings
    try:
        schema = settings.schema(name)
        stored = settings.masked(name)
    except LoomError as error:
        fail(error)
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or ())
    for key in dict.fromkeys([*properties, *stored]):
        prop = properties.get(key) or {}
        if key in stored:
            shown = stored[key] if isinstance(stored[key], str) else json.dumps(stored[key], ensure_ascii=False)
        elif "default" in prop:
            shown = f"{json.dumps(prop['default'], ensure_ascii=False)} (default)"
        else:
            shown = "(not set, required)" if key in required else "(not set)"
        about = f"  # {prop['description']}" if prop.get("description") else ""
        click.echo(f"{key} = {shown}{about}")


def parse_value(key: str, raw: str, prop: dict[str, Any]) -> Any:
    """``raw`` (command-line text) as the type the schema gives setting ``key``."""
    kinds = prop.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or [])
    kind = next((k for k in kinds if k != "null"), None)
    if raw == "null" and "null" in kinds:
        return None
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            number = float(raw)
            return int(number) if number.is_integer() and "." not in raw else number
        if kind == "boolean":
            lowered = raw.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if kind in ("array", "object"):
            value = json.loads(raw)
            if not isinstance(value, list if kind == "array" else dict):
                raise ValueError
            return value
    except ValueError:
        expected = {"integer": "a whole number", "number": "a number", "boolean": "true or false",
                    "array": "a JSON list such as [\"a\", \"b\"]", "object": "a JSON object such as {\"a\": 1}"}
        raise ValidationError(f"{key}: expected {expected[kind]}, got {raw!r}",
                              errors=[{"field": key, "code": "wrong_type", "message": f"expected {expected[kind]}",
                                       "params": {"types": [kind]}}]) \
            from None
    return raw


@plugin_group.command("set")
@click.argument("name")
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove a setting (repeatable).")
@with_appcontext
@needs_instance
def set_settings(name: str, assignments: tuple[str, ...], unset: tuple[str, ...]) -> None:
    """Change plugin NAME's settings: KEY=VALUE each (VALUE typed as the setting's schema
    says), all checked together before anything is saved."""
    settings = current_loom().settings
    if not assignments and not unset:
        raise CommandFailed("give at least one KEY=VALUE (or --unset KEY)")
    try:
        properties = settings.schema(name).get("properties") or {}
        changes = {}
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep or not key:
                raise CommandFailed(f"'{assignment}' is not KEY=VALUE")
            changes[key] = parse_value(key, raw, properties.get(key) or {})
        settings.update(name, changes, unset=unset, actor=author_name())
    except ValidationError as error:
        for problem in error.errors:
            click.echo(f"error: {problem.get('field') or name}: {problem['message']}", err=True)
        raise SystemExit(1) from None
    except LoomError as error:
        fail(error)
    click.echo(f"saved {len(changes) + len(unset)} setting(s) of {name}")


@plugin_group.command("downgrade")
@click.argument("name")
@click.argument("revision", default="base")
@with_appcontext
@needs_instance
def downgrade(name: str, revision: str) -> None:
    """Take plugin NAME's own tables back to REVISION (default base: drop them), e.g.
    before uninstalling it. Loom's own tables are not touched."""
    loom = current_loom()
    try:
        downgrade_plugin(loom.engine, loom.plugins, name, revision)
    except LookupError as error:
        raise CommandFailed(str(error)) from None
    click.echo(f"{name}: tables at {revision}")
    if revision == "base" and name in plugin_trees(loom.plugins):
        click.echo("uninstall the plugin now, or 'loom init' creates its tables again")


@click.group("settings")
def settings_group() -> None:
    """Plugin settings as a whole: the key their secrets are sealed with."""


@settings_group.command("rotate")
@with_appcontext
@needs_instance
def rotate_settings() -> None:
    """Seal every stored plugin secret again under the current key (LOOM_SETTINGS_KEY, else
    derived from LOOM_SECRET_KEY), opening each with it or one of LOOM_SETTINGS_PREVIOUS_KEYS.
    Afterwards the previous keys can be removed. All or nothing; audited."""
    try:
        count = current_loom().settings.rotate(actor=author_name())
    except LoomError as error:
        fail(error)
    click.echo(f"sealed {count} secret(s) again under the current key")


#: a plugin's name: its entry point, settings and actions are named by it, its package is loom_<name>
_PLUGIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
#: the placeholder the scaffold's files and paths hold for the plugin's name
_PLACEHOLDER = "__PLUGIN__"


def _check_new_name(name: str) -> None:
    from loom.integrations.actions import action_names

    if not _PLUGIN_NAME.match(name) or name.endswith("_") or "__" in name:
        raise CommandFailed(f"'{name}' cannot name a plugin: use lower case letters, digits and single _ "
                            "(starting with a letter, at most 30 characters), e.g. erp or credit_check")
    if name == "loom" or name.startswith("loom_") or keyword.iskeyword(name):
        raise CommandFailed(f"'{name}' cannot name a plugin: it is taken by Loom or Python; choose another")
    taken = {n.split(".", 1)[0] for n in action_names()}
    if name in taken:
        raise CommandFailed(f"'{name}' cannot name a plugin: Loom's own actions are named {name}.*; choose another")
    if name in {entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)}:
        raise CommandFailed(f"'{name}' cannot name a plugin: an installed plugin has that name; choose another")


def _scaffold_files(folder, relative: str = ""):
    """(path in the new project, template text) of every file of the scaffold."""
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name == "__pycache__":
            continue
        path = f"{relative}/{item.name}" if relative else item.name
        if item.is_dir():
            yield from _scaffold_files(item, path)
        elif item.name.endswith(".tmpl"):
            target = path.removesuffix(".tmpl")
            if target == "gitignore":
                target = ".gitignore"
            yield target, item.read_text(encoding="utf-8")


@plugin_group.command("new")
@click.argument("name")
@click.option("--directory", type=click.Path(path_type=Path),
              help="Where to create the project (default: ./loom-NAME); it must not exist or be empty.")
def new_plugin(name: str, directory: Path | None) -> None:
    """Start a plugin project NAME: a pip-installable package loom_NAME with its settings,
    an action NAME.notify, a rule and entity it ships, and tests that pass as generated."""
    _check_new_name(name)
    target = directory or Path(f"loom-{name}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise CommandFailed(f"{target} exists and is not an empty folder; give another --directory")
    title = name.replace("_", " ").title()
    written = []
    for path, text in _scaffold_files(files("loom.commands") / "scaffold"):
        out = target / path.replace(_PLACEHOLDER, name)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text.replace("__TITLE__", title).replace(_PLACEHOLDER, name), encoding="utf-8")
        written.append(out)
    click.echo(f"created plugin project {target} ({len(written)} files):")
    for out in written:
        click.echo(f"  {out.relative_to(target)}")
    # a path pip cannot take for a package's name
    where = str(target) if target.is_absolute() or str(target).startswith(".") else f"./{target}"
    click.echo(f"test it:    pip install -e '{where}[test]' && pytest {where}")
    click.echo(f"install it: pip install {where}, next to Loom (see {target / 'README.md'})")


@click.group("outbox")
def outbox_group() -> None:
    """The outbox: events waiting for plugins' consumers."""


@outbox_group.command("deliver")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Deliver at most this many events.")
@with_appcontext
@needs_instance
def deliver(limit: int) -> None:
    """Deliver the due events to the consumers plugins declare; failures are tried again
    later, and given up (dead) after several attempts."""
    from loom.plugins.outbox import deliver_pending

    loom = current_loom()
    report = deliver_pending(loom.engine, loom.plugins, limit)
    click.echo(f"{report.claimed} event(s): {len(report.delivered)} delivered, {len(report.retried)} to try again, "
               f"{len(report.dead)} dead")


@click.group("jobs")
def jobs_group() -> None:
    """Scheduled jobs plugins declare."""


def _jobs():
    from loom.plugins.jobs import registry

    try:
        return registry(current_loom().plugins)
    except (TypeError, ValueError) as error:
        raise CommandFailed(str(error)) from None


@jobs_group.command("list")
@with_appcontext
def list_jobs() -> None:
    """List the jobs with their schedule and next run (in LOOM_TIMEZONE)."""
    import datetime as dt

    from flask import current_app

    from loom.plugins.jobs import zone_of

    jobs = _jobs()
    if not jobs:
        click.echo("no scheduled jobs; plugins declare them with the scheduled_jobs hook")
    zone = zone_of(current_app)
    now = dt.datetime.now(dt.UTC)
    for job in jobs.values():
        due = job.next_run(now, zone).astimezone(zone)
        click.echo(f"{job.name}  ({job.plugin})  {job.description}  next {due:%Y-%m-%d %H:%M:%S %Z}")


@jobs_group.command("run")
@click.argument("name")
@with_appcontext
@needs_instance
def run_job_now(name: str) -> None:
    """Run job NAME now (audited as job.run)."""
    from loom.plugins.jobs import run_job

    jobs = _jobs()
    if name not in jobs:
        raise CommandFailed(f"there is no job named {name}; 'loom jobs list' shows them")
    try:
        run_job(jobs[name], current_loom().audit)
    except Exception as error:
        raise CommandFailed(f"job {name} failed: {type(error).__name__}: {error}") from None
    click.echo(f"job {name} ran")
