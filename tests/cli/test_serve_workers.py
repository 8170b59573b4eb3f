"""``loom serve --workers N``: a real server of several processes, attacked from another
process. Every worker must refuse a revoked token or a deactivated user, and serve newly
published metadata, on the very next request; stopping the server leaves no process."""

from __future__ import annotations

import csv
import glob
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from loom.app import create_app
from loom.cli import main
from loom.schema.service import model_from_documents

#: requests sent after each change; spread over two workers, each gets some of them
ATTACKS = 40
#: largest request body the served app takes in these tests
MAX_BODY = 64 * 1024
NOTE = {"kind": "entity", "name": "note", "title_field": "text", "fields": [
    {"name": "text", "type": "string"},
    {"name": "scan", "type": "attachment", "max_size": 4096, "accept": [".txt"]},
]}
TICKET = {"kind": "entity", "name": "ticket", "fields": [{"name": "subject", "type": "string"}]}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    worker: int | None  # the process that answered

    def json(self):
        return json.loads(self.body)


class Server:
    """A ``loom serve`` process started in a session of its own, and its workers."""

    def __init__(self, process: subprocess.Popen, port: int, log: Path):
        self.process, self.port, self.log = process, port, log

    def workers(self) -> list[int]:
        """The processes the server started (its children, whichever thread forked them)."""
        found = []
        for path in glob.glob(f"/proc/{self.process.pid}/task/*/children"):
            try:
                found.extend(int(pid) for pid in Path(path).read_text().split())
            except OSError:
                pass
        return sorted(found)

    def request(self, method: str, path: str, *, token: str | None = None, body: bytes | None = None,
                headers: dict[str, str] | None = None, chunked: bool = False) -> Reply:
        """One request on a connection of its own (no keep-alive, so the kernel spreads
        requests over the workers), noting which worker held the connection. ``chunked``
        sends the body in chunks, without Content-Length."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            sent = dict(headers or {})
            if token:
                sent["Authorization"] = f"Bearer {token}"
            if chunked and body is not None:
                parts = [body[i:i + 4096] for i in range(0, len(body), 4096)]
                conn.request(method, path, body=iter(parts), headers=sent, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=sent)
            port = conn.sock.getsockname()[1]
            response = conn.getresponse()
            data = response.read()
            # unless the server closed it, the connection is still open: the worker holding
            # its server side answered
            worker = self._holder(port) if conn.sock is not None else None
            return Reply(response.status, response.headers, data, worker)
        finally:
            conn.close()

    def _holder(self, client_port: int) -> int | None:
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == self.port and int(remote.split(":")[1], 16) == client_port:
                inode = fields[9]
        if inode is None:
            return None
        for worker in self.workers():
            try:
                holds = any(os.readlink(fd) == f"socket:[{inode}]" for fd in glob.glob(f"/proc/{worker}/fd/*"))
            except OSError:
                continue
            if holds:
                return worker
        return None

    def connections_to(self, port: int) -> dict[int, int]:
        """The TCP connections each worker holds to ``port`` (its database server)."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # established
                    inodes.add(f"socket:[{fields[9]}]")
        counts = {}
        for worker in self.workers():
            held = 0
            for fd in glob.glob(f"/proc/{worker}/fd/*"):
                try:
                    held += os.readlink(fd) in inodes
                except OSError:
                    pass
            counts[worker] = held
        return counts

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive_in_session(self) -> list[int]:
        """Processes of the server's session that have not ended (zombies included until reaped)."""
        alive = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid and fields[0] != "Z":  # process group
                alive.append(int(Path(stat).parent.name))
        return alive

    def stop(self, sig: int = signal.SIGTERM, group: bool = False) -> int:
        """Send ``sig`` to the master (or, as Ctrl-C does, to every process of its group)
        and wait for the master to end; its exit status."""
        if group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        return self.process.wait(timeout=120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def instance(loom_database_url, tmp_path, monkeypatch):
    """A Loom instance on the test's database, with the note entity published; yields an
    app of this (the test's) process on it, with an engine of its own."""
    environment = {"LOOM_DATABASE_URL": loom_database_url, "LOOM_INSTANCE_PATH": str(tmp_path / "instance"),
                   "LOOM_SECRET_KEY": "workers-test", "LOOM_MAX_CONTENT_LENGTH": str(MAX_BODY)}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    for name in ("LOOM_DB_POOL_SIZE", "LOOM_DB_MAX_OVERFLOW", "LOOM_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["init"], catch_exceptions=False).exit_code == 0
    folder = tmp_path / "metadata"
    folder.mkdir()
    (folder / "note.yaml").write_text(yaml.safe_dump(NOTE))
    applied = runner.invoke(main, ["metadata", "apply", str(folder)], catch_exceptions=False)
    assert applied.exit_code == 0, applied.output
    app = create_app()
    yield app
    app.extensions["loom"].engine.dispose()


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """Starts ``loom serve`` with the test's environment; every process it started is
    ended when the test ends, however it ends."""
    started: list[Server] = []

    def start(*options: str, env: dict[str, str] | None = None) -> Server:
        port = _free_port()
        log = tmp_path / f"serve-{uuid.uuid4().hex[:6]}.log"
        command = [sys.executable, "-c", "import sys; from loom.cli import main; sys.argv[0] = 'loom'; main()",
                   "serve", "--port", str(port), *options]
        with open(log, "w") as out:
            process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        server = Server(process, port, log)
        started.append(server)
        _wait_until_every_worker_answers(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                pass
        for pid in server.alive_in_session():
            os.kill(pid, signal.SIGKILL)
        if server.process.poll() is None:
            server.process.wait(timeout=10)


def _wait_until_every_worker_answers(server: Server, seconds: float = 90) -> None:
    answered: set[int | None] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"loom serve ended with status {server.process.returncode}:\n{server.output()}")
        workers = server.workers()
        try:
            answered.add(server.request("GET", "/api/v1/_auth/me").worker)
        except OSError:
            time.sleep(0.2)
            continue
        if workers and set(workers) <= answered:
            return
    pytest.fail(f"not every worker of loom serve answered within {seconds:.0f} s:\n{server.output()}")


def _attack(server: Server, path: str, token: str, count: int = ATTACKS) -> list[Reply]:
    return [server.request("GET", path, token=token) for _ in range(count)]


def _statuses_by_worker(replies: list[Reply]) -> dict[int | None, set[int]]:
    seen: dict[int | None, set[int]] = {}
    for reply in replies:
        seen.setdefault(reply.worker, set()).add(reply.status)
    return seen


def test_every_worker_refuses_a_revoked_or_deactivated_credential_and_serves_new_metadata_at_once(
        instance, serve, loom_database_url):
    loom = instance.extensions["loom"]
    identity = loom.identity
    identity.create_user("boss", is_superuser=True)
    identity.create_user("wang")
    li_id = identity.create_user("li")
    boss = identity.create_token("boss").token
    wang = identity.create_token("wang")
    li = identity.create_token("li").token

    server = serve("--workers", "2", "--threads", "2")
    workers = server.workers()
    assert len(workers) == 2, server.output()
    on_sqlite = loom_database_url.startswith("sqlite")
    assert ("processes write to one SQLite file" in server.output()) == on_sqlite
    assert "Loom is running on http://127.0.0.1:" in server.output()

    # every worker has both users' principals cached and the note entity loaded
    for token in (wang.token, li):
        warm = _attack(server, "/api/v1/_auth/me", token, 20)
        assert _statuses_by_worker(warm) == {w: {200} for w in workers}
    listed = _attack(server, "/api/v1/note", boss, 20)
    assert _statuses_by_worker(listed) == {w: {200} for w in workers}
    missing = _attack(server, "/api/v1/ticket", boss, 20)
    assert _statuses_by_worker(missing) == {w: {404} for w in workers}

    # from this process, with its own engine: the next request anywhere is refused
    identity.revoke_token(wang.id, actor="test")
    revoked = _attack(server, "/api/v1/_auth/me", wang.token)
    assert _statuses_by_worker(revoked) == {w: {401} for w in workers}

    identity.update_user(li_id, {"is_active": False}, actor="test")
    deactivated = _attack(server, "/api/v1/_auth/me", li)
    assert _statuses_by_worker(deactivated) == {w: {401} for w in workers}
    # the others are untouched
    assert {r.status for r in _attack(server, "/api/v1/_auth/me", boss, 10)} == {200}

    loom.metadata.apply(model_from_documents([NOTE, TICKET]), author="test")
    tickets = _attack(server, "/api/v1/ticket", boss)
    assert _statuses_by_worker(tickets) == {w: {200} for w in workers}
    created = server.request("POST", "/api/v1/ticket", token=boss, body=json.dumps({"subject": "at once"}).encode(),
                             headers={"Content-Type": "application/json"})
    assert created.status == 201, created.body

    assert server.stop(signal.SIGTERM) == 0
    assert server.alive_in_session() == []
    assert "refused to gracefully stop" not in server.output()


def test_ctrl_c_stops_the_master_and_every_worker(instance, serve, loom_database_url):
    # a pool this large could take every connection PostgreSQL allows: said at start
    server = serve("--workers", "2", "--threads", "2", env={"LOOM_DB_POOL_SIZE": "50"})
    workers = server.workers()
    assert len(workers) == 2
    warned = "LOOM_DB_POOL_SIZE 50 + LOOM_DB_MAX_OVERFLOW 10) = 120 connections" in server.output()
    assert warned == loom_database_url.startswith("postgresql"), server.output()
    # a terminal's Ctrl-C: SIGINT to every process of the group at once
    assert server.stop(signal.SIGINT, group=True) == 0
    assert server.alive_in_session() == []
    assert "refused to gracefully stop" not in server.output()


def _sign_in(server: Server, username: str, password: str) -> str:
    reply = server.request("POST", "/api/v1/_auth/login", body=json.dumps(
        {"username": username, "password": password}).encode(), headers={"Content-Type": "application/json"})
    assert reply.status == 200, reply.body
    cookie = next(c for c in reply.headers.get_all("Set-Cookie") if c.startswith("session="))
    return cookie.split(";", 1)[0]


def _multipart(name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_bodies_uploads_downloads_and_screens_as_a_client_sees_them(instance, serve):
    identity = instance.extensions["loom"].identity
    identity.create_user("boss", password="correct horse", is_superuser=True)
    boss = identity.create_token("boss").token
    # granian copies its process's environment into every request's: none of it may read as a header
    server = serve("--workers", "2", "--threads", "2", env={"HTTP_X_REQUEST_ID": "from-the-environment"})
    json_headers = {"Content-Type": "application/json"}
    assert server.request("GET", "/api/v1/note", token=boss).headers["X-Request-Id"] != "from-the-environment"
    sent = server.request("GET", "/api/v1/note", token=boss, headers={"X-Request-Id": "from-the-client"})
    assert sent.headers["X-Request-Id"] == "from-the-client"

    # over the limit, whether the client says how long the body is or sends it in chunks
    for chunked in (False, True):
        too_large = server.request("POST", "/api/v1/note", token=boss, headers=json_headers, chunked=chunked,
                                   body=json.dumps({"text": "x" * MAX_BODY}).encode())
        assert too_large.status == 413, too_large.body
        assert too_large.json()["detail"] == f"the request body is larger than {MAX_BODY} bytes"
    in_chunks = server.request("POST", "/api/v1/note", token=boss, headers=json_headers, chunked=True,
                               body=json.dumps({"text": "y" * (MAX_BODY - 100)}).encode())
    assert in_chunks.status == 201, in_chunks.body
    assert in_chunks.json()["data"]["text"] == "y" * (MAX_BODY - 100)

    # uploaded through one connection, attached through others: any worker finds the file
    body, kind = _multipart("minutes.txt", b"we met on Monday")
    uploaded = server.request("POST", "/api/v1/note/_files/scan", token=boss, body=body,
                              headers={"Content-Type": kind})
    assert uploaded.status == 201, uploaded.body
    key = uploaded.json()["data"]["key"]
    body, kind = _multipart("huge.txt", b"x" * 5000)
    refused = server.request("POST", "/api/v1/note/_files/scan", token=boss, body=body, headers={"Content-Type": kind})
    assert refused.status == 422, refused.body
    body, kind = _multipart("huge.txt", b"x" * MAX_BODY)
    for chunked in (False, True):
        too_large = server.request("POST", "/api/v1/note/_files/scan", token=boss, body=body, chunked=chunked,
                                   headers={"Content-Type": kind})
        assert too_large.status == 413, too_large.body
    note = server.request("POST", "/api/v1/note", token=boss, headers=json_headers,
                          body=json.dumps({"text": "Minutes", "scan": {"key": key}}).encode())
    assert note.status == 201, note.body
    assert note.json()["data"]["scan"]["name"] == "minutes.txt"
    created = server.request("POST", "/api/v1/note/_bulk", token=boss, headers=json_headers,
                             body=json.dumps([{"text": f"note {i:03d}"} for i in range(300)]).encode())
    assert created.status == 201, created.body

    exported = server.request("GET", "/api/v1/note/_export?format=csv&sort=id", token=boss)
    assert exported.status == 200
    assert exported.headers["Content-Disposition"] == 'attachment; filename="note.csv"'
    rows = list(csv.DictReader(io.StringIO(exported.body.decode("utf-8-sig"))))
    assert [row["text"] for row in rows][1:] == ["Minutes", *(f"note {i:03d}" for i in range(300))]
    assert json.loads(rows[1]["scan"])["key"] == key

    cookie = _sign_in(server, "boss", "correct horse")
    page = server.request("GET", "/r/note", headers={"Cookie": cookie})
    assert page.status == 200 and b"<html" in page.body and b"note 299" in page.body
    fragment = server.request("GET", "/r/note", headers={"Cookie": cookie, "HX-Request": "true",
                                                         "HX-Target": "main"})
    assert fragment.status == 200 and b"<html" not in fragment.body and b"note 299" in fragment.body
    assert "HX-Request" in fragment.headers["Vary"]
    workbook = server.request("GET", "/r/note/_export?format=xlsx", headers={"Cookie": cookie})
    assert workbook.status == 200 and workbook.body.startswith(b"PK\x03\x04")
    assert workbook.headers["Content-Disposition"] == 'attachment; filename="note.xlsx"'


@pytest.mark.parametrize("options, message", [
    (["--workers", "0"], "Invalid value for '--workers': 0 is not in the range x>=1."),
    (["--workers", "-2"], "Invalid value for '--workers': -2 is not in the range x>=1."),
    (["--threads", "0"], "Invalid value for '--threads': 0 is not in the range x>=1."),
])
def test_a_bad_worker_or_thread_count_says_what_to_fix(options, message):
    result = CliRunner().invoke(main, ["serve", *options])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("name, value, message", [
    ("LOOM_DB_POOL_SIZE", "0", "error: LOOM_DB_POOL_SIZE: '0' is not a whole number of at least 1"),
    ("LOOM_DB_POOL_SIZE", "many", "error: LOOM_DB_POOL_SIZE: 'many' is not a whole number of at least 1"),
    ("LOOM_DB_MAX_OVERFLOW", "-1", "error: LOOM_DB_MAX_OVERFLOW: '-1' is not a whole number of at least 0"),
])
def test_a_bad_pool_setting_is_one_line_naming_it(loom_database_url, tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["serve", "--port", str(_free_port())])
    assert result.exit_code == 1 and result.output.strip() == message


def test_the_pool_settings_size_each_process_pool(loom_database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_DATABASE_URL", loom_database_url)
    monkeypatch.setenv("LOOM_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("LOOM_DB_POOL_SIZE", raising=False)
    default = create_app().extensions["loom"].engine
    monkeypatch.setenv("LOOM_DB_POOL_SIZE", "3")
    sized = create_app().extensions["loom"].engine
    try:
        assert default.pool.size() == 8  # the request threads of a worker, by default
        assert sized.pool.size() == 3
    finally:
        default.dispose()
        sized.dispose()


def test_workers_open_no_more_postgresql_connections_than_their_pools_allow(instance, serve, loom_database_url):
    if not loom_database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL connections are counted; SQLite has none")
    port = instance.extensions["loom"].engine.url.port or 5432
    identity = instance.extensions["loom"].identity
    identity.create_user("boss", is_superuser=True)
    boss = identity.create_token("boss").token
    server = serve("--workers", "2", "--threads", "4", env={"LOOM_DB_POOL_SIZE": "1", "LOOM_DB_MAX_OVERFLOW": "1"})
    # the token's first use is written down; from then on each request needs one connection
    assert server.request("GET", "/api/v1/note", token=boss).status == 200
    most: dict[int, int] = {}
    with ThreadPoolExecutor(8) as pool:
        replies = [pool.submit(server.request, "GET", "/api/v1/note?limit=5", token=boss) for _ in range(80)]
        while not all(reply.done() for reply in replies):
            for worker, count in server.connections_to(port).items():
                most[worker] = max(most.get(worker, 0), count)
            time.sleep(0.005)
    assert {reply.result().status for reply in replies} == {200}
    assert set(most) == set(server.workers()) and max(most.values()) <= 2, most
