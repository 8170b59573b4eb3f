"""An example Loom plugin, small but real: it counts the record events Loom delivers to it
in a table of its own, shows that count on the record pages an admin chose, receives a
signed ``ping`` webhook, lists what it saw on a page and with ``loom example-events``,
offers a connection test on its settings screen,
adds a field type, ``rating`` (one to five stars), and an action integration rules can
name, ``example.rate`` (give a record's rating field some stars).

It uses only what ``loom`` exports: every hook it implements is one a third-party plugin
could, and ``docs/plugins.md`` walks through it.
"""

from __future__ import annotations

from importlib.resources import files

import click
import httpx
import sqlalchemy as sa
from flask import Blueprint, g, jsonify

import loom
from loom_example.rating import RATING

NAME = "example"
#: an example is installed with Loom but stays off unless LOOM_PLUGINS_ENABLED names it
loom_enabled_by_default = False

#: the plugin's own table; its revision tree (migrations/) creates it
metadata = sa.MetaData()
events = sa.Table(
    "loom_example_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("topic", sa.String(100), nullable=False),
    sa.Column("entity", sa.String(100)),
    sa.Column("record_id", sa.BigInteger),
    sa.Column("outbox_id", sa.BigInteger, unique=True),
)

SETTINGS = {
    "type": "object",
    "title": {"en": "Example plugin", "zh": "示例插件"},
    "description": {"en": "Counts record events, receives a signed ping webhook and rates records.",
                    "zh": "统计记录事件，接收带签名的 ping 回调，并为记录评分。"},
    "properties": {
        "webhook_secret": {"type": "string", "minLength": 16, "secret": True,
                           "title": {"en": "Webhook secret", "zh": "回调密钥"},
                           "description": {"en": "Shared secret senders sign /hooks/example/ping with",
                                           "zh": "发送方为 /hooks/example/ping 签名所用的共享密钥"}},
        "panel_entities": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "default": [],
                           "title": {"en": "Record pages with the event count", "zh": "显示事件计数的记录页"},
                           "description": {"en": "Entities whose record pages show the event count",
                                           "zh": "其记录页显示事件计数的实体"}},
        "ping_url": {"type": "string", "format": "uri",
                     "title": {"en": "Address to try", "zh": "测试地址"},
                     "description": {"en": "The connection test asks this address, which must answer 2xx",
                                     "zh": "连接测试会访问此地址，它须以 2xx 应答"}},
    },
    "additionalProperties": False,
}
#: seconds the connection test waits for ping_url
PING_TIMEOUT = 5.0

pages = Blueprint("example", __name__)


@pages.get("/example/events")
def recent_events():
    """The latest events the plugin saw: for admins, since they name any record."""
    if not g.principal.is_superuser:
        raise loom.Forbidden("only an administrator may see what the example plugin recorded")
    with loom.transaction() as conn:
        rows = conn.execute(sa.select(events).order_by(events.c.id.desc()).limit(50)).mappings().all()
    return jsonify(events=[dict(row) for row in rows])


def count_for(entity: str, record_id: int) -> int:
    with loom.transaction() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events).where(
            events.c.entity == entity, events.c.record_id == record_id)).scalar_one()


def remember(event) -> None:
    """The outbox consumer: one row per record event, once (a retried delivery is skipped)."""
    with loom.transaction() as conn:
        seen = conn.execute(sa.select(events.c.id).where(events.c.outbox_id == event.id)).first()
        if seen is None:
            conn.execute(events.insert().values(topic=event.topic, entity=event.entity,
                                                record_id=event.record_id, outbox_id=event.id))


def ping(call: loom.WebhookCall):
    """The webhook: a signed ping is recorded like an event, and answered."""
    with loom.transaction() as conn:
        conn.execute(events.insert().values(topic="webhook.ping"))
    return {"pong": call.timestamp}


def rate(call: loom.ActionCall):
    """The rule action ``example.rate``: set a record's rating field, as the rule's principal.
    A refusal (no permission, no such record, not a rating) cannot be mended by trying again."""
    arguments = call.arguments
    service = loom.record_service(arguments["entity"], call.principal, app=call.app)
    try:
        record = service.update(int(arguments["id"]), {arguments["field"]: arguments["stars"]})
    except (loom.Forbidden, loom.NotFound, loom.ValidationError) as refusal:
        reasons = "; ".join(error["message"] for error in refusal.errors) or refusal.detail
        raise loom.PermanentFailure(f"example.rate: {reasons}") from None
    return {"id": record["id"], "stars": record[arguments["field"]]}


RATE = loom.Action("example.rate", rate, description="Give a record's rating field 1 to 5 stars", arguments={
    "type": "object",
    "properties": {"entity": {"type": "string"}, "id": {"type": ["integer", "string"], "pattern": "^[0-9]+$"},
                   "field": {"type": "string"}, "stars": {"type": "integer", "minimum": 1, "maximum": 5}},
    "required": ["entity", "id", "field", "stars"],
    "additionalProperties": False,
})


@loom.hookimpl
def plugin_settings_schema():
    return (NAME, SETTINGS)


@loom.hookimpl
def plugin_test_connection(settings):
    """The settings screen's "Test connection": the webhook secret must be set, and
    ping_url, when given, must answer 2xx."""
    if not settings.get("webhook_secret"):
        raise ValueError("webhook_secret is not set, so no sender can sign a ping")
    url = settings.get("ping_url")
    if not url:
        return "webhook secret set; no address to try (ping_url)"
    try:
        reply = httpx.get(url, timeout=PING_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as error:
        raise ConnectionError(f"{url} cannot be reached: {error}") from None
    if not reply.is_success:
        raise ConnectionError(f"{url} answered HTTP {reply.status_code}")
    return f"webhook secret set; {url} answered HTTP {reply.status_code}"


@loom.hookimpl
def migration_folders():
    return [(NAME, files(__name__) / "migrations")]


@loom.hookimpl
def field_types():
    return [RATING]


@loom.hookimpl
def rule_actions():
    return [RATE]


@loom.hookimpl
def register_blueprints():
    return [pages]


@loom.hookimpl
def webhooks():
    return [loom.Webhook(NAME, "ping", secret="webhook_secret", handler=ping)]


@loom.hookimpl
def outbox_consumers():
    return [("record.*", remember)]


@loom.hookimpl
def navigation_links(principal):
    if principal.is_superuser:
        return [loom.NavLink("Example events", endpoint="example.recent_events")]
    return []


@loom.hookimpl
def record_panels(entity, record):
    if entity.name not in loom.plugin_settings(NAME)["panel_entities"]:
        return []
    seen = count_for(entity.name, record["id"])
    return [loom.Panel("Example plugin", f"{seen} event(s) of this record delivered to the example plugin",
                       key="example")]


@loom.hookimpl
def register_commands(cli):
    @cli.command("example-events")
    def example_events():
        """Count the events the example plugin received, by topic."""
        with loom.transaction() as conn:
            counts = conn.execute(sa.select(events.c.topic, sa.func.count()).group_by(events.c.topic)
                                  .order_by(events.c.topic)).all()
        if not counts:
            click.echo("no events yet; 'loom outbox deliver' hands them over")
        for topic, count in counts:
            click.echo(f"{topic}: {count}")
