"""The exception hierarchy, and errors as data.

Each error knows its HTTP status and problem type; the app turns them into
``application/problem+json`` (RFC 9457) in one place (``loom.app``). Every error, and
every entry of its ``errors`` list, carries a stable ``code`` and the ``params`` its
English message quotes, so that a client or a screen can say it in its own words without
reading the English (the screens translate by code: ``loom.ui.messages``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


class ErrorCode(NamedTuple):
    """What an error code means and the params it carries (a trailing ``?``: sometimes)."""

    params: tuple[str, ...]
    meaning: str


#: every code Loom gives an error or an error entry; docs/api.md shows the same table
ERROR_CODES: dict[str, ErrorCode] = {
    # -- the kind of a whole refusal (the problem's own code) --------------------------------
    "error": ErrorCode((), "something failed on Loom's side"),
    "bad_request": ErrorCode((), "the request cannot be used as sent; the detail says why"),
    "not_found": ErrorCode((), "no such thing, or not one the caller may see"),
    "conflict": ErrorCode((), "the change conflicts with other records"),
    "stale_version": ErrorCode((), "the record changed since the caller read it (If-Match, version)"),
    "write_conflict": ErrorCode(("entity",), "another write to the same records was being saved at the same "
                                             "moment (the database ended this one); nothing was saved: send it again"),
    "not_stored": ErrorCode((), "a webhook call that could not be stored, so it was not taken: send it again"),
    "derived_conflict": ErrorCode(("entity",), "records this change recomputes (roll-ups, depends_on_links) were "
                                               "being changed by another write; nothing was saved: send it again"),
    "invalid_values": ErrorCode((), "invalid values; the entries name each one"),
    "invalid_metadata": ErrorCode((), "a metadata document or change that cannot be accepted"),
    "forbidden": ErrorCode((), "the caller's roles do not allow this"),
    "unauthorized": ErrorCode((), "not signed in, or the credential is unknown, expired or revoked"),
    "locked": ErrorCode((), "too many failed sign-ins; try again after Retry-After seconds"),
    "unsupported_media_type": ErrorCode((), "a request body that is not JSON"),
    "method_not_allowed": ErrorCode((), "the address does not take this HTTP method"),
    "too_large": ErrorCode((), "the request body is larger than LOOM_MAX_CONTENT_LENGTH"),
    "no_such_entity": ErrorCode(("entity",), "there is no entity of that name"),
    "no_such_record": ErrorCode(("entity", "id"),
                                "no such record, or one outside what the caller may read (also a link to one)"),
    "forbidden_action": ErrorCode(("action", "entity"), "the caller's roles do not allow this action"),
    "read_only_token": ErrorCode(("action", "entity"), "a read-only token cannot do this"),
    "forbidden_fields": ErrorCode(("fields",), "fields the caller may read but not change were sent"),
    "upload_forbidden": ErrorCode(("field", "entity"), "the caller may not set this attachment field"),
    "needs_admin": ErrorCode(("right",), "this needs a role with the admin right named"),
    "still_linked": ErrorCode(("count", "entity", "field"),
                              "records the caller may read still link to this one (count of entity, through field)"),
    "still_linked_unseen": ErrorCode(("entity",), "other records still link to this one"),
    "no_attachment_field": ErrorCode(("entity", "field"), "the entity has no attachment field of that name"),
    "no_audit_entry": ErrorCode(("seq",), "there is no audit entry with that number"),
    "no_such_delivery": ErrorCode(("id",), "there is no delivery with that id"),
    "no_connection_test": ErrorCode(("plugin",), "the plugin offers no connection test"),
    # -- one value (an entry of ``errors``) ---------------------------------------------------
    "invalid": ErrorCode(("rule?",), "a value refused for a reason without a code of its own (a plugin's, or a "
                                       "settings schema's rule); read the message"),
    "required": ErrorCode((), "the field needs a value"),
    "unknown_field": ErrorCode(("name",), "no such field, or not one the caller may read"),
    "read_only": ErrorCode((), "the field is never set by a client"),
    "forbidden_field": ErrorCode((), "the caller may read this field but not change it"),
    "state_locked": ErrorCode((), "the field cannot change while the record is in its current state"),
    "computed": ErrorCode(("expression",), "the field is computed from an expression; it cannot be set"),
    "derived_unstorable": ErrorCode(("entity?", "field?", "id?"), "the change would make a roll-up or computed "
                                                                  "field of another record too large for that "
                                                                  "field (named where the caller may read it)"),
    "rule_failed": ErrorCode(("messages",), "the record breaks one of its entity's rules; messages holds the rule's "
                                            "message per language, the message is in the caller's"),
    "not_an_object": ErrorCode((), "expected a JSON object"),
    "not_text": ErrorCode((), "expected text"),
    "nul_character": ErrorCode((), "text cannot contain the NUL character"),
    "not_a_number": ErrorCode((), "expected a (finite) number"),
    "not_whole": ErrorCode((), "expected a whole number"),
    "number_too_large": ErrorCode((), "a whole number beyond 64 bits"),
    "too_many_digits": ErrorCode(("digits",), "more digits before the decimal point than the field holds"),
    "too_many_decimals": ErrorCode(("places",), "more decimal places than the field holds"),
    "not_boolean": ErrorCode((), "expected true or false"),
    "not_a_date": ErrorCode((), "expected a date (YYYY-MM-DD, no time of day)"),
    "not_a_datetime": ErrorCode((), "expected a date and time with a time zone"),
    "not_an_option": ErrorCode(("options",), "not one of the field's options"),
    "not_a_list": ErrorCode((), "expected a list (of choices, or of child rows)"),
    "not_a_link": ErrorCode(("entity",), "expected the id of a record of the entity"),
    "not_json": ErrorCode((), "expected a JSON value"),
    "not_an_upload": ErrorCode((), "expected an uploaded file: {key} (the key its upload returned)"),
    "out_of_range": ErrorCode((), "a value beyond what can be stored (a time past the year 9999)"),
    "too_long": ErrorCode(("max",), "more characters than the field holds"),
    "below_min": ErrorCode(("min",), "less than the field's minimum"),
    "above_max": ErrorCode(("max",), "more than the field's maximum"),
    "not_between": ErrorCode(("min", "max"), "outside the field's range"),
    "pattern_mismatch": ErrorCode(("pattern",), "does not match the field's pattern"),
    "not_an_email": ErrorCode((), "not an email address"),
    "not_a_url": ErrorCode((), "not an http(s) address"),
    "not_a_mobile": ErrorCode((), "not a mainland China mobile number"),
    "uscc_length": ErrorCode(("length",), "a unified social credit code has 18 characters"),
    "uscc_characters": ErrorCode((), "a unified social credit code has a character it cannot have"),
    "uscc_check_character": ErrorCode((), "a unified social credit code whose check character does not match"),
    "unique": ErrorCode(("entity?", "holder?"),
                        "another record has this value (holder: its id, when the caller may read it)"),
    "no_such_row": ErrorCode(("id",), "a child row id that is not one of this record's rows"),
    "outside_scope": ErrorCode(("entity", "action"),
                               "the write would put the record outside the rows the caller may act on"),
    "empty_comment": ErrorCode((), "a comment needs some text"),
    "no_such_upload": ErrorCode((), "no upload of the caller's with this key for this field"),
    "upload_held_elsewhere": ErrorCode((), "the file is attached to another record"),
    "file_type": ErrorCode(("types",), "the field does not accept this type of file"),
    "file_too_large": ErrorCode(("kb",), "the file is larger than the field accepts"),
    "bad_username": ErrorCode((), "a username has 1 to 150 characters without spaces"),
    "taken": ErrorCode((), "the name is already taken"),
    "too_short": ErrorCode(("min",), "fewer characters than needed"),
    "not_changeable": ErrorCode((), "this member cannot be changed here"),
    "token_days": ErrorCode(("max",), "a token lasts 1 to max days"),
    "wrong_type": ErrorCode(("types",), "a JSON member of the wrong type"),
    "bad_parameter": ErrorCode(("parameter",), "a query parameter, header or JSON member that cannot be used "
                                               "as sent; the message says what to send"),
    "metadata_changed": ErrorCode(("kind", "name", "change"), "a metadata document that was added, changed or "
                                                              "removed since the version an edit was made on"),
    "malformed_edit": ErrorCode((), "a metadata edit not of the shape {put: [documents], remove: [[kind, name]]}"),
    "link_not_chosen": ErrorCode(("text",), "text typed in a link box that names no record, or several: "
                                            "pick one from the list"),
    "no_such_user": ErrorCode(("user",), "no user with this username or id"),
    "inactive_user": ErrorCode(("user",), "the user is deactivated and cannot own records"),
    "same_owner": ErrorCode((), "a transfer to the user the records already belong to"),
    "replay_too_large": ErrorCode(("count", "max"), "a replay of more deliveries than one call replays; "
                                                    "choose a shorter time range"),
    "external_id_taken": ErrorCode(("system", "entity", "external_id", "record_id", "linked_record_id?"),
                                   "the external id is already linked to another record of the entity "
                                   "(linked_record_id: that record, when the caller may read it)"),
    "record_already_linked": ErrorCode(("system", "entity", "external_id", "record_id", "linked_external_id"),
                                       "the record already has another id in that system"),
}


#: the code of a refusal that has only its HTTP status to go by (werkzeug's own)
_STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 409: "conflict", 412: "stale_version", 413: "too_large",
                 415: "unsupported_media_type", 422: "invalid_values", 429: "locked"}


def status_code(status: int) -> str:
    """The code of a refusal known only by its HTTP status."""
    return _STATUS_CODES.get(status, "bad_request" if 400 <= status < 500 else "error")


def error_entry(field: str, code: str, message: str, /, **params: Any) -> dict[str, Any]:
    """One entry of an error's ``errors``: where (a field path; "" for the request as a
    whole), what kind (``code``), the values its message quotes (``params``) and the
    message in English."""
    return {"field": field, "code": code, "params": params, "message": message}


def as_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` in the shape every entry has. An entry made without a code (by a plugin,
    say) gets ``invalid``, which tells a client to read the message."""
    return {**entry, "field": entry.get("field") or "", "code": entry.get("code") or "invalid",
            "params": dict(entry.get("params") or {}), "message": str(entry.get("message", ""))}


class InvalidValue(ValueError):
    """A value a field type or a validator refuses, with a code and the values its message
    quotes beside the English message (``str(error)``). A ValueError still, so a caller that
    tries a conversion and catches ValueError keeps working."""

    def __init__(self, code: str, message: str, /, **params: Any):
        super().__init__(message)
        self.code = code
        self.message = message
        self.params = params

    def entry(self, field: str) -> dict[str, Any]:
        """This refusal as the error entry of ``field``."""
        return error_entry(field, self.code, self.message, **self.params)


def _code_of(problem_type: str) -> str:
    """The code a problem type implies: ``.../stale-version`` -> ``stale_version``."""
    if problem_type == "about:blank":
        return "error"
    return problem_type.rstrip("/").rsplit("/", 1)[-1].replace("-", "_")


class LoomError(Exception):
    """Base of every error Loom reports to a user or client.

    ``code`` says what kind of refusal it is (by default the class's, which follows its
    problem type) and ``params`` the values its detail quotes; ``errors`` lists the
    entries, each ``{field, code, params, message}``."""

    status = 500
    type = "about:blank"
    title = "Internal error"
    #: the code of this class of error; empty: the last part of ``type``
    code = ""

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None,
                 code: str | None = None, params: Mapping[str, Any] | None = None):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = [as_entry(e) for e in errors or []]
        self.code = code or type(self).code or _code_of(type(self).type)
        self.params = dict(params or {})

    def as_entry(self) -> dict[str, Any]:
        """The refusal as a whole, as an error entry (field ""): what a screen shows where
        there are no entries of single values."""
        return error_entry("", self.code, self.detail, **self.params)

    def to_problem(self) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            "params": self.params,
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
    code = "invalid_values"


class MetadataError(LoomError):
    """A metadata document, or a change to the live metadata, that cannot be accepted.

    ``problems`` carries every finding (file, line, path, message) so that one run
    reports them all.
    """

    status = 422
    type = "https://loom.dev/problems/metadata"
    title = "Invalid metadata"
    code = "invalid_metadata"

    def __init__(self, problems: list[Any] | str):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        detail = "\n".join(str(p) for p in self.problems)
        super().__init__(detail, errors=[error_entry(getattr(p, "path", ""), "invalid_metadata", str(p))
                                         for p in self.problems])
