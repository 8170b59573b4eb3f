"""Loom's own tables: the alembic revisions upgrade and downgrade cleanly."""

from __future__ import annotations

import sqlalchemy as sa

from loom.db import downgrade, upgrade

SYSTEM_TABLES = {"loom_users", "loom_metadata_versions", "loom_set_aside", "loom_outbox"}


def test_upgrade_downgrade_upgrade(loom_engine):
    assert SYSTEM_TABLES <= set(sa.inspect(loom_engine).get_table_names())
    downgrade(loom_engine, "base")
    assert not SYSTEM_TABLES & set(sa.inspect(loom_engine).get_table_names())
    upgrade(loom_engine)
    assert SYSTEM_TABLES <= set(sa.inspect(loom_engine).get_table_names())


def test_the_revisions_create_exactly_the_declared_tables(loom_engine):
    """Every table, column, type and index a model declares is what the revisions built."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from loom.db import Base
    from loom.models import import_all

    import_all()

    def ours(obj, name, type_, reflected, compare_to):  # the entity tables are the schema service's
        return not (type_ == "table" and reflected and name not in Base.metadata.tables)

    with loom_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": ours, "compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_another_process_sees_a_publish_on_its_next_request(loom_app, apply_metadata, customer_doc, tmp_path,
                                                           make_user):
    from loom.app import create_app

    make_user("admin", superuser=True)
    token = loom_app.extensions["loom"].identity.create_token("admin").token
    other = create_app({"ENGINE": loom_app.extensions["loom"].engine, "INSTANCE_PATH": str(tmp_path / "other"),
                        "SECRET_KEY": "x", "DISCOVER_PLUGINS": False}).test_client()
    other.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    assert other.get("/api/v1/customer").status_code == 404
    apply_metadata(customer_doc)
    assert other.get("/api/v1/customer").status_code == 200
    assert other.post("/api/v1/customer", json={"name": "from the other process"}).status_code == 201
