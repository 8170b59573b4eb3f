"""Autonumber patterns: ``"SO-{yyyy}{mm}-{seq:5}"`` read into its parts, checked when the
metadata is compiled and used by the record service (``loom.records.numbering``) to make
numbers.

Placeholders: ``{yyyy}``, ``{yy}``, ``{mm}``, ``{dd}`` (the creation date), and exactly one
``{seq:N}`` (the counter, zero-padded to N digits; ``{seq}`` is not padded). Everything
else is literal text. The prefix, the key of a counter, is the number's text with the
date filled in and the counter written ``#`` (a literal ``#`` doubled): numbers whose
date parts differ count separately.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: date placeholder -> (strftime code, digits)
_DATE_PARTS = {"yyyy": ("%Y", 4), "yy": ("%y", 2), "mm": ("%m", 2), "dd": ("%d", 2)}
_WIDTH = dict(_DATE_PARTS.values())
_SEQ = re.compile(r"seq(?::([0-9]+))?")
MAX_DIGITS = 18


class PatternError(ValueError):
    """An autonumber pattern that cannot be used; the message says why."""


@dataclass(frozen=True)
class Pattern:
    """A parsed autonumber pattern."""

    #: in order: ("text", literal), ("date", strftime code) or ("seq", digits)
    parts: tuple[tuple[str, str | int], ...]

    @property
    def length(self) -> int:
        """The numbers' length while the counter fits its digits."""
        total = 0
        for kind, value in self.parts:
            if kind == "text":
                total += len(str(value))
            elif kind == "date":
                total += _WIDTH[str(value)]
            else:
                total += int(value)
        return total

    def prefix(self, day: dt.date) -> str:
        """The key of the counter the numbers made on ``day`` take."""
        return "".join(str(value).replace("#", "##") if kind == "text" else
                       day.strftime(str(value)) if kind == "date" else "#" for kind, value in self.parts)

    def render(self, day: dt.date, number: int) -> str:
        """Number ``number`` of the numbers made on ``day``."""
        return "".join(str(value) if kind == "text" else day.strftime(str(value)) if kind == "date"
                       else str(number).zfill(int(value)) for kind, value in self.parts)

    def parse(self, text: str) -> tuple[str, int] | None:
        """(prefix, counter) of a number written in this format; None when it is not."""
        expression = "".join(re.escape(str(value)) if kind == "text" else
                             f"([0-9]{{{_WIDTH[str(value)]}}})" if kind == "date" else "([0-9]+)"
                             for kind, value in self.parts)
        match = re.fullmatch(expression, text)
        if match is None:
            return None
        found = iter(match.groups())
        prefix, number = "", 0
        for kind, value in self.parts:
            if kind == "text":
                prefix += str(value).replace("#", "##")
            elif kind == "date":
                prefix += next(found)
            else:
                number = int(next(found))
                prefix += "#"
        return prefix, number


def parse_pattern(text: str) -> Pattern:
    """``text`` as a ``Pattern``; ``PatternError`` saying what is wrong with it."""
    parts: list[tuple[str, str | int]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(("text", text[position:match.start()]))
        name = match.group(1).strip()
        seq = _SEQ.fullmatch(name)
        if name in _DATE_PARTS:
            parts.append(("date", _DATE_PARTS[name][0]))
        elif seq:
            digits = int(seq.group(1) or 1)
            if not 1 <= digits <= MAX_DIGITS:
                raise PatternError(f"{{{name}}}: the counter is padded to 1 to {MAX_DIGITS} digits")
            parts.append(("seq", digits))
        else:
            raise PatternError(f"unknown placeholder {{{name}}}; use {{yyyy}}, {{yy}}, {{mm}}, {{dd}} "
                               "or {seq:N} (the counter, N digits)")
        position = match.end()
    parts.append(("text", text[position:]))
    if any(kind == "text" and ("{" in str(value) or "}" in str(value)) for kind, value in parts):
        raise PatternError("a brace outside a placeholder: placeholders are written {yyyy}, {seq:5} ...")
    counted = sum(kind == "seq" for kind, _value in parts)
    if counted != 1:
        raise PatternError(f"the pattern needs exactly one {{seq}} placeholder (the counter); it has {counted}")
    return Pattern(tuple((kind, value) for kind, value in parts if kind != "text" or value))


def check_pattern(text: str, max_length: int | None = None) -> str | None:
    """What is wrong with an autonumber pattern, or None."""
    try:
        pattern = parse_pattern(text)
    except PatternError as exc:
        return str(exc)
    if max_length is not None and pattern.length > max_length:
        return f"its numbers are {pattern.length} characters long, more than max_length ({max_length})"
    return None
