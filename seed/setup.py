"""Installing the demo app: its metadata, a few users and generated records."""

from __future__ import annotations

from importlib.resources import as_file, files

import sqlalchemy as sa

from loom.identity.models import User
from loom.identity.principal import Principal
from loom.records.service import Context, RecordService
from loom.seed.demo import populate

DEMO_USERS = (
    ("admin", "管理员 Admin"),
    ("sales_rep", "王芳 Wang Fang"),
    ("sales_manager", "李强 Li Qiang"),
    ("finance", "张敏 Zhang Min"),
    ("service_agent", "刘洋 Liu Yang"),
    ("auditor", "陈静 Chen Jing"),
)


def _ensure_users(engine: sa.Engine) -> list[int]:
    users = User.__table__
    with engine.begin() as conn:
        existing = dict(conn.execute(sa.select(users.c.username, users.c.id)).all())
        for username, display in DEMO_USERS:
            if username not in existing:
                existing[username] = conn.execute(users.insert().values(
                    username=username, display_name=display, is_active=True,
                    created_at=sa.func.now()).returning(users.c.id)).scalar_one()
    return [existing[u] for u, _ in DEMO_USERS]


def install_demo(loom, *, scale: int = 1) -> dict[str, int]:
    """Publish the demo metadata and, when the demo has no customers yet, generate records.
    Returns how many records were made per entity (empty when data was already there)."""
    with as_file(files("loom.seed").joinpath("crm")) as folder:
        model = loom.metadata.load_directory(folder)
    loom.metadata.apply(model, author="system:demo", source="demo")
    user_ids = _ensure_users(loom.engine)
    live = loom.metadata.live()
    context = Context(engine=loom.engine, live=live, principal=Principal.system("demo"), hooks=loom.plugins.hook,
                      cursors=loom.cursors)
    if RecordService(context, "customer").list({"limit": "1"}).data:
        return {}

    def create(entity: str, rows: list[dict]) -> list[int]:
        return RecordService(context, entity).bulk_create(rows)

    return populate(create, user_ids=user_ids, scale=scale)
