"""Users, and the principal a request or a background job acts as."""

from loom.identity.principal import Principal

__all__ = ["Principal"]
