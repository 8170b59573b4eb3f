"""Proving the audit log: walking its hash chain, and moving old entries to archive files
without breaking it.

``verify`` recomputes every entry's hash from its content and checks that each entry
names the one before it. An edited entry no longer matches its hash; a removed one
leaves a gap in the sequence; a reordered one no longer follows its predecessor's hash;
entries removed from the end no longer reach the chain head. Archived months are
represented by their last entry's hash, so the chain in the database still starts from
a known point, and the archive files themselves can be walked too.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from loom.audit.log import GENESIS, AuditLog, entry_hash, month_start, partition_name, timestamp
from loom.audit.models import audit_archives, audit_head, audit_log
from loom.db import utcnow, write_transaction
from loom.principal import Principal

#: rows fetched per round trip while walking the chain
BATCH = 5000


@dataclass
class Verdict:
    ok: bool
    checked: int = 0
    #: the last entry that checked out: (seq, hash)
    head: tuple[int, str] = (0, GENESIS)
    problem: str | None = None
    #: the seq of the first entry that was edited, removed or moved
    first_bad: int | None = None
    archives: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "head": {"seq": self.head[0], "hash": self.head[1]},
                "problem": self.problem, "first_bad": self.first_bad, "archives_checked": self.archives}


@dataclass
class _Walk:
    """The state of a walk along the chain."""

    seq: int = 0
    hash: str = GENESIS
    checked: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    def step(self, row: Mapping[str, Any], where: str = "") -> bool:
        seq = row["seq"]
        if entry_hash(row) != row["hash"]:
            self.problems.append((seq, f"entry {seq}{where} was edited: its content does not match its hash"))
            return False
        if seq != self.seq + 1:
            if seq > self.seq + 1:
                missing = f"entry {self.seq + 1}" if seq == self.seq + 2 else f"entries {self.seq + 1} to {seq - 1}"
                self.problems.append((self.seq + 1, f"{missing} {'is' if seq == self.seq + 2 else 'are'} missing: "
                                                    f"removed from the log{where}"))
            else:
                self.problems.append((seq, f"entry {seq}{where} is out of order: it comes after entry {self.seq}"))
            return False
        if row["prev_hash"] != self.hash:
            self.problems.append((seq, f"entry {seq}{where} does not follow entry {self.seq}: its previous hash "
                                       "differs (entries were reordered or replaced)"))
            return False
        self.seq, self.hash = seq, row["hash"]
        self.checked += 1
        return True


def _rows(conn: sa.Connection, *where: Any) -> Iterator[Mapping[str, Any]]:
    """Entries in chain order, streamed from a server-side cursor on PostgreSQL."""
    query = sa.select(audit_log).where(*where).order_by(audit_log.c.seq)
    if conn.dialect.name == "postgresql":
        result = conn.execute(query, execution_options={"stream_results": True, "yield_per": BATCH})
    else:
        result = conn.execute(query)
    try:
        yield from result.mappings()
    finally:
        result.close()


def verify(engine: sa.Engine, *, archive_dir: str | Path | None = None,
           expect: tuple[int, str] | None = None) -> Verdict:
    """Walk the whole chain; with ``archive_dir``, the archived months first. ``expect``
    is a (seq, hash) anchor noted down earlier: the chain must still contain it."""
    walk = _Walk()
    archives = 0
    with engine.connect() as conn:
        archived = conn.execute(sa.select(audit_archives).order_by(audit_archives.c.first_seq)).mappings().all()
        if archive_dir is not None:
            for archive in archived:
                problem = _walk_archive(walk, Path(archive_dir), archive)
                if problem:
                    return _verdict(walk, archives, problem)
                archives += 1
        elif archived:
            # the database's part of the chain starts where the last archive ended
            walk.seq, walk.hash = archived[-1]["last_seq"], archived[-1]["last_hash"]
        anchor_seen = expect is None
        with closing(_rows(conn)) as rows:
            for row in rows:
                if not walk.step(row):
                    return _verdict(walk, archives)
                if expect is not None and row["seq"] == expect[0]:
                    if row["hash"] != expect[1]:
                        walk.problems.append((row["seq"], f"entry {row['seq']} is not the entry noted down "
                                                          "earlier: the chain was rewritten from there on"))
                        return _verdict(walk, archives)
                    anchor_seen = True
        head = conn.execute(sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)).one()
    if expect is not None and not anchor_seen and expect[0] > walk.seq:
        walk.problems.append((walk.seq + 1, f"the log ends at entry {walk.seq}, but entry {expect[0]} was noted "
                                            "down earlier: entries at the end were removed"))
    elif (head.seq, head.hash) != (walk.seq, walk.hash):
        if head.seq > walk.seq:
            message = (f"the log ends at entry {walk.seq}, but its head says {head.seq} entries were written: "
                       "entries at the end were removed")
        else:
            message = f"the chain head (entry {head.seq}) does not match the last entry ({walk.seq})"
        walk.problems.append((walk.seq + 1, message))
    return _verdict(walk, archives)


def check(engine: sa.Engine, audit: AuditLog, *, principal: Principal | None = None, actor: str | None = None,
          archive_dir: str | Path | None = None, expect: tuple[int, str] | None = None) -> Verdict:
    """``verify``, and log the check itself (``audit.verify``, with its result)."""
    verdict = verify(engine, archive_dir=archive_dir, expect=expect)
    audit.add_alone("audit.verify", principal=principal, actor=actor, outcome="ok" if verdict.ok else "error",
                    detail=verdict.as_dict())
    return verdict


def _verdict(walk: _Walk, archives: int, problem: tuple[int, str] | None = None) -> Verdict:
    if problem is None and walk.problems:
        problem = walk.problems[0]
    if problem:
        return Verdict(False, walk.checked, (walk.seq, walk.hash), problem[1], problem[0], archives)
    return Verdict(True, walk.checked, (walk.seq, walk.hash), archives=archives)


def _walk_archive(walk: _Walk, folder: Path, archive: Mapping[str, Any]) -> tuple[int, str] | None:
    path = folder / archive["file"]
    if not path.exists():
        return archive["first_seq"], f"archive {archive['file']} (entries {archive['first_seq']} to " \
                                     f"{archive['last_seq']}) is not in {folder}"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != archive["sha256"]:
        return archive["first_seq"], f"archive {archive['file']} was changed after it was written"
    where = f" (in {archive['file']})"
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not walk.step(_from_json(json.loads(line)), where):
                return walk.problems[0]
    if walk.seq != archive["last_seq"]:
        return walk.seq + 1, f"archive {archive['file']} ends early, at entry {walk.seq}"
    return None


# -- archiving ---------------------------------------------------------------------------


def as_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored entry as an archive line keeps it: every column, verbatim."""
    return {**row, "at": timestamp(row["at"])}


def _from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    at = dt.datetime.strptime(data["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return {**data, "at": at}


@dataclass
class ArchiveFile:
    file: str
    first_seq: int
    last_seq: int
    entries: int


def archive(engine: sa.Engine, before: dt.date, directory: str | Path) -> list[ArchiveFile]:
    """Move every whole month before ``before`` (rounded down to the first of its month)
    out of the database into ``directory``, one ``loom-audit-YYYY-MM.jsonl.gz`` per month,
    oldest first. The database keeps each file's first and last hash and checksum."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = dt.datetime(before.year, before.month, 1, tzinfo=dt.UTC)
    written = []
    with engine.connect() as conn:
        first = conn.execute(sa.select(sa.func.min(audit_log.c.at))).scalar()
    if first is None:
        return written
    if first.tzinfo is None:
        first = first.replace(tzinfo=dt.UTC)
    month = month_start(first.year, first.month)
    while dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC) < cutoff:
        following = month_start(month.year, month.month + 1)
        result = _archive_month(engine, month, following, folder)
        if result is not None:
            written.append(result)
        month = following
    return written


def _archive_month(engine: sa.Engine, month: dt.date, following: dt.date, folder: Path) -> ArchiveFile | None:
    lower = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
    upper = dt.datetime(following.year, following.month, 1, tzinfo=dt.UTC)
    name = f"loom-audit-{month.year:04d}-{month.month:02d}.jsonl.gz"
    path = folder / name
    in_month = [audit_log.c.at >= lower, audit_log.c.at < upper]
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            # no entry may be added to the chain while its oldest part is moved out
            conn.execute(sa.select(audit_head.c.seq).where(audit_head.c.id == 1).with_for_update())
        count, first_row, last_row = 0, None, None
        temporary = path.with_suffix(".part")
        with gzip.open(temporary, "wt", encoding="utf-8", compresslevel=6) as out, \
                closing(_rows(conn, *in_month)) as rows:
            for row in rows:
                out.write(json.dumps(as_json(row), ensure_ascii=False, separators=(",", ":")) + "\n")
                first_row = first_row or dict(row)
                last_row = row
                count += 1
        if count == 0:
            temporary.unlink()
            return None
        digest = hashlib.sha256(temporary.read_bytes()).hexdigest()
        conn.execute(audit_archives.insert().values(
            file=name, first_seq=first_row["seq"], last_seq=last_row["seq"], first_prev_hash=first_row["prev_hash"],
            last_hash=last_row["hash"], entries=count, sha256=digest, created_at=utcnow()))
        _drop_month(conn, month, in_month)
        temporary.replace(path)
    return ArchiveFile(name, first_row["seq"], last_row["seq"], count)


def _drop_month(conn: sa.Connection, month: dt.date, in_month: Iterable[Any]) -> None:
    """Remove a month's entries: detach and drop its partition on PostgreSQL; on SQLite
    delete them with the append-only guard lifted for this transaction only."""
    if conn.dialect.name == "postgresql":
        name = partition_name(month.year, month.month)
        exists = conn.execute(sa.text("SELECT to_regclass(:name)"), {"name": name}).scalar()
        if exists is None:
            raise RuntimeError(f"entries of {month:%Y-%m} are in the default partition; "
                               "create its partition before archiving it")
        conn.exec_driver_sql(f"ALTER TABLE loom_audit DETACH PARTITION {name}")
        conn.exec_driver_sql(f"DROP TABLE {name}")
        return
    conn.exec_driver_sql("DROP TRIGGER loom_audit_no_delete")
    conn.execute(audit_log.delete().where(*in_month))
    conn.exec_driver_sql("CREATE TRIGGER loom_audit_no_delete BEFORE DELETE ON loom_audit "
                         "BEGIN SELECT RAISE(ABORT, 'loom_audit is append-only: DELETE is not allowed'); END")
