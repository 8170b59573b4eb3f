"""The exception hierarchy. Each error knows its HTTP status and problem type; the app
turns them into ``application/problem+json`` (RFC 9457) in one place (``loom.app``)."""

from __future__ import annotations

from typing import Any


class LoomError(Exception):
    """Base of every error Loom reports to a user or client."""

    status = 500
    type = "about:blank"
    title = "Internal error"

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors or []

    def to_problem(self) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            problem["errors"] = self.errors
        return problem


class BadRequest(LoomError):
    status = 400
    type = "https://loom.dev/problems/bad-request"
    title = "Bad request"


class NotFound(LoomError):
    status = 404
    type = "https://loom.dev/problems/not-found"
    title = "Not found"


class Conflict(LoomError):
    status = 409
    type = "https://loom.dev/problems/conflict"
    title = "Conflict"


class PreconditionFailed(LoomError):
    status = 412
    type = "https://loom.dev/problems/stale-version"
    title = "Record was changed by someone else"


class ValidationError(LoomError):
    """Invalid values: ``errors`` lists every offending field at once."""

    status = 422
    type = "https://loom.dev/problems/validation"
    title = "Invalid values"


class MetadataError(LoomError):
    """A metadata document, or a change to the live metadata, that cannot be accepted.

    ``problems`` carries every finding (file, line, path, message) so that one run
    reports them all.
    """

    status = 422
    type = "https://loom.dev/problems/metadata"
    title = "Invalid metadata"

    def __init__(self, problems: list[Any] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        detail = "\n".join(str(p) for p in self.problems)
        super().__init__(detail, errors=[{"message": str(p)} for p in self.problems])
