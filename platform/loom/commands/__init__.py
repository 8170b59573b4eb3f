"""The ``loom`` command's groups that live outside ``loom.cli`` (``loom.commands.plugins``:
plugin, outbox, jobs), and what every command module shares: the running Loom, the
one-line failure, and the guard of commands that need an existing instance."""

from __future__ import annotations

import functools
import getpass
import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask import current_app

from loom.errors import LoomError


def current_loom():
    """The running Loom of the command's app."""
    return current_app.extensions["loom"]


class CommandFailed(click.ClickException):
    """A failure the person at the terminal can act on: one line, ``error: ...``, exit 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)


def author_name(author: str | None = None) -> str:
    """Who a command acts as in the audit log and version history: ``author`` when given,
    else ``cli:<the operating-system user>``."""
    if author:
        return author
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def fail(error: LoomError) -> None:
    """Report every problem of ``error`` as one ``error:`` line each, and exit 1."""
    problems = getattr(error, "problems", None) or [error.detail]
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    sys.exit(1)


def has_instance(engine: sa.Engine) -> bool:
    """Whether ``engine``'s database holds a Loom instance (Loom's own tables). A SQLite
    file that does not exist is not opened, since opening it would create it."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        return False
    return sa.inspect(engine).has_table("alembic_version")


def needs_instance(command):
    """For commands that work on an existing instance: refuse, naming where Loom looked,
    rather than create an empty database (only ``init``, ``demo`` and ``serve`` create one)."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        engine = current_loom().engine
        if not has_instance(engine):
            raise CommandFailed(
                f"there is no Loom instance in {engine.url.render_as_string(hide_password=True)} "
                f"(instance folder {current_app.instance_path}); run 'loom init' or 'loom demo' first, "
                "or set LOOM_INSTANCE_PATH / LOOM_DATABASE_URL to an existing one")
        return command(*args, **kwargs)
    return run
