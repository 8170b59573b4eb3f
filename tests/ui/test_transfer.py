"""Import from CSV and Excel (mapping, validation of every row, the rejected-rows report)
and export of the current view."""

from __future__ import annotations

import csv
import io
import json
import re
import time

from openpyxl import Workbook, load_workbook


def _wait_for(client, entity: str, job: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        html = client.hx(f"/r/{entity}/_import/{job}/progress", target="import-progress").get_data(as_text=True)
        if "every 1s" not in html:
            return html
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def _upload(client, entity: str, name: str, content: bytes):
    return client.post(f"/r/{entity}/_import", {"file": (io.BytesIO(content), name)},
                       content_type="multipart/form-data")


def test_an_excel_import_maps_labels_and_resolves_links_by_title(page_client, demo, loom_app):
    client = page_client("admin")
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["姓名", "所属客户", "Mobile", "unused column"])
    sheet.append(["Li Lei", "Acme Trading", 13812345678, "x"])
    sheet.append(["Han Meimei", demo["customers"][1], "13912345678", "y"])
    sheet.append(["Nobody", "No Such Company", "13712345678", "z"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    uploaded = _upload(client, "contact", "contacts.xlsx", buffer.getvalue())
    assert uploaded.status_code == 303
    job_url = uploaded.headers["Location"]
    job = int(job_url.rsplit("/", 1)[1])
    mapping = client.get(job_url).get_data(as_text=True)
    assert "3 rows to import" in mapping and "Li Lei" in mapping
    assert "no record named “No Such Company”" in mapping  # the preview checks its rows
    chosen = dict(re.findall(r'<select id="column-(\d)".*?<option value="(\w*)" selected', mapping, re.S))
    assert chosen == {"0": "name", "1": "customer", "2": "mobile"}
    started = client.post(job_url, {"column-0": "name", "column-1": "customer", "column-2": "mobile", "column-3": ""})
    assert started.status_code == 303
    done = _wait_for(client, "contact", job)
    assert "2 imported" in done and "1 rejected" in done and "No Such Company" in done
    listing = client.get("/r/contact").get_data(as_text=True)
    assert "Li Lei" in listing and "Han Meimei" in listing and "Nobody" not in listing
    report = client.get(f"/r/contact/_import/{job}/rejected.csv")
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:3] == ["Line", "Reason", "姓名"] and rows[1][0] == "4" and rows[1][2] == "Nobody"
    # the job is its owner's only
    assert page_client("wang").get(job_url).status_code in (403, 404)
    # the audit log has the import with its file and counts, beside each created row
    with loom_app.extensions["loom"].engine.connect() as conn:
        logged = conn.exec_driver_sql("SELECT actor, entity, rows, outcome, detail FROM loom_audit "
                                      "WHERE action = 'record.import' AND outcome = 'ok'").one()
        refused = conn.exec_driver_sql("SELECT actor, entity FROM loom_audit "
                                       "WHERE action = 'record.import' AND outcome = 'denied'").all()
        created = conn.exec_driver_sql("SELECT count(*) FROM loom_audit WHERE action = 'record.create' "
                                       "AND entity = 'contact'").scalar()
    assert logged[:4] == ("admin", "contact", 2, "ok") and created == 2
    assert [tuple(r) for r in refused] == [("wang", "contact")]  # wang's look at the job was refused
    assert json.loads(logged[4]) == {"file": "contacts.xlsx", "job": job, "accepted": 2, "rejected": 1}


def test_files_that_cannot_be_imported_get_a_clear_message(page_client, demo):
    client = page_client("admin")
    cases = [("notes.txt", b"name\nx\n", "Only CSV"), ("empty.csv", b"", "The file is empty"),
             ("header.csv", "客户名称\n".encode(), "no data rows"), ("fake.xlsx", b"not a zip", "not an Excel"),
             ("binary.csv", b"\xff\xfe\x00\x00\x81", "not")]
    for name, content, message in cases:
        response = _upload(client, "customer", name, content)
        assert response.status_code == 400, name
        assert message in response.get_data(as_text=True), name
    gbk = "客户名称,区域\n杭州测试有限公司,华东\n".encode("gb18030")
    assert _upload(client, "customer", "../../etc/gbk.csv", gbk).status_code == 303
    page = client.get("/r/customer/_import").get_data(as_text=True)
    assert "gbk.csv" in page and "../" not in page


def test_an_import_of_rows_violating_uniqueness_reports_them(page_client, demo):
    client = page_client("admin")
    content = "sku,name,price,active\nAC-1,Duplicate,1,yes\nNEW-1,New one,12.50,否\nNEW-2,Bad price,1.234,yes\n"
    job_url = _upload(client, "product", "products.csv", content.encode()).headers["Location"]
    job = int(job_url.rsplit("/", 1)[1])
    client.post(job_url, {"column-0": "sku", "column-1": "name", "column-2": "price", "column-3": "active"})
    done = _wait_for(client, "product", job)
    assert "1 imported" in done and "2 rejected" in done
    assert "Another record already has this value" in done and "At most 2 decimal places" in done
    assert "New one" in client.get("/r/product?search=New").get_data(as_text=True)


def test_export_follows_the_view_and_quotes_formulas(page_client, demo):
    client = page_client("admin")
    client.post("/r/customer/new", {"name": "=HYPERLINK(\"http://x\")", "region": "east"})
    exported = client.get("/r/customer/_export?format=csv&filter%5Bregion%5D%5Bin%5D=east&sort=name")
    assert exported.headers["Content-Disposition"] == 'attachment; filename="customer.csv"'
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    names = [row[rows[0].index("Name")] for row in rows[1:]]
    assert names == ["'=HYPERLINK(\"http://x\")", "Acme Trading", "Gamma Hotels"]
    workbook = load_workbook(io.BytesIO(client.get("/r/customer/_export?format=xlsx&sort=name").get_data()))
    sheet = workbook.worksheets[0]
    values = [row for row in sheet.iter_rows(values_only=True)]
    name_column = values[0].index("Name")
    assert values[1][name_column] == "=HYPERLINK(\"http://x\")"
    assert sheet.cell(row=2, column=name_column + 1).data_type == "s"  # text, not a formula
    assert client.get("/r/customer/_export?format=pdf").status_code == 400


def test_an_import_that_stops_reports_every_row_it_did_not_import(page_client, demo, monkeypatch):
    from loom.ui import importing

    client = page_client("admin")
    content = "".join(["name\n", *(f"Stop test {i}\n" for i in range(600))]).encode()
    job_url = _upload(client, "customer", "stop.csv", content).headers["Location"]
    job = int(job_url.rsplit("/", 1)[1])
    real_chunk, calls = importing.import_chunk, []

    def failing_chunk(svc, rows):
        calls.append(len(rows))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real_chunk(svc, rows)

    monkeypatch.setattr(importing, "import_chunk", failing_chunk)
    monkeypatch.setattr(importing, "CHUNK_ROWS", 250)
    client.post(job_url, {"column-0": "name"})
    done = _wait_for(client, "customer", job)
    assert "Import failed" in done and "250 imported" in done and "350 rejected" in done
    report = client.get(f"/r/customer/_import/{job}/rejected.csv").get_data(as_text=True)
    lines = report.lstrip("\ufeff").splitlines()
    assert len(lines) == 351 and lines[1].startswith("252,Not imported")


def test_every_download_declares_its_type_and_charset_once(page_client, demo):
    client = page_client("admin")
    job_url = _upload(client, "product", "p.csv", b"sku,name,price\nAC-1,Duplicate,1\n").headers["Location"]
    job = int(job_url.rsplit("/", 1)[1])
    client.post(job_url, {"column-0": "sku", "column-1": "name", "column-2": "price"})
    assert "1 rejected" in _wait_for(client, "product", job)
    downloads = {
        "/r/customer/_export?format=csv": "text/csv; charset=utf-8",
        "/r/customer/_export?format=xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        f"/r/product/_import/{job}/rejected.csv": "text/csv; charset=utf-8",
        "/api/v1/customer/_export?format=csv": "text/csv; charset=utf-8",
        "/api/v1/customer/_export?format=jsonl": "application/x-ndjson",
        "/api/v1/_audit/_export?format=csv": "text/csv; charset=utf-8",
        "/api/v1/_audit/_export?format=jsonl": "application/x-ndjson",
    }
    for url, content_type in downloads.items():
        with client.get(url) as response:
            assert response.status_code == 200, url
            assert response.headers.getlist("Content-Type") == [content_type], url
            assert response.headers["Content-Disposition"].startswith("attachment; filename="), url
            assert response.headers["Cache-Control"] == "no-store", url
            assert response.data, url
