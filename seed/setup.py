"""Installing the demo app: its metadata, teams and users (one per demo role), and
generated records."""

from __future__ import annotations

from importlib.resources import as_file, files

from loom.principal import Principal
from loom.records.door import record_service
from loom.seed.demo import populate

#: (name, label, parent)
DEMO_TEAMS = (
    ("east", "华东区 East region", None),
    ("shanghai", "上海 Shanghai", "east"),
    ("hangzhou", "杭州 Hangzhou", "east"),
    ("north", "华北区 North region", None),
    ("beijing", "北京 Beijing", "north"),
)
#: (username, display name, role, team)
DEMO_USERS = (
    ("admin", "管理员 Admin", "admin", None),
    ("wang", "王芳 Wang Fang", "sales_rep", "shanghai"),
    ("zhao", "赵磊 Zhao Lei", "sales_rep", "hangzhou"),
    ("sun", "孙丽 Sun Li", "sales_rep", "beijing"),
    ("li", "李强 Li Qiang", "sales_manager", "east"),
    ("zhang", "张敏 Zhang Min", "finance", None),
    ("liu", "刘洋 Liu Yang", "service_agent", None),
    ("chen", "陈静 Chen Jing", "auditor", None),
)
#: the customers of each region belong to that region's reps
DEMO_REPS = {"east": ("wang", "zhao"), "north": ("sun",), "south": ("zhao",), "west": ("sun",), "central": ("wang",)}


def demo_password(username: str) -> str:
    """The demo's well-known passwords: for trying Loom on one's own machine only."""
    return f"loom-demo-{username}"


def _ensure_people(identity) -> dict[str, int]:
    teams = {t["name"] for t in identity.list_teams()}
    for name, label, parent in DEMO_TEAMS:
        if name not in teams:
            identity.create_team(name, label=label, parent=parent, actor="system:demo")
    existing = {u["username"]: u["id"] for u in identity.list_users()}
    for username, display, role, team in DEMO_USERS:
        if username not in existing:
            existing[username] = identity.create_user(
                username, password=demo_password(username), display_name=display, team=team, roles=[role],
                locale="zh_CN", actor="system:demo")
    return existing


def install_demo(loom, *, scale: int = 1) -> dict[str, int]:
    """Publish the demo metadata, create its teams and users and, when the demo has no
    customers yet, generate records. Returns how many records were made per entity
    (empty when data was already there)."""
    with as_file(files("loom.seed").joinpath("crm")) as folder:
        model = loom.metadata.load_directory(folder)
    loom.metadata.apply(model, author="system:demo", source="demo")
    people = _ensure_people(loom.identity)
    demo = Principal.system("demo")
    if record_service("customer", demo, app=loom).list({"limit": "1"}).data:
        return {}

    def create(entity: str, rows: list[dict]) -> list[int]:
        return record_service(entity, demo, app=loom).bulk_create(rows)

    reps = {region: [people[u] for u in names] for region, names in DEMO_REPS.items()}
    return populate(create, user_ids=[people[u] for u in ("wang", "zhao", "sun")], scale=scale, reps=reps)
