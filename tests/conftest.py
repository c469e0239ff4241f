"""Shared fixtures: the outside world replaced by local servers that speak its protocols.

Real PostgreSQL and Redis are used where they answer (and must answer under CI=true);
GitHub is tests/fakes/github.py; omoi itself always runs for real.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parents[1]
APP_ID = 4242
WEBHOOK_SECRET = "test-webhook-secret-4f9a"
PG_ADMIN_URL = os.environ.get("OMOI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("OMOI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
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


@pytest.fixture(scope="session")
def rsa_keypair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return private, public


@pytest.fixture
def fake_github(rsa_keypair):
    from tests.fakes.github import FakeGitHub

    fake = FakeGitHub(app_id=APP_ID, app_slug="omoi", public_key_pem=rsa_keypair[1], validate=True)
    fake.start()
    yield fake
    fake.stop()


def _create_pg_database() -> str:
    import psycopg

    name = f"omoi_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def _drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test using this runs on both databases omoi supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/omoi.db"
        return
    require_service(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = _create_pg_database()
    yield url
    from app.db.session import get_engine

    get_engine(url).dispose()
    _drop_pg_database(url)


def base_env(fake_github, rsa_keypair, database_url: str, broker_url: str, data_dir: Path, port: int) -> dict:
    return {
        "OMOI_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "OMOI_GITHUB_APP_ID": str(APP_ID),
        "OMOI_GITHUB_PRIVATE_KEY": rsa_keypair[0],
        "OMOI_GITHUB_API_URL": fake_github.url if fake_github else "http://127.0.0.1:9",
        "OMOI_DATABASE_URL": database_url,
        "OMOI_BROKER_URL": broker_url,
        "OMOI_DATA_DIR": str(data_dir),
        "OMOI_HOST": "127.0.0.1",
        "OMOI_PORT": str(port),
        "OMOI_LOG_LEVEL": "INFO",
        "OMOI_DELIVERY_STALE_SECONDS": "5",
        # Unique per test: test runs sharing one Redis never consume each other's tasks.
        "OMOI_QUEUE_NAME": f"omoi-test-{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture
def omoi_env(monkeypatch, tmp_path, rsa_keypair, database_url):
    """Settings for code that runs inside the test process (cwd moved so no .env leaks in).

    GitHub points at a closed port here; tests that talk to GitHub use `github_env`."""
    from app.config import reset_settings_cache
    from app.db.migrate import upgrade
    from app.github import repo_config
    from app.github import permissions
    from app.github.auth import TOKENS

    env = base_env(None, rsa_keypair, database_url, "memory://", tmp_path / "data", free_port())
    monkeypatch.chdir(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_settings_cache()
    TOKENS.clear()
    permissions.clear_cache()
    repo_config.clear_cache()
    upgrade(database_url)
    yield env
    reset_settings_cache()


@pytest.fixture
def github_env(omoi_env, fake_github, monkeypatch):
    from app.config import reset_settings_cache

    monkeypatch.setenv("OMOI_GITHUB_API_URL", fake_github.url)
    reset_settings_cache()
    return {**omoi_env, "OMOI_GITHUB_API_URL": fake_github.url}


class OmoiProcesses:
    """The real web process and a real Celery worker, as separate OS processes."""

    def __init__(self, env: dict, workdir: Path) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.workdir = workdir
        self.port = int(env["OMOI_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        self.logs[name] = log
        fh = open(log, "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", *args],
            cwd=self.workdir, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs.get("web") and self.procs["web"].poll() is not None:
                raise RuntimeError("web process exited:\n" + self.log_text("web"))
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        raise TimeoutError("omoi web did not become healthy:\n" + self.log_text("web"))

    def log_text(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self, name: str, sig: int = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)

    def stop_all(self, grace: float = 1.5) -> None:
        """Teardown: SIGTERM to every process at once, SIGKILL what is still running after `grace` s (a
        Celery worker's warm shutdown can take seconds; nothing here depends on it)."""
        procs = [p for p in (self.procs.pop(n) for n in list(self.procs)) if p.poll() is None]
        for proc in procs:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


@pytest.fixture
def omoi_processes(tmp_path):
    """Factory: omoi_processes(env) -> OmoiProcesses (stopped at teardown)."""
    started: list[OmoiProcesses] = []

    def _make(env: dict) -> OmoiProcesses:
        procs = OmoiProcesses(env, tmp_path)
        started.append(procs)
        return procs

    yield _make
    for procs in started:
        procs.stop_all()


def start_omoi(omoi_processes, fake_github, fake_anthropic, rsa_keypair, tmp_path, **extra_env) -> OmoiProcesses:
    """The real web process and a real worker on the embedded defaults, wired to both stand-ins."""
    env = base_env(fake_github, rsa_keypair, f"sqlite:///{tmp_path}/omoi.db", "", tmp_path / "data", free_port())
    env |= {"ANTHROPIC_BASE_URL": fake_anthropic.url, "ANTHROPIC_API_KEY": "sk-fake-test-key", **extra_env}
    procs = omoi_processes(env)
    procs.start("web", "web")
    procs.start("worker", "worker")
    procs.wait_healthy()
    procs.database_url, procs.fake = env["OMOI_DATABASE_URL"], fake_github
    return procs


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, message="condition"):
    """Poll `predicate` until it is truthy. `message` may be a callable: it is then called at the
    time-out, so logs and states in it are the ones that explain the failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message() if callable(message) else message}")


@pytest.fixture
def fake_anthropic(monkeypatch):
    """tests/fakes/anthropic.py on a random port; ANTHROPIC_* env points the SDK (and any
    subprocess started with os.environ) at it."""
    from app.config import reset_settings_cache
    from tests.fakes.anthropic import FakeAnthropic

    fake = FakeAnthropic().start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-fake-test-key")
    reset_settings_cache()
    yield fake
    fake.stop()
    reset_settings_cache()


@pytest.fixture
def fake_daytona():
    """tests/fakes/daytona.py (Daytona control plane + toolbox) on a random port; point the SDK
    at `fake_daytona.api_url`."""
    from tests.fakes.daytona import FakeDaytona

    fake = FakeDaytona().start()
    yield fake
    fake.stop()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A one-commit git repository (`hello.py` with `greet()`) for sandbox and agent tests."""
    path = tmp_path / "source"
    path.mkdir()
    ids = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    env = {**os.environ, **ids, "HOME": str(tmp_path)}
    (path / "hello.py").write_text("def greet():\n    return 'hi'\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)
    return path
