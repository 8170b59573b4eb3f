"""Scheduled rules: one delivery per record the filter selects at the scheduled time, as
far as the rule's user may read; a repeated run adds nothing; a user who may not act
fires nothing, and the run says why in the audit log."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa

from loom import record_service
from loom.audit.models import audit_log
from loom.integrations.models import deliveries
from loom.integrations.schedules import fire, scheduled_rules
from loom.principal import Principal

SYSTEM = Principal.system("test")
REGION = {"kind": "entity", "name": "zone", "title_field": "name", "fields": [
    {"name": "name", "type": "string"},
    {"name": "overdue_days", "type": "integer"},
]}
INVOICE = {"kind": "entity", "name": "invoice", "title_field": "number", "fields": [
    {"name": "number", "type": "string"},
    {"name": "due", "type": "date"},
    {"name": "paid", "type": "boolean", "default": False},
    {"name": "zone", "type": "link", "target": "zone"},
    {"name": "note", "type": "text"},
]}
COLLECTOR = {"kind": "role", "name": "collector", "permissions": {
    "invoice": {"actions": ["read"], "scope": "own", "fields": {"note": "none"}},
    "zone": {"actions": ["read"]},
}}
OVERDUE = {"kind": "rule", "name": "overdue_invoices",
           "on": {"schedule": "0 8 * * *", "entity": "invoice",
                  "filter": "not paid and add_days(due, zone.overdue_days) < today()"},
           "action": "http.request", "run_as": "collector_bot",
           "with": {"url": "http://127.0.0.1:9/overdue", "body": {"number": "{{ record.number }}"}}}


def setup(app, make_user, apply_metadata):
    bot = make_user("collector_bot", roles=("collector",))
    apply_metadata(REGION, INVOICE, COLLECTOR, OVERDUE)
    with app.app_context():
        zone = record_service("zone", SYSTEM).create({"name": "east", "overdue_days": 10})
        invoices = record_service("invoice", SYSTEM)
        today = dt.date.today()
        made = {}
        for number, days_ago, paid, owner in (("I-1", 30, False, bot), ("I-2", 30, True, bot), ("I-3", 5, False, bot),
                                              ("I-4", 40, False, None)):
            values = {"number": number, "due": (today - dt.timedelta(days=days_ago)).isoformat(), "paid": paid,
                      "zone": zone["id"], "note": "call before noon"}
            if owner is not None:
                values["owner"] = owner
            made[number] = invoices.create(values)
        return made


def written(app):
    with app.extensions["loom"].engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(deliveries).order_by(deliveries.c.id)).mappings()]


def test_a_scheduled_rule_delivers_each_selected_record_its_user_may_read_once(loom_app, make_user, apply_metadata):
    made = setup(loom_app, make_user, apply_metadata)
    with loom_app.app_context():
        [rule] = scheduled_rules(loom_app.extensions["loom"].metadata.live().model)
        at = dt.datetime.now(dt.UTC).replace(hour=8, minute=0, second=0, microsecond=0)
        assert fire(loom_app, rule, at) == 1
        # overdue, unpaid and the bot's own: I-1 only (I-2 paid, I-3 not overdue, I-4 not the bot's)
        [delivery] = written(loom_app)
        assert delivery["record_id"] == made["I-1"]["id"] and delivery["trigger"] == "schedule"
        assert delivery["context"]["record"]["number"] == "I-1"
        assert "note" not in delivery["context"]["record"]  # the bot may not read it
        # the same run again (a worker that crashed after writing) adds nothing
        assert fire(loom_app, rule, at) == 0
        # the next day's run delivers it again
        assert fire(loom_app, rule, at + dt.timedelta(days=1)) == 1
        assert len(written(loom_app)) == 2


def test_a_deactivated_user_fires_nothing_and_the_run_says_why(loom_app, make_user, apply_metadata):
    setup(loom_app, make_user, apply_metadata)
    identity = loom_app.extensions["loom"].identity
    with loom_app.app_context():
        user_id = next(u["id"] for u in identity.list_users() if u["username"] == "collector_bot")
        identity.update_user(user_id, {"is_active": False}, actor="test")
        [rule] = scheduled_rules(loom_app.extensions["loom"].metadata.live().model)
        assert fire(loom_app, rule, dt.datetime.now(dt.UTC)) == 0
        assert written(loom_app) == []
        with loom_app.extensions["loom"].engine.connect() as conn:
            entry = conn.execute(sa.select(audit_log.c.detail, audit_log.c.outcome)
                                 .where(audit_log.c.action == "rule.schedule")).one()
        detail = json.loads(entry.detail) if isinstance(entry.detail, str) else entry.detail
        assert entry.outcome == "error" and "deactivated" in detail["error"]
