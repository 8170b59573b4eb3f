"""Who is acting: a user, or a named system principal (a plugin, a rule, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The identity an operation runs as: recorded on every change, and what permissions
    are decided for. A system principal is not bound by roles; it is recorded as
    ``system:<name>``."""

    name: str
    user_id: int | None = None
    is_system: bool = False
    locale: str = "en"
    roles: tuple[str, ...] = ()
    team_id: int | None = None
    #: the user's team and every team below it
    team_ids: tuple[int, ...] = ()
    manager_id: int | None = None
    #: signed in with a read-only API token
    read_only: bool = False
    #: a user not bound by roles (still recorded as themselves)
    is_superuser: bool = False
    #: the name people know the user by, for screens (the log records ``name``)
    display_name: str | None = None

    @classmethod
    def system(cls, name: str) -> Principal:
        """A named non-human actor, recorded as ``system:<name>``."""
        return cls(name=f"system:{name}", is_system=True)
