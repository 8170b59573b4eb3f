"""An imported spreadsheet (CSV or Excel) as a stream: kept in the database in parts of
1 MiB, read back part by part, its rows read as they are needed.

So an import holds a piece of its file at a time, never the whole of it, however many
rows it has: the upload is stored from the request's spooled file, the mapping page
reads only the file's first rows, the job reads the file as it imports it. Whole-file
values would also be kept alive after use by statement caches (SQLAlchemy keeps the
first statement of each shape it compiles, with its values; SQLite keeps the last values
bound to each cached statement).
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import sqlalchemy as sa

from loom.db import open_write, reading
from loom.errors import BadRequest
from loom.ui.i18n import gettext
from loom.ui.models import import_files

#: bytes of a file per row of ``loom_import_files``
PART = 1 << 20
#: bytes of a file decoded at a time while its encoding is checked
DECODE_PIECE = 64 << 10


# -- keeping a file ---------------------------------------------------------------------------------

def store_file(conn: sa.Connection, job_id: int, source: IO[bytes]) -> None:
    """Keep ``source`` (a binary file, from its start) as the file of import job ``job_id``."""
    source.seek(0)
    statement = import_files.insert()  # the values go with each execution, never into the statement
    part = 0
    while piece := source.read(PART):
        conn.execute(statement, {"job_id": job_id, "part": part, "content": piece})
        part += 1


class StoredFile(io.RawIOBase):
    """The file of an import job, read from the database a part at a time (only the part
    being read is held), with seeking for Excel workbooks (a zip archive)."""

    def __init__(self, engine: sa.Engine, job_id: int):
        super().__init__()
        self.engine = engine
        self.job_id = job_id
        self.position = 0
        self._part: tuple[int, bytes] | None = None
        self._size: int | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """The write transaction this thread has open (an import's preview reads its file
        inside the one it rolls back), else a reading connection."""
        joined = open_write(self.engine)
        if joined is not None:
            yield joined
            return
        with reading(self.engine) as conn:
            yield conn

    @property
    def size(self) -> int:
        if self._size is None:
            with self._connection() as conn:
                self._size = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(import_files.c.content)), 0))
                                          .where(import_files.c.job_id == self.job_id)).scalar_one()
        return self._size

    def readinto(self, buffer: Any) -> int:
        index, offset = divmod(self.position, PART)
        if self._part is None or self._part[0] != index:
            self._part = None  # let the part read last go before the next one comes
            with self._connection() as conn:
                content = conn.execute(sa.select(import_files.c.content).where(
                    import_files.c.job_id == self.job_id, import_files.c.part == index)).scalar()
            self._part = (index, bytes(content or b""))
        data = self._part[1][offset:offset + len(buffer)]
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


def stored_file(engine: sa.Engine, job_id: int) -> IO[bytes]:
    """The file of import job ``job_id``, to read as a stream (``read_table``)."""
    return io.BufferedReader(StoredFile(engine, job_id))


# -- reading a table ----------------------------------------------------------------------------------

def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time(0) else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_table(filename: str, source: IO[bytes]) -> tuple[list[str], Iterator[list[str]]]:
    """The header and the rows of a CSV (UTF-8 or GB18030, as Chinese Excel writes it) or
    an Excel workbook's first sheet, read from ``source`` (a seekable binary file, from its
    start) as the rows are taken; raises BadRequest with a reason a person understands.
    ``source`` is left open."""
    source.seek(0)
    if filename.lower().endswith(".xlsx"):
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(source, read_only=True, data_only=True)
        except Exception:  # openpyxl raises many kinds for a file that is not a workbook
            raise BadRequest(gettext("This file is not an Excel workbook (.xlsx).")) from None
        rows = (list(map(_cell_text, row)) for row in workbook.worksheets[0].iter_rows(values_only=True))
    else:
        encoding, zero_byte = _text_encoding(source)
        if encoding is None:
            raise BadRequest(gettext("This file is not text in UTF-8 or GB18030; save it as CSV UTF-8."))
        if zero_byte:  # in either encoding, a zero byte is only ever the NUL character
            raise BadRequest(gettext("This file is not a CSV file."))
        source.seek(0)
        text = io.TextIOWrapper(io.BufferedReader(_Borrowed(source)), encoding=encoding, newline="")
        rows = ([cell.strip() for cell in row] for row in csv.reader(text))
    header = next(rows, None)
    if not header or not any(header):
        raise BadRequest(gettext("The file is empty: the first row should name the columns."))
    return header, (row for row in rows if any(cell != "" for cell in row))


def _text_encoding(source: IO[bytes]) -> tuple[str | None, bool]:
    """The encoding ``source`` is text in (None when neither), and whether it holds a zero
    byte; checked a piece at a time, keeping nothing it decodes."""
    for encoding in ("utf-8-sig", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        zero_byte = False
        source.seek(0)
        try:
            while piece := source.read(DECODE_PIECE):
                zero_byte = zero_byte or b"\x00" in piece
                decoder.decode(piece)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding, zero_byte
    return None, False


class _Borrowed(io.RawIOBase):
    """``source`` read from where it is, by a reader that may close this without closing
    ``source`` (a text wrapper closes what it reads once it is let go)."""

    def __init__(self, source: IO[bytes]):
        super().__init__()
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.source.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
