"""Scheduled jobs: declared by plugins, checked, with their next run; listed and run now
with ``loom jobs``."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import loom
from loom.plugins import plugin_manager
from loom.plugins.jobs import registry


class Reports:
    def __init__(self):
        self.runs = []

    @loom.hookimpl
    def scheduled_jobs(self):
        return [("sales.daily-report", "0 7 * * 1-5", self.daily),
                ("sales.sync", dt.timedelta(minutes=15), lambda: self.runs.append("sync")),
                ("sales.broken", 60, self.broken)]

    def daily(self):
        self.runs.append("daily")

    def broken(self):
        raise RuntimeError("report server gone")


def job_plugin(jobs):
    class Plugin:
        @loom.hookimpl
        def scheduled_jobs(self):
            return jobs
    return Plugin()


def test_scheduled_jobs_know_their_next_run():
    jobs = registry(plugin_manager([Reports()], discover=False))
    assert list(jobs) == ["sales.daily-report", "sales.sync", "sales.broken"]
    shanghai = ZoneInfo("Asia/Shanghai")
    friday_evening = dt.datetime(2026, 12, 4, 20, 0, tzinfo=shanghai)
    assert jobs["sales.daily-report"].next_run(friday_evening, shanghai) == dt.datetime(2026, 12, 7, 7, 0,
                                                                                          tzinfo=shanghai)
    # the cron expression is read in the given zone: 07:00 in Shanghai is 23:00 UTC the day before
    utc_next = jobs["sales.daily-report"].next_run(friday_evening.astimezone(dt.UTC), shanghai)
    assert utc_next.astimezone(dt.UTC) == dt.datetime(2026, 12, 6, 23, 0, tzinfo=dt.UTC)
    last = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    assert jobs["sales.sync"].next_run(last) == last + dt.timedelta(minutes=15)
    assert jobs["sales.broken"].description == "every 1 minute"
    with pytest.raises(ValueError, match="aware"):
        jobs["sales.sync"].next_run(dt.datetime(2026, 12, 4))


@pytest.mark.parametrize(("jobs", "message"), [
    ([("x", "not a cron", print)], "neither a cron expression"),
    ([("x", 0, print)], "at least a second"),
    ([("Bad Name", 60, print)], "job names are lower case"),
    ([("x", 60, "not callable")], "must return \\(name, schedule, callable\\)"),
    ([("x", 60, print), ("x", 30, print)], "two jobs are named x"),
])
def test_mistakes_in_scheduled_jobs_are_named(jobs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        registry(plugin_manager([job_plugin(jobs)], discover=False))


@pytest.fixture
def jobs_cli(loom_engine, tmp_path, monkeypatch):
    from loom.app import create_app
    from loom.cli import main

    reports = Reports()
    monkeypatch.setattr(main, "create_app", lambda: create_app({
        "ENGINE": loom_engine, "INSTANCE_PATH": str(tmp_path / "cli"), "SECRET_KEY": "cli", "TIMEZONE": "Asia/Shanghai",
        "PLUGINS": [reports], "DISCOVER_PLUGINS": False}))

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    run.reports = reports
    return run


def test_loom_jobs_list_and_run(jobs_cli, loom_engine):
    listing = jobs_cli("jobs", "list")
    assert "sales.daily-report  (Reports)  cron 0 7 * * 1-5  next " in listing
    assert " 07:00:00 CST" in listing
    assert "sales.sync  (Reports)  every 15 minutes  next " in listing
    assert jobs_cli("jobs", "run", "sales.daily-report") == "job sales.daily-report ran\n"
    assert jobs_cli.reports.runs == ["daily"]
    failed = jobs_cli("jobs", "run", "sales.broken", code=1)
    assert "error: job sales.broken failed: RuntimeError: report server gone" in failed
    assert "there is no job named nope" in jobs_cli("jobs", "run", "nope", code=1)
    with loom_engine.connect() as conn:
        logged = conn.execute(sa.text("SELECT actor, outcome FROM loom_audit WHERE action = 'job.run' "
                                      "ORDER BY seq")).all()
    assert [tuple(r) for r in logged] == [("system:job:sales.daily-report", "ok"),
                                          ("system:job:sales.broken", "error")]
