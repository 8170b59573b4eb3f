"""The plugin contract: every hook a plugin can implement.

Plugins are discovered through the ``loom.plugins`` entry-point group and implement
these hooks with ``@loom.hookimpl``. Every parameter is passed by keyword, and an
implementation accepts only the parameters it uses. A hook's signature never breaks:
new needs get a new hook or a new optional parameter. Hooks that return something are
called for every plugin and get a list of the non-None answers; a hook that returns a
list of things may return an empty list or None.

The hooks come in groups: the record lifecycle (first), the app (startup, routes,
webhooks, commands, screens), data that plugins ship (metadata, migrations, settings)
and background work (outbox consumers, scheduled jobs, rule actions).

Record hooks receive the compiled ``entity`` (``loom.metadata.Entity``), the acting
``principal`` (``loom.identity.Principal``) and, except ``after_record_commit``, the
``connection`` of the transaction the change runs in: anything the hook writes through
it commits or rolls back with the change, and so does a record written through the record
service from inside a hook (it joins the transaction as a savepoint). Raising a
``loom.LoomError`` from a ``before_*`` hook refuses the operation; the client gets that error.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("loom")
hookimpl = pluggy.HookimplMarker("loom")


@hookspec
def before_record_create(entity, values, principal, connection):
    """A record is about to be created. ``values`` (field name -> typed value, after
    validation) may be changed in place; child rows are not included."""


@hookspec
def after_record_create(entity, record, principal, connection):
    """A record was inserted, in the still-open transaction. ``record`` is its JSON form."""


@hookspec
def before_record_update(entity, record, changes, principal, connection):
    """A record is about to change. ``record`` is its JSON form before the change;
    ``changes`` (field name -> typed new value) may be changed in place."""


@hookspec
def after_record_update(entity, record, changes, principal, connection):
    """A record was updated, in the still-open transaction. ``changes`` maps each changed
    field to ``[old, new]`` in JSON form."""


@hookspec
def before_record_delete(entity, record, principal, connection):
    """A record is about to be deleted; ``record`` is its JSON form."""


@hookspec
def after_record_delete(entity, record, principal, connection):
    """A record was deleted, in the still-open transaction; ``record`` holds its last values."""


@hookspec
def after_record_commit(entity, action, record, principal):
    """A change committed. ``action`` is ``created``, ``updated`` or ``deleted``. Runs
    outside the transaction: for work that must not happen for a change that rolled back.
    An exception raised here is logged and audited; the committed change stands."""


# -- the app ---------------------------------------------------------------------------------

@hookspec
def startup(app):
    """The Flask ``app`` was built, with every blueprint and command registered; called once
    per app, before it serves a request. For one-time setup: warming a cache, checking that
    the plugin's settings are complete (log what is missing; raising stops the app)."""


@hookspec
def register_blueprints():
    """A list of Flask blueprints to register on the app. Their routes need a signed-in
    user (session or token) like every other route; a session-authenticated write needs
    the CSRF token. ``public_endpoints`` opens endpoints to anonymous requests."""


@hookspec
def public_endpoints():
    """Endpoint names (``blueprint.view``) reachable without signing in, such as a sign-in
    page. Every other endpoint answers 401 to a request without a credential."""


@hookspec
def read_only_endpoints():
    """Endpoint names a read-only API token may send POST, PUT, PATCH or DELETE to: reads
    sent as POST, signing in and out. A read-only token is refused on every other write."""


@hookspec
def webhooks():
    """A list of ``loom.Webhook(plugin, name, secret, handler)``: inbound webhooks, served at
    ``POST /hooks/<plugin>/<name>`` without a session or token (and so without CSRF). Each
    call must be signed: ``X-Loom-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
    "<t>." + body>`` with the secret held in the plugin's setting named by ``secret``;
    unsigned, wrongly signed and calls more than five minutes old get 401 problem+json.
    ``handler(call)`` receives a ``loom.WebhookCall`` and returns a JSON-able reply (or None
    for 204). Every call is audited as ``webhook.receive``."""


@hookspec
def register_commands(cli):
    """Add commands to the ``loom`` command: ``cli`` is a click group; commands added with
    ``@cli.command()`` run inside the app (``flask.current_app``) as ``loom <name>``. A
    command named like one of Loom's own is never reached."""


@hookspec
def model_modules():
    """Names of modules that declare tables of Loom's own migration tree; they are
    imported before alembic compares or migrates. For built-in plugins (the screens); an
    installed plugin keeps its tables in its own branch (``migration_folders``)."""


@hookspec
def navigation_links(principal):
    """A list of ``loom.NavLink(label, url=... or endpoint=...)`` to show in the navigation
    to ``principal`` (who is signed in). Return only links this principal may follow."""


@hookspec
def record_panels(entity, record, principal):
    """A list of ``loom.Panel(title, body)`` to show on the record page of ``record`` (its
    JSON form, holding only the fields ``principal`` may read). ``body`` is escaped unless
    it is ``markupsafe.Markup``: build Markup only from escaped parts. A panel hook that
    raises is logged and its panels left out; the page still shows."""


# -- what plugins ship -----------------------------------------------------------------------

@hookspec
def plugin_settings_schema():
    """``(plugin name, JSON Schema)``: the plugin's settings, an object. Values are checked
    against the schema on every save; properties marked ``"secret": true`` (or
    ``"writeOnly": true``) are stored encrypted and shown as ``***``. The plugin reads them
    with ``loom.plugin_settings(name)``; admins set them on the settings screen
    (``/settings/plugins/<name>``), through the API or with ``loom plugin set``. A
    ``title`` and ``description`` (the schema's and each property's) may be a string or
    ``{"en": ..., "zh": ...}``: the screen shows them as labels and help."""


@hookspec
def plugin_test_connection(settings):
    """Check that the plugin's saved ``settings`` (in clear, defaults filled in) reach the
    system they are for: called only for the plugin that implements it, which must also
    declare its settings (``plugin_settings_schema``). Return a short text to show on
    success (or None); raise an exception whose message says what is wrong on failure.
    Loom stops waiting after 15 seconds, replaces any secret value the message quotes
    with ``***``, and audits the outcome. Offered on the settings screen and by
    ``POST /api/v1/_plugins/settings/<plugin>/test``."""


@hookspec
def metadata_folders():
    """A list of folders (paths or ``importlib.resources`` Traversables) of metadata
    documents the plugin ships: entities, roles ... they are loaded together with the app's
    own whenever a directory is validated, diffed or applied, and ``loom init`` publishes
    those the live metadata lacks. A document of the same kind and name as another one,
    with different content, is a metadata error naming both files."""


@hookspec
def migration_folders():
    """A list of ``(plugin name, folder)``: alembic revision folders (a path or an
    ``importlib.resources`` Traversable) with the plugin's own tables. Each folder is one
    revision tree, run after Loom's own tables are up to date by ``loom init``, ``loom
    serve`` and ``loom demo``, and recorded in its own version table
    (``alembic_version_<plugin name>``), so Loom upgrades the same whether the plugin is
    installed or not."""


# -- background work -------------------------------------------------------------------------

@hookspec
def outbox_consumers():
    """A list of ``(topic pattern, consumer)``: ``consumer(event)`` is called for each outbox
    event whose topic matches the pattern (fnmatch: ``record.*``, ``record.created``) once
    the change that wrote it committed. ``event`` has ``id``, ``topic``, ``entity``,
    ``record_id``, ``actor``, ``payload``, ``created_at`` and ``attempts``. A consumer that
    raises has the event tried again later (every matching consumer again: be idempotent),
    with a growing wait, until it is dead after eight failures."""


@hookspec
def scheduled_jobs():
    """A list of ``(name, schedule, job)``: ``job()`` runs on ``schedule``, a cron expression
    (``"0 7 * * 1-5"``, in the time zone of ``LOOM_TIMEZONE``) or an interval
    (``datetime.timedelta`` or seconds). Names are unique across plugins. ``loom jobs list``
    shows when each runs next; ``loom jobs run NAME`` runs one now."""


@hookspec
def rule_actions():
    """A list of ``loom.Action(name, run, arguments=..., description=...)``: actions that
    integration rules can name (``action: erp.push_sales_order``). ``run(call)`` receives a
    ``loom.ActionCall`` (its rendered ``arguments``, the delivery's ``idempotency_key``, the
    rule's ``principal``, the plugin's ``settings`` unsealed) and returns a JSON-able
    result; it raises ``loom.PermanentFailure`` when a retry cannot help and any other
    exception to be tried again. Registered as the plugin host starts, under the plugin's
    name; a name another plugin (or Loom) has taken stops the app, naming both."""


# -- the metadata language -------------------------------------------------------------------

@hookspec
def field_types():
    """A list of ``loom.metadata.FieldType``: new types fields may declare (``type: rating``).
    A type owns its storage, validation, JSON, display, input, parsing, export and filter
    operators. They are registered when the plugin host starts, before any metadata is
    read; a name taken by a built-in type or another plugin's stops the app
    (``loom.metadata.FieldTypeError``)."""


@hookspec
def document_kinds():
    """A list of ``loom.metadata.DocumentKind``: new kinds of metadata document
    (``kind: <name>``), each with its JSON Schema, compilation and diff. Registered when
    the plugin host starts; a taken name stops the app (``loom.metadata.DocumentKindError``).
    The live metadata's compiled documents of a kind are ``model.of_kind(name)``."""
