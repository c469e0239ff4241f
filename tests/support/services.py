"""The services omoi runs on in the tests: real PostgreSQL and Redis where they answer (and must
answer under CI=true), a PostgreSQL database of its own for a test, a private redis-server that a
test may kill, and free ports."""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.waits import wait_for

PG_ADMIN_URL = os.environ.get("OMOI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# One Redis database per pytest-xdist worker (gw0 -> 15, gw1 -> 14, ...): tests on different workers
# must not take each other's jobs from the shared queues.
_XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
REDIS_URL = os.environ.get("OMOI_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{15 - _XDIST_INDEX}")
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(available: bool, what: str) -> None:
    """Skip on a laptop without the service; fail in CI, where skipping would hide a gap."""
    if not available:
        if IN_CI:
            pytest.fail(f"{what} is required in CI but does not answer")
        pytest.skip(f"{what} does not answer")


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:  # noqa: BLE001
        return False


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except Exception:  # noqa: BLE001
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_admin(sql: str) -> None:
    """One statement on the admin connection (outside any transaction)."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


_migrated: dict[str, str] = {}  # what a migrated copy is made from, built once per test session


def _pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _pg_template() -> str:
    """A database the migrations were run on once in this test session (dropped at exit): copying it
    (CREATE DATABASE ... TEMPLATE) takes a fraction of running every migration again for each test."""
    if "pg" not in _migrated:
        from app.db.migrate import upgrade
        from app.db.session import get_engine

        name = f"omoi_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        pg_admin(f'CREATE DATABASE "{name}"')
        atexit.register(lambda: pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        upgrade(_pg_url(name))
        get_engine(_pg_url(name)).dispose()  # a template must have no connection when it is copied
        _migrated["pg"] = name
    return _migrated["pg"]


def create_pg_database(*, migrated: bool = False) -> str:
    """A new database: empty, or already at the newest migration (a copy of the session's template)."""
    name = f"omoi_t_{uuid.uuid4().hex[:10]}"
    template = f' TEMPLATE "{_pg_template()}"' if migrated else ""
    pg_admin(f'CREATE DATABASE "{name}"{template}')
    return _pg_url(name)


def migrated_sqlite(path: Path) -> str:
    """A SQLite database at `path` already at the newest migration (a copy of the session's template)."""
    if "sqlite" not in _migrated:
        import tempfile

        from app.db.migrate import upgrade
        from app.db.session import get_engine

        folder = Path(tempfile.mkdtemp(prefix="omoi-sqlite-template-"))
        atexit.register(shutil.rmtree, folder, True)
        url = f"sqlite:///{folder}/template.db"
        upgrade(url)
        get_engine(url).dispose()
        _migrated["sqlite"] = str(folder / "template.db")
    shutil.copyfile(_migrated["sqlite"], path)
    return f"sqlite:///{path}"


def drop_pg_database(url: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@contextmanager
def pg_database(*, migrated: bool = False) -> Iterator[str]:
    """A PostgreSQL database of its own (empty, or `migrated`); afterwards this process's engine on it
    is disposed (no open connection at DROP) and the database dropped. Stop omoi's processes on it
    before leaving."""
    url = create_pg_database(migrated=migrated)
    try:
        yield url
    finally:
        from app.db.session import get_engine

        get_engine(url).dispose()
        drop_pg_database(url)


class PrivateRedis:
    """A redis-server of one test only, on a random port, without persistence (a restart loses
    every queued message, the worst case for omoi)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        import redis

        wait_for(lambda: self._ping(redis), timeout=10, message="private redis-server")

    def _ping(self, redis) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except Exception:  # noqa: BLE001
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # this process only, by its pid
            self.proc.wait(timeout=10)
        self.proc = None
