"""Loom: a metadata-driven low-code platform.

The names exported here are Loom's public API; plugins import only these.
"""

from loom.errors import (
    BadRequest,
    Conflict,
    LoomError,
    MetadataError,
    NotFound,
    PreconditionFailed,
    ValidationError,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "LoomError",
    "MetadataError",
    "NotFound",
    "PreconditionFailed",
    "ValidationError",
]
