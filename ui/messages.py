"""Errors in the interface language: each error code Loom gives (``loom.errors``) has a
sentence here, filled in with the error's params, so the screens never read the English
message to find out what went wrong. A code this table does not know (a plugin's) shows
its message as it is.

Works wherever there is an app context and a locale (a request, or a background job
under ``flask_babel.force_locale``): entity and field names come from the app's live
metadata, not from the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import current_app

from loom.errors import LoomError
from loom.metadata.formatting import label_text
from loom.ui.i18n import current_locale, join, label, lazy_gettext

#: the actions a refusal may name, as a verb that fits "You may not ... records"
ACTION_LABELS = {"read": lazy_gettext("read"), "create": lazy_gettext("create"), "update": lazy_gettext("change"),
                 "delete": lazy_gettext("delete"), "export": lazy_gettext("export"), "import": lazy_gettext("import"),
                 "approve": lazy_gettext("approve"), "comment": lazy_gettext("comment on"),
                 "transfer": lazy_gettext("transfer")}
#: the admin rights a refusal may name (roles declare them as ``admin: [...]``)
ADMIN_RIGHT_LABELS = {"audit": lazy_gettext("audit log"), "users": lazy_gettext("users"),
                      "teams": lazy_gettext("teams"), "roles": lazy_gettext("roles"),
                      "metadata": lazy_gettext("metadata")}

#: what each code says, with its params in place
MESSAGES = {
    # one value
    "required": lazy_gettext("This field is required."),
    "unknown_field": lazy_gettext("There is no field “%(name)s” to use here."),
    "read_only": lazy_gettext("This field cannot be changed."),
    "forbidden_field": lazy_gettext("You may read this field but not change it."),
    "state_locked": lazy_gettext("This field cannot change in the record's current state."),
    "computed": lazy_gettext("This field is computed; it cannot be entered."),
    "derived_unstorable": lazy_gettext("This change would make a value Loom works out from it too large to store."),
    "rule_failed": lazy_gettext("%(messages)s"),
    "not_an_object": lazy_gettext("Send the values as a JSON object."),
    "not_text": lazy_gettext("Enter text."),
    "nul_character": lazy_gettext("The text has a character that cannot be stored."),
    "not_a_number": lazy_gettext("Enter a number."),
    "not_whole": lazy_gettext("Enter a whole number."),
    "number_too_large": lazy_gettext("The number is too large."),
    "too_many_digits": lazy_gettext("At most %(digits)s digits before the decimal point."),
    "too_many_decimals": lazy_gettext("At most %(places)s decimal places."),
    "not_boolean": lazy_gettext("Choose yes or no."),
    "not_a_date": lazy_gettext("Enter a date."),
    "not_a_datetime": lazy_gettext("Enter a date and time."),
    "not_an_option": lazy_gettext("Must be one of: %(options)s."),
    "not_a_list": lazy_gettext("Enter a list of values."),
    "not_a_link": lazy_gettext("Pick a record from the suggestions."),
    "not_json": lazy_gettext("Enter valid JSON."),
    "not_an_upload": lazy_gettext("Upload a file."),
    "out_of_range": lazy_gettext("The value is out of range."),
    "too_long": lazy_gettext("At most %(max)s characters."),
    "below_min": lazy_gettext("Must be at least %(min)s."),
    "above_max": lazy_gettext("Must be at most %(max)s."),
    "not_between": lazy_gettext("Must be between %(min)s and %(max)s."),
    "pattern_mismatch": lazy_gettext("The value does not have the required format."),
    "not_an_email": lazy_gettext("Enter an email address like name@example.com."),
    "not_a_url": lazy_gettext("Enter a web address starting with http:// or https://."),
    "not_a_mobile": lazy_gettext("A mobile number has 11 digits and starts with 1 (e.g. 13812345678)."),
    "uscc_length": lazy_gettext("A unified social credit code has 18 characters, not %(length)s."),
    "uscc_characters": lazy_gettext("A unified social credit code uses digits and capital letters other than "
                                    "I, O, S, V, Z."),
    "uscc_check_character": lazy_gettext("The check character (the 18th) does not match; the code is mistyped."),
    "unique": lazy_gettext("Another record already has this value."),
    "no_such_row": lazy_gettext("This row is not part of the record any more; reload the page."),
    "outside_scope": lazy_gettext("This change would put the record outside the records you may %(action)s."),
    "empty_comment": lazy_gettext("Write a comment first."),
    "no_such_upload": lazy_gettext("Upload the file here first, then save."),
    "upload_held_elsewhere": lazy_gettext("This file belongs to another record; upload it again to attach it here."),
    "file_type": lazy_gettext("This file type is not accepted here; use %(types)s."),
    "file_too_large": lazy_gettext("The file is larger than %(kb)s KB."),
    "bad_username": lazy_gettext("A username has 1 to 150 characters and no spaces."),
    "taken": lazy_gettext("This name is already taken."),
    "too_short": lazy_gettext("At least %(min)s characters."),
    "not_changeable": lazy_gettext("This cannot be changed here."),
    "token_days": lazy_gettext("A token lasts 1 to %(max)s days."),
    "wrong_type": lazy_gettext("This value has the wrong type."),
    "bad_parameter": lazy_gettext("This value cannot be used as sent."),
    "metadata_changed": lazy_gettext("%(kind)s %(name)s was %(change)s by someone else meanwhile."),
    "malformed_edit": lazy_gettext("This change is not in the shape Loom expects."),
    "no_such_user": lazy_gettext("There is no user “%(user)s”."),
    "inactive_user": lazy_gettext("%(user)s is deactivated and cannot own records."),
    "same_owner": lazy_gettext("The records already belong to this user; choose another."),
    # a refusal as a whole
    "stale_version": lazy_gettext("Someone else changed this record in the meantime; reload it and try again."),
    "write_conflict": lazy_gettext("Another change to the same records was being saved at the same moment, so "
                                   "nothing was saved. Save again."),
    "not_stored": lazy_gettext("The call could not be stored, so it was not taken. Send it again."),
    "derived_conflict": lazy_gettext("Records this change updates were being changed by someone else at the same "
                                     "moment, so nothing was saved. Save again."),
    "no_such_entity": lazy_gettext("There is no record type “%(entity)s”; check the address."),
    "no_such_record": lazy_gettext("There is no %(entity)s #%(id)s, or it is not yours to see."),
    "forbidden_action": lazy_gettext("You may not %(action)s %(entity)s records."),
    "read_only_token": lazy_gettext("A read-only token may not %(action)s %(entity)s records."),
    "forbidden_fields": lazy_gettext("You may read some of these fields but not change them."),
    "upload_forbidden": lazy_gettext("You may not set %(field)s on %(entity)s records."),
    "needs_admin": lazy_gettext("This needs a role with the admin right “%(right)s”."),
    "still_linked": lazy_gettext("%(count)s other record(s) still link to this one; change or delete them first."),
    "still_linked_unseen": lazy_gettext("Other records still link to this one; change or delete them first."),
    "no_attachment_field": lazy_gettext("There is no such file."),
    "no_audit_entry": lazy_gettext("There is no audit entry %(seq)s."),
    "no_such_delivery": lazy_gettext("There is no delivery %(id)s."),
    "no_connection_test": lazy_gettext("The plugin %(plugin)s offers no connection test."),
    "replay_too_large": lazy_gettext("This would replay %(count)s deliveries; at most %(max)s are replayed at "
                                     "once. Choose a shorter time range."),
    "external_id_taken": lazy_gettext("%(system)s id “%(external_id)s” already belongs to another %(entity)s "
                                      "record; unlink it there first."),
    "record_already_linked": lazy_gettext("This record already has %(system)s id “%(linked_external_id)s”; "
                                          "unlink it first."),
}

#: what a refusal of each HTTP status means, said whole in the interface language
REFUSALS = {400: lazy_gettext("Loom cannot use what was sent; check the address or the form and try again."),
            403: lazy_gettext("Your roles do not allow this."),
            404: lazy_gettext("There is no such page or record; check the address."),
            405: lazy_gettext("This address does not take this kind of request."),
            409: lazy_gettext("This conflicts with other records."),
            412: lazy_gettext("Someone else changed this record in the meantime; reload it and try again."),
            422: lazy_gettext("Some values are not valid."),
            423: lazy_gettext("This is locked for now; try again later.")}

#: codes that say only what kind of error it was: their sentence stands in for a message
#: in another language, never for one already in the interface language (a screen's own)
GENERAL = {"error": lazy_gettext("Something went wrong"), "bad_request": REFUSALS[400],
           "unsupported_media_type": REFUSALS[400],
           "method_not_allowed": REFUSALS[405], "too_large": lazy_gettext("Too large"),
           "unauthorized": lazy_gettext("Please sign in"), "forbidden": REFUSALS[403],
           "not_found": REFUSALS[404], "conflict": REFUSALS[409], "invalid_values": REFUSALS[422],
           "invalid_metadata": REFUSALS[422], "locked": REFUSALS[423],
           "invalid": lazy_gettext("This value is not valid."),
           # the link box says which field and text in the interface language already
           "link_not_chosen": lazy_gettext("Choose a record from the list.")}


def _entity_label(name: Any) -> str:
    entity = current_app.extensions["loom"].metadata.live().model.entities.get(str(name))
    return label(entity) if entity is not None else str(name)


def _field_label(entity_name: Any, field_name: Any) -> str:
    entity = current_app.extensions["loom"].metadata.live().model.entities.get(str(entity_name))
    f = entity.all_fields.get(str(field_name)) if entity is not None else None
    return label(f) if f is not None else str(field_name)


def _shown(name: str, value: Any, params: Mapping[str, Any]) -> str:
    """A param as the sentence shows it: names of entities, fields, actions and rights
    by their labels, lists joined the way the interface language joins them."""
    if name == "entity":
        return _entity_label(value)
    if name == "field":
        return _field_label(params.get("entity"), value)
    if name == "action":
        return str(ACTION_LABELS.get(value, value))
    if name == "right":
        return str(ADMIN_RIGHT_LABELS.get(value, value))
    if name == "messages" and isinstance(value, Mapping):  # a rule's own message, per language
        return label_text(value, current_locale())
    if isinstance(value, list | tuple):
        return join(value)
    return str(value)


def _in_interface_language(text: str) -> bool:
    """Whether ``text`` is already in the interface language: always in English; in
    Chinese, when it has Chinese characters (a screen's own message)."""
    return current_locale() == "en" or any("\u4e00" <= ch <= "\u9fff" for ch in text)


def message_text(entry: Mapping[str, Any]) -> str:
    """An error entry (``{code, params, message}``) in the interface language: its code's
    sentence; for a code that only names a kind of error, that kind unless the message is
    in the interface language already; the message itself for a code Loom does not know."""
    code = entry.get("code") or ""
    message = str(entry.get("message") or "")
    params = entry.get("params") or {}
    template = MESSAGES.get(code)
    if template is not None:
        try:
            return str(template) % {name: _shown(name, value, params) for name, value in params.items()}
        except (KeyError, TypeError, ValueError):  # params that do not fit the sentence
            return message
    if code in GENERAL and not _in_interface_language(message):
        return str(GENERAL[code])
    return message


def detail_text(error: LoomError) -> str:
    """What a refusal says as a whole (its detail), in the interface language."""
    return message_text(error.as_entry())


def refusal_text(status: int, entry: Mapping[str, Any] | None = None) -> str:
    """A refusal in the interface language, whole: the translation of its entry (see
    ``LoomError.as_entry``), else what its status means; never English mixed into another
    language. Without an entry, in English, "" (the caller has its own words)."""
    if entry is not None:
        text = message_text(entry)
        if _in_interface_language(text):
            return text
    elif current_locale() == "en":
        return ""
    return str(REFUSALS.get(status, REFUSALS[400]))
