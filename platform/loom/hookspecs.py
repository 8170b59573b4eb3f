"""The plugin contract: every hook a plugin can implement.

Plugins are discovered through the ``loom.plugins`` entry-point group and implement
these hooks with ``@loom.hookimpl``. Every parameter is passed by keyword, and an
implementation accepts only the parameters it uses. A hook's signature never breaks:
new needs get a new hook or a new optional parameter.

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
