"""The one CSV writer of Loom: every CSV the app writes (the API's export, the screens'
export, an import's rejected rows, the audit log) goes through ``csv_chunks``, and every
cell through ``safe_cell``, the one guard against formula injection.

Spreadsheet programs run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a
formula, and also one that starts with a TAB or CR followed by one; such text gets a
leading quote. The guard sees the text as it is written (a link's title, a JSON dump),
after every rendering, so no rendering can slip past it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: plain numbers keep their sign ("-12.5" stays a number, not text)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
CHUNK = 64 * 1024


def safe_cell(value: Any) -> Any:
    """A cell as written: text a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value


def csv_chunks(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, bom: bool = False) -> Iterator[str]:
    """CSV text in chunks of about 64 KB, for streaming: the header, then each row, every
    cell through ``safe_cell``. ``bom`` starts with a byte-order mark, so spreadsheet
    programs read UTF-8 (Chinese) text right."""
    buffer = io.StringIO()
    if bom:
        buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        if buffer.tell() > CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def plain_cell(value: Any) -> Any:
    """A record's value as the API's CSV shows it: a link as its title (``#id`` without
    one), a list or object as JSON; the guard runs on the result."""
    if isinstance(value, dict) and "id" in value and set(value) <= {"id", "title"}:
        return value["title"] if value.get("title") is not None else f"#{value['id']}"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return value


def csv_lines(columns: Sequence[str], records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Records (the API's JSON form) as CSV, one column per name in ``columns``."""
    return csv_chunks(columns, ([plain_cell(record.get(c)) for c in columns] for record in records))
