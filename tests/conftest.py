"""Shared fixtures. The database fixtures come from Loom's own pytest plugin
(``loom.testing``), the same ones plugin authors use."""

from __future__ import annotations

import pytest


@pytest.fixture
def customer_doc(make_entity):
    """A customer entity much like the one admins write first."""
    return make_entity("customer", [
        {"name": "name", "type": "string", "required": True, "max_length": 200,
         "label": {"en": "Name", "zh": "名称"}},
        {"name": "credit_code", "type": "string", "validators": ["uscc"], "unique": True},
        {"name": "mobile", "type": "phone", "validators": ["cn_mobile"]},
        {"name": "level", "type": "select", "options": [{"value": "A"}, {"value": "B"}, {"value": "C"}],
         "default": "C"},
        {"name": "credit_limit", "type": "decimal", "precision": 14, "scale": 2, "min": 0},
        {"name": "region", "type": "select", "options": [{"value": "east"}, {"value": "north"}], "index": True},
        {"name": "account_manager", "type": "link", "target": "user"},
    ], label={"en": "Customer", "zh": "客户"}, title_field="name")


@pytest.fixture
def service(loom_app):
    """The metadata service of the test app."""
    return loom_app.extensions["loom"].metadata
