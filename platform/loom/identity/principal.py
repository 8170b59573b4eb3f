"""Who is acting: a user, or a named system principal (a plugin, a rule, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The identity an operation runs as; it is recorded on every change."""

    name: str
    user_id: int | None = None
    is_system: bool = False
    locale: str = "en"

    @classmethod
    def system(cls, name: str) -> Principal:
        """A named non-human actor, recorded as ``system:<name>``."""
        return cls(name=f"system:{name}", is_system=True)
