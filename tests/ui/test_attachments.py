"""Attachment fields: upload with the field's size and type limits, download only for
those who may read the record and the field."""

from __future__ import annotations

import io
import re

import pytest

from .conftest import PASSWORD, sign_in


@pytest.fixture
def contracts(apply_metadata, make_entity, make_user):
    apply_metadata(
        make_entity("contract", [
            {"name": "title", "type": "string", "required": True},
            {"name": "scan", "type": "attachment", "max_size": 2048, "accept": [".pdf", ".txt"]},
            {"name": "secret_scan", "type": "attachment"},
        ], title_field="title", label={"en": "Contract", "zh": "合同"}),
        {"kind": "role", "name": "clerk", "permissions": {
            "contract": {"actions": ["read", "create", "update"], "fields": {"secret_scan": "none"}}}},
    )
    make_user("admin", superuser=True, password=PASSWORD)
    make_user("clerk", roles=["clerk"], password=PASSWORD)


def _upload(client, data: dict, record: int | None = None):
    url = f"/r/contract/{record}/edit" if record else "/r/contract/new"
    return client.post(url, data, htmx="record-form", content_type="multipart/form-data")


def test_an_upload_is_checked_kept_and_served_to_readers_only(loom_app, contracts):
    admin = sign_in(loom_app, "admin")
    form = admin.get("/r/contract/new").get_data(as_text=True)
    assert 'type="file" id="f-scan" name="scan" accept=".pdf,.txt"' in " ".join(form.split())
    too_big = _upload(admin, {"title": "Big", "scan": (io.BytesIO(b"x" * 4096), "big.pdf")})
    assert too_big.status_code == 422 and "larger than 2 KB" in too_big.get_data(as_text=True)
    wrong = _upload(admin, {"title": "Exe", "scan": (io.BytesIO(b"MZ"), "tool.exe")})
    assert wrong.status_code == 422 and "not accepted" in wrong.get_data(as_text=True)
    saved = _upload(admin, {"title": "Deal", "scan": (io.BytesIO(b"%PDF-1.4 contract"), "../../合同 <1>.pdf"),
                            "secret_scan": (io.BytesIO(b"secret"), "secret.txt")})
    assert saved.status_code == 204
    record = int(re.search(r"/r/contract/(\d+)", saved.headers["HX-Location"]).group(1))
    page = admin.get(f"/r/contract/{record}").get_data(as_text=True)
    assert "合同 &lt;1&gt;.pdf" in page and "../" not in page
    with admin.get(f"/r/contract/{record}/_file/scan") as download:
        assert download.status_code == 200 and download.data == b"%PDF-1.4 contract"
        assert download.mimetype == "application/octet-stream"
        assert download.headers["Content-Disposition"].startswith("attachment")
    clerk = sign_in(loom_app, "clerk")
    assert "secret.txt" not in clerk.get(f"/r/contract/{record}").get_data(as_text=True)
    assert clerk.get(f"/r/contract/{record}/_file/secret_scan").status_code == 404
    with clerk.get(f"/r/contract/{record}/_file/scan") as download:
        assert download.status_code == 200
    # saving without choosing a file keeps it; ticking "remove" removes it
    edit = clerk.get(f"/r/contract/{record}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', edit).group(1)
    assert _upload(clerk, {"version": version, "title": "Deal 2"}, record).status_code == 204
    assert "合同 &lt;1&gt;.pdf" in clerk.get(f"/r/contract/{record}").get_data(as_text=True)
    edit = clerk.get(f"/r/contract/{record}/edit").get_data(as_text=True)
    version = re.search(r'name="version" value="(\d+)"', edit).group(1)
    assert _upload(clerk, {"version": version, "title": "Deal 2", "_remove.scan": "true"}, record).status_code == 204
    assert clerk.get(f"/r/contract/{record}/_file/scan").status_code == 404


def _kept_files(loom_app) -> tuple[list[str], list[str]]:
    """(upload keys recorded, files in the instance folder)."""
    import sqlalchemy as sa

    from loom.records.files import app_files, uploads

    with loom_app.app_context(), loom_app.extensions["loom"].engine.connect() as conn:
        keys = list(conn.execute(sa.select(uploads.c.key)).scalars())
        folder = app_files().folder
        return keys, sorted(p.name for p in folder.glob("*/*")) if folder.exists() else []


def test_a_failed_form_save_leaves_no_file_behind(loom_app, contracts):
    admin = sign_in(loom_app, "admin")
    # the title is missing: the record is refused after the files were kept
    refused = _upload(admin, {"title": "", "scan": (io.BytesIO(b"%PDF-1.4"), "a.pdf"),
                              "secret_scan": (io.BytesIO(b"secret"), "s.txt")})
    assert refused.status_code == 422
    assert _kept_files(loom_app) == ([], [])
    # the second file is refused after the first was kept
    wrong = _upload(admin, {"title": "t", "scan": (io.BytesIO(b"MZ"), "tool.exe"),
                            "secret_scan": (io.BytesIO(b"secret"), "s.txt")})
    assert wrong.status_code == 422
    assert _kept_files(loom_app) == ([], [])
    saved = _upload(admin, {"title": "t", "scan": (io.BytesIO(b"%PDF-1.4"), "a.pdf")})
    assert saved.status_code == 204
    keys, files = _kept_files(loom_app)
    assert len(keys) == 1 and files == keys
    # a failed edit (a stale version) keeps the record's file and leaves the new one nowhere
    record = int(re.search(r"/r/contract/(\d+)", saved.headers["HX-Location"]).group(1))
    stale = _upload(admin, {"version": "99", "title": "t2", "_base": "{}",
                            "scan": (io.BytesIO(b"%PDF-1.5"), "b.pdf")}, record)
    assert stale.status_code == 409
    assert _kept_files(loom_app) == (keys, files)
