"""Alembic environment for Loom's own tables and for plugins' revision trees (entity tables
are managed by the metadata service, not by revisions here)."""

from alembic import context

from loom.db import Base, create_engine
from loom.models import import_all

import_all()
config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            _migrate(connection)
    else:
        _migrate(connection)


def _migrate(connection) -> None:
    # a plugin's tree (loom.plugins.migrations) runs here too, recorded in its own version
    # table; its tables are not on Loom's metadata, so it has none to compare against
    plugin_tree = config.attributes.get("plugin_tree")
    context.configure(connection=connection, target_metadata=None if plugin_tree else target_metadata,
                      version_table=config.attributes.get("version_table", "alembic_version"),
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
