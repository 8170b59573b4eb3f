"""Files uploaded into attachment fields: kept in the instance folder under a random key,
checked against the field's size and type limits, and served only to users who may read
the record and the field.

The record stores ``{key, name, size, content_type}``; the name is only ever shown and
offered as the download name, never used as a path.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from pathlib import Path, PurePath
from typing import Any

from flask import current_app, send_file
from werkzeug.datastructures import FileStorage

from loom.errors import NotFound, ValidationError
from loom.metadata.model import Field
from loom.ui.i18n import gettext
from loom.ui.pages import pages
from loom.ui.screens import service

_KEY = re.compile(r"^[A-Za-z0-9_-]{20,40}$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


def _folder() -> Path:
    return Path(current_app.instance_path) / "attachments"


def _path(key: str) -> Path:
    if not _KEY.match(key):
        raise NotFound(gettext("There is no such file."))
    return _folder() / key[:2] / key


def display_name(filename: str) -> str:
    """The last part of an uploaded name, without control characters."""
    name = _UNPRINTABLE.sub("", PurePath(filename.replace("\\", "/")).name).strip()
    return name[:200] or "file"


def accepts(f: Field, name: str, content_type: str) -> bool:
    """Whether the field's ``accept`` list (extensions like ``.pdf``, types like
    ``image/png`` or ``image/*``) admits the file; no list admits anything."""
    if not f.accept:
        return True
    suffix = PurePath(name).suffix.lower()
    guessed = mimetypes.guess_type(name)[0] or ""
    for rule in (a.strip().lower() for a in f.accept):
        if rule.startswith(".") and suffix == rule:
            return True
        if rule.endswith("/*") and guessed.startswith(rule[:-1]) and content_type.startswith(rule[:-1]):
            return True
        if "/" in rule and not rule.endswith("/*") and guessed == rule:
            return True
    return False


def store(f: Field, upload: FileStorage, field_path: str) -> dict[str, Any]:
    """Keep an uploaded file for field ``f``; refuses (422, naming ``field_path``) a file
    over the field's size limit or of a type it does not accept."""
    name = display_name(upload.filename or "")
    content_type = (upload.mimetype or "application/octet-stream")[:100]
    if not accepts(f, name, content_type):
        raise ValidationError("file type not accepted", errors=[{"field": field_path, "message": gettext(
            "This file type is not accepted here; use %(types)s.", types=", ".join(f.accept))}])
    data = upload.read(f.max_size + 1 if f.max_size else -1)
    if f.max_size and len(data) > f.max_size:
        raise ValidationError("file too large", errors=[{"field": field_path, "message": gettext(
            "The file is larger than %(size)s KB.", size=max(1, f.max_size // 1024))}])
    key = secrets.token_urlsafe(24)
    path = _path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"key": key, "name": name, "size": len(data), "content_type": content_type}


@pages.get("/r/<entity>/<int:record_id>/_file/<field_name>")
def attachment(entity: str, record_id: int, field_name: str):
    """The file in a record's attachment field, for a user who may read both."""
    svc = service(entity)
    f = svc.entity.all_fields.get(field_name)
    if f is None or f.type != "attachment" or field_name not in svc.access.readable():
        raise NotFound(gettext("There is no such file."))
    value = svc.get(record_id, [field_name]).get(field_name)
    if not value:
        raise NotFound(gettext("There is no such file."))
    path = _path(value["key"])
    if not path.exists():
        raise NotFound(gettext("There is no such file."))
    # always a download, never shown inline: an uploaded page or image cannot run here
    return send_file(path, mimetype="application/octet-stream", as_attachment=True,
                     download_name=value.get("name") or "file", max_age=0)
