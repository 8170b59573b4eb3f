"""Attachment fields on the screens: a form's chosen file is kept through the platform's
file store (``loom.records.files``: the field's limits, the uploader recorded), and a
record's file is served only to someone who may read the record and the field, and only
while that record holds it.

The record stores ``{key, name, size, content_type}``; the name is only ever shown and
offered as the download name (cleaned of control characters), never used as a path.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import g, send_file
from werkzeug.datastructures import FileStorage

from loom.errors import NotFound
from loom.metadata.model import Entity, Field
from loom.records.files import app_files, display_name
from loom.ui.i18n import gettext
from loom.ui.pages import pages
from loom.ui.screens import service

log = logging.getLogger(__name__)


def store(entity: Entity, f: Field, upload: FileStorage, field_path: str) -> dict[str, Any]:
    """Keep a file chosen in a form for field ``f``, uploaded by the signed-in user; refuses
    (422, naming ``field_path``) a file over the field's size limit or of a type it does not
    accept. The key is remembered for the request, so a failed save removes the file."""
    value = app_files().save(g.principal, entity, f, upload.filename or "", upload.mimetype, upload.stream,
                             field_path)
    g.setdefault("form_uploads", []).append(value["key"])
    return value


@pages.teardown_request
def discard_form_uploads(_exc: BaseException | None = None) -> None:
    """At the end of every screen request, remove the files its form kept that no record
    took (the save failed, however it failed): a failed save leaves no file behind."""
    keys = g.pop("form_uploads", [])
    if not keys:
        return
    try:
        app_files().discard(keys)
    except Exception:  # the reply is already decided; remove_orphans takes them later
        log.exception("could not remove the uploads of a failed save")


@pages.get("/r/<entity>/<int:record_id>/_file/<field_name>")
def attachment(entity: str, record_id: int, field_name: str):
    """The file in a record's attachment field, for a user who may read both, while the
    record holds it through that field."""
    svc = service(entity)
    f = svc.entity.all_fields.get(field_name)
    if f is None or f.type != "attachment" or field_name not in svc.readable():
        raise NotFound(gettext("There is no such file."))
    value = svc.get(record_id, [field_name]).get(field_name)
    files = app_files()
    path = files.path(value.get("key")) if isinstance(value, dict) else None
    if path is None or not path.exists() or not files.held_by(value["key"], entity, field_name, record_id):
        raise NotFound(gettext("There is no such file."))
    # always a download, never shown inline: an uploaded page or image cannot run here
    return send_file(path, mimetype="application/octet-stream", as_attachment=True,
                     download_name=display_name(value.get("name") or "file"), max_age=0)
