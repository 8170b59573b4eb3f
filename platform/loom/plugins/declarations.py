"""What plugins hand back from their hooks: small, frozen declarations that the host
checks and the app uses. Exported from ``loom``, so plugins need not reach in here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup


@dataclass(frozen=True)
class NavLink:
    """A link in the navigation: to ``url``, or to the Flask ``endpoint`` with ``values``.
    ``label`` is shown escaped; a lazy translation string is turned to text when shown."""

    label: Any
    url: str = ""
    endpoint: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.url) == bool(self.endpoint):
            raise ValueError(f"NavLink {self.label!r}: give either url or endpoint, not both or neither")

    def href(self) -> str:
        if self.url:
            return self.url
        from flask import url_for

        return url_for(self.endpoint, **self.values)


@dataclass(frozen=True)
class Panel:
    """A panel on a record page: ``title`` (escaped) over ``body``, which is escaped unless
    it is ``markupsafe.Markup``. ``key`` names the panel in the page (``id="panel-<key>"``)."""

    title: Any
    body: Any
    key: str = ""

    @property
    def html(self) -> Markup:
        """The body as safe HTML: Markup as it is, anything else escaped."""
        return Markup.escape(self.body) if not isinstance(self.body, Markup) else self.body
