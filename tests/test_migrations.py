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


def test_import_files_move_to_their_own_table_and_back(loom_engine):
    """An import job's file leaves the job's row (updated after every chunk) for rows of
    its own, in parts of 1 MiB, and a downgrade puts it back together; SQLite keeps the
    jobs' AUTOINCREMENT."""
    downgrade(loom_engine, "20261202_0710")
    content = "name\n" + "".join(f"row {i}\n" for i in range(250_000))  # 2.5 MiB
    with loom_engine.begin() as conn:
        user = conn.exec_driver_sql("INSERT INTO loom_users (username, display_name, locale, is_active, "
                                    "is_superuser, created_at) VALUES ('sam', 'Sam', 'en', true, false, "
                                    "CURRENT_TIMESTAMP) RETURNING id").scalar_one()
        conn.execute(sa.text("INSERT INTO loom_import_jobs (user_id, entity, filename, status, content, total, "
                             "processed, imported, created_at, updated_at) VALUES (:user, 'item', 'items.csv', "
                             "'mapping', :content, 1000, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                     {"user": user, "content": content.encode()})
    upgrade(loom_engine)
    with loom_engine.connect() as conn:
        moved = conn.exec_driver_sql("SELECT j.filename, f.part, f.content FROM loom_import_jobs j "
                                     "JOIN loom_import_files f ON f.job_id = j.id ORDER BY f.part").all()
    assert [(name, part, len(piece)) for name, part, piece in moved][:2] == [("items.csv", 0, 1 << 20),
                                                                               ("items.csv", 1, 1 << 20)]
    assert len(moved) == 3 and b"".join(bytes(piece) for _n, _p, piece in moved).decode() == content
    assert "content" not in {c["name"] for c in sa.inspect(loom_engine).get_columns("loom_import_jobs")}
    assert _keeps_autoincrement(loom_engine, "loom_import_jobs")
    downgrade(loom_engine, "20261202_0710")
    assert "loom_import_files" not in sa.inspect(loom_engine).get_table_names()
    with loom_engine.connect() as conn:
        back = conn.exec_driver_sql("SELECT content FROM loom_import_jobs").scalar_one()
    assert bytes(back).decode() == content
    assert _keeps_autoincrement(loom_engine, "loom_import_jobs")
    column = next(c for c in sa.inspect(loom_engine).get_columns("loom_import_jobs") if c["name"] == "content")
    assert not column["nullable"]
    upgrade(loom_engine)


def _keeps_autoincrement(engine, table: str) -> bool:
    """On SQLite, whether ``table`` still never hands out an id twice (PostgreSQL: always)."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar()
    return "AUTOINCREMENT" in sql.upper()
