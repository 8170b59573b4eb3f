"""A link a plugin adds to the navigation shows, with its own address and label, to the
users it is meant for and to no one else. Checked on the rendered pages: the anchor itself,
not a word that another link (the audit log's) could supply."""

from __future__ import annotations

import re

import pytest

import loom

LABEL = "Price lists"
ANCHOR = re.compile(r'<a href="([^"]*)"[^>]*>([^<]*)</a>')


def _anchors(html: str, start: str, end: str) -> set[tuple[str, str]]:
    """(href, text) of every link between the first ``start`` and the next ``end``."""
    part = html.split(start, 1)[1].split(end, 1)[0]
    return {(href, text.strip()) for href, text in ANCHOR.findall(part)}


def nav_anchors(html: str) -> set[tuple[str, str]]:
    return _anchors(html, '<nav id="nav"', "</nav>")


class PriceListLink:
    """A plugin that shows a link to the product list, labelled "Price lists", to superusers."""

    @loom.hookimpl
    def navigation_links(self, principal):
        return [loom.NavLink(LABEL, endpoint="pages.list_view", values={"entity": "product"})] \
            if principal.is_superuser else []


@pytest.fixture
def price_list_link(loom_app):
    """Adds the link the way a plugin does (the ``navigation_links`` hook); its address."""
    loom_app.extensions["loom"].plugins.register(PriceListLink())
    return "/r/product"


def test_a_plugins_link_shows_its_own_address_and_label_to_whom_it_is_meant(page_client, price_list_link):
    admin = page_client("admin")
    for url in ("/", "/r/customer"):
        assert (price_list_link, LABEL) in nav_anchors(admin.get(url).get_data(as_text=True)), url
    # the start page lists the same links beside the entities
    home = admin.get("/").get_data(as_text=True)
    assert (price_list_link, LABEL) in _anchors(home, 'id="home-links"', "</section>")
    for user in ("wang", "zhang"):
        html = page_client(user).get("/").get_data(as_text=True)
        assert LABEL not in html, user
        assert all(text != LABEL for _, text in nav_anchors(html))


def test_without_the_plugin_the_link_is_gone(page_client):
    """The check above fails when the link is missing: the admin's navigation (which has the
    audit log link) holds no anchor with that label."""
    html = page_client("admin").get("/").get_data(as_text=True)
    assert LABEL not in html
    assert any(text == "Audit log" for _, text in nav_anchors(html))
