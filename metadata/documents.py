"""A metadata document as Loom holds it while checking it: its data, the file it came
from and the line of every node, so that every problem found later names a line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a metadata document."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{where}: {self.path or '(document)'}: {self.message}"


@dataclass(frozen=True)
class Document:
    """One parsed document with where it came from, so later checks can name the line."""

    data: dict[str, Any]
    file: str
    lines: dict[tuple, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        return self.data.get("kind", "")

    def line_of(self, path: Iterable[Any]) -> int | None:
        """The line of the closest node at or above ``path``."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: Iterable[Any], message: str) -> Problem:
        path = tuple(path)
        return Problem(self.file, self.line_of(path), format_path(path), message)


def format_path(path: Iterable[Any]) -> str:
    """``("fields", 3, "type")`` -> ``fields[3].type``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
