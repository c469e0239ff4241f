"""What the webhook benchmarks share: signed `issues.labeled` deliveries, starting omoi's web
process, and the database/broker pairs to measure (SQLite + embedded broker always; PostgreSQL +
Redis when both answer)."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("OMOI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("OMOI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def scratch(prefix: str) -> tempfile.TemporaryDirectory:
    """The run's work dir (database, embedded broker): `OMOI_BENCH_DIR`, else the system temp dir.
    The embedded broker writes one file per message, and on these shared machines creating a file
    has cost 300-750 us of kernel CPU on one file system and ~15 us on another (which one changed
    between days), so the SQLite figures move with it: compare runs made in the same place."""
    base = os.environ.get("OMOI_BENCH_DIR") or None
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f"omoi-{prefix}", dir=base)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def payload(i: int) -> bytes:
    return json.dumps({
        "action": "labeled",
        "issue": {"number": i, "title": f"Issue {i}", "body": "x" * 2000, "user": {"login": "alice"}},
        "label": {"name": "omoi"},
        "repository": {"id": 1, "full_name": "octo/hello", "default_branch": "main"},
        "sender": {"login": "alice", "id": 1, "type": "User"},
        "installation": {"id": 1},
    }, separators=(",", ":")).encode()


def signed(i: int, secret: str) -> tuple[bytes, dict[str, str]]:
    body = payload(i)
    return body, {
        "Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "User-Agent": "GitHub-Hookshot/bench",
    }


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # noqa: BLE001
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer {url}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def start_omoi_web(env: dict, workdir: Path, secret: str, web_processes: int = 1) -> tuple[subprocess.Popen, str]:
    """`omoi web` on a free port with a queue of its own (a worker sharing the Redis never sees it);
    returns the process (its own session: `stop` ends all its children) and the base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "web"], cwd=workdir, start_new_session=True,
        env={**os.environ, **env, "OMOI_PORT": str(port), "OMOI_WEBHOOK_SECRET": secret, "OMOI_LOG_LEVEL": "WARNING",
             "OMOI_WEB_PROCESSES": str(web_processes),
             "OMOI_QUEUE_NAME": f"omoi-bench-{uuid.uuid4().hex[:8]}", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=open(workdir / f"web-{port}.log", "wb"),
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc, "omoi web")
    return proc, url


def backends(tmp: Path, database: str, with_postgres: bool = True) -> list[tuple[str, dict]]:
    """(name, env) pairs: SQLite + the embedded broker, then PostgreSQL (a fresh `database`) + Redis."""
    out = [("sqlite + embedded broker", {"OMOI_DATABASE_URL": f"sqlite:///{tmp}/{database}.db", "OMOI_BROKER_URL": "",
                                         "OMOI_DATA_DIR": str(tmp / "data")})]
    if not with_postgres:
        return out
    try:
        import psycopg
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=2) as c:
            c.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {database}")
        out.append(("postgresql + redis", {
            "OMOI_DATABASE_URL": PG_URL.rsplit("/", 1)[0] + f"/{database}", "OMOI_BROKER_URL": REDIS_URL,
            "OMOI_DATA_DIR": str(tmp / "data2")}))
    except Exception as exc:  # noqa: BLE001
        print(f"(postgresql + redis skipped: {exc.__class__.__name__}: {exc})")
    return out
