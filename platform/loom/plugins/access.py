"""What a plugin's code uses to reach Loom's database: a transaction on the app's engine.
Exported as ``loom.transaction``, so plugins need not reach into the app's internals."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def transaction() -> Iterator[sa.Connection]:
    """A write transaction on the running app's database, for the plugin's own tables. Met
    inside one this thread has open already (an outbox delivery, a record hook, a record
    write), it joins it as a savepoint: it commits, or rolls back, with that work."""
    from flask import current_app

    from loom.db import write_transaction

    with write_transaction(current_app.extensions["loom"].engine) as conn:
        yield conn
