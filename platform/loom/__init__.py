"""Loom: a metadata-driven low-code platform.

The names exported here are Loom's public API; plugins import only these.
"""

from loom.errors import (
    BadRequest,
    Conflict,
    InvalidValue,
    LoomError,
    MetadataError,
    NotFound,
    PreconditionFailed,
    ValidationError,
    error_entry,
)
from loom.hookspecs import hookimpl
from loom.integrations.actions import Action, ActionCall, PermanentFailure
from loom.permissions import Forbidden
from loom.plugins.access import transaction
from loom.plugins.declarations import NavLink, Panel
from loom.plugins.settings import plugin_settings
from loom.plugins.webhooks import Webhook, WebhookCall
from loom.principal import Principal
from loom.records import external_ids
from loom.records.door import record_service

__all__ = [
    "Action",
    "ActionCall",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidValue",
    "LoomError",
    "MetadataError",
    "NavLink",
    "NotFound",
    "Panel",
    "PermanentFailure",
    "PreconditionFailed",
    "Principal",
    "ValidationError",
    "Webhook",
    "WebhookCall",
    "error_entry",
    "external_ids",
    "hookimpl",
    "plugin_settings",
    "transaction",
    "record_service",
]
