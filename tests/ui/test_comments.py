"""Comments on the record page: posted from the timeline's box (htmx or a plain form),
shown escaped among the changes, refused with the reason beside the box, and never
possible on a record the user may not read."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa

PAYLOAD = "<script>alert('x')</script> {{ 7*7 }} \"quoted\""


def _comments(loom_engine) -> list[tuple]:
    with loom_engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT author, entity, record_id, body FROM loom_comments "
                                                       "ORDER BY id"))]


def test_an_htmx_comment_returns_the_timeline_with_it_escaped_on_top(page_client, demo, loom_engine):
    customer = demo["customers"][0]
    wang = page_client("wang")
    reply = wang.post(f"/r/customer/{customer}/comments", {"body": "Met the buyer.\nSends the PO on Friday."},
                      htmx="record-timeline")
    assert reply.status_code == 200
    html = reply.get_data(as_text=True)
    assert 'id="record-timeline"' in html
    assert "<html" not in html                      # a fragment, not a page
    assert html.index("Met the buyer.") < html.index("created")   # newest first
    wang.post(f"/r/customer/{customer}/comments", {"body": PAYLOAD}, htmx="record-timeline")
    page = wang.get(f"/r/customer/{customer}").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "{{ 7*7 }}" in page                      # shown as typed, never evaluated
    assert _comments(loom_engine) == [("wang", "customer", customer, "Met the buyer.\nSends the PO on Friday."),
                                      ("wang", "customer", customer, PAYLOAD)]


def test_a_plain_form_post_goes_back_to_the_record_page(page_client, demo, loom_engine):
    customer = demo["customers"][0]
    liu = page_client("liu")                        # a service agent reads every customer
    reply = liu.post(f"/r/customer/{customer}/comments", {"body": "Complained about delivery times."})
    assert reply.status_code == 303
    assert reply.headers["Location"].endswith(f"/r/customer/{customer}#record-timeline")
    page = liu.get(f"/r/customer/{customer}").get_data(as_text=True)
    assert "Comment added." in page and "Complained about delivery times." in page
    # wang owns the customer and sees the agent's comment too
    assert "Complained about delivery times." in page_client("wang").get(f"/r/customer/{customer}").get_data(as_text=True)


def test_an_empty_or_too_long_comment_is_refused_beside_the_box_keeping_the_text(page_client, demo, loom_engine):
    customer = demo["customers"][0]
    wang = page_client("wang")
    empty = wang.post(f"/r/customer/{customer}/comments", {"body": "   "}, htmx="record-timeline")
    assert empty.status_code == 422
    html = empty.get_data(as_text=True)
    assert 'id="comment-body-error"' in html and "Write a comment first." in html
    assert 'aria-invalid="true"' in html
    long_text = "很长的备注" * 2001
    too_long = wang.post(f"/r/customer/{customer}/comments", {"body": long_text}, htmx="record-timeline")
    assert too_long.status_code == 422
    assert "At most 10000 characters." in too_long.get_data(as_text=True)
    assert long_text in too_long.get_data(as_text=True)           # what was typed is kept
    plain = wang.post(f"/r/customer/{customer}/comments", {"body": ""})
    assert plain.status_code == 422 and "Write a comment first." in plain.get_data(as_text=True)
    assert _comments(loom_engine) == []


def test_nobody_comments_on_a_record_they_may_not_read(page_client, demo, loom_engine):
    gamma = demo["customers"][2]                    # owned by zhao
    wang = page_client("wang")
    assert wang.post(f"/r/customer/{gamma}/comments", {"body": "psst"}, htmx="record-timeline").status_code == 404
    assert wang.post(f"/r/customer/{gamma}/comments", {"body": "psst"}).status_code == 404
    # an empty comment is not answered with the record's timeline either
    empty = wang.post(f"/r/customer/{gamma}/comments", {"body": ""}, htmx="record-timeline")
    assert empty.status_code == 404 and "record-timeline" not in empty.get_data(as_text=True)
    assert _comments(loom_engine) == []


def test_comments_speak_chinese(page_client, demo):
    customer = demo["customers"][0]
    wang = page_client("wang")
    wang.post("/language", {"locale": "zh_CN", "next": "/"})
    page = wang.get(f"/r/customer/{customer}").get_data(as_text=True)
    assert "历史与评论" in page and "发表评论" in page
    refused = wang.post(f"/r/customer/{customer}/comments", {"body": ""}, htmx="record-timeline")
    assert "请先写评论。" in refused.get_data(as_text=True)


def test_times_on_the_timeline_are_in_the_configured_time_zone(loom_app, demo, tmp_path):
    from loom.app import create_app

    from .conftest import sign_in

    base = {"ENGINE": loom_app.extensions["loom"].engine, "INSTANCE_PATH": str(tmp_path / "shanghai"),
            "SECRET_KEY": "x", "DISCOVER_PLUGINS": False}
    shanghai = create_app({**base, "TIMEZONE": "Asia/Shanghai"})
    customer = demo["customers"][0]
    wang = sign_in(shanghai, "wang")
    wang.post(f"/r/customer/{customer}/comments", {"body": "Time check"})
    page = wang.get(f"/r/customer/{customer}").get_data(as_text=True)
    stamp = re.search(r'<time datetime="([^"]+)">([^<]+)</time> · wang · commented', page)
    utc = dt.datetime.fromisoformat(stamp.group(1).replace("Z", "+00:00"))
    assert stamp.group(2) == f"{utc + dt.timedelta(hours=8):%Y-%m-%d %H:%M:%S} CST"
    with pytest.raises(ValueError, match="LOOM_TIMEZONE: there is no time zone named 'Mars/Olympus'"):
        create_app({**base, "TIMEZONE": "Mars/Olympus"})
