"""Shared fixtures: the outside world replaced by local servers that speak its protocols.

Real PostgreSQL and Redis are used where they answer (and must answer under CI=true);
GitHub is tests/fakes/github, Anthropic tests/fakes/anthropic, Daytona tests/fakes/daytona;
omoi itself always runs for real. Each fixture is a thin wrapper over tests/support.
"""
from __future__ import annotations

import os
import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.env import MODEL_KEY, base_env
from tests.support.servers import Receiver
from tests.support.services import free_port, migrated_sqlite, pg_database, postgres_available, require_service
from tests.support.world import make_world, start_github


@pytest.fixture(scope="session", autouse=True)
def mirror_dir(tmp_path_factory):
    """omoi's host-side git mirrors (app/sandbox/clone.py) of this session's stand-in repositories go
    to one folder the session removes, not to the user's shared temp folder where they would pile up."""
    folder = tmp_path_factory.mktemp("mirrors")
    folder.chmod(0o700)
    old = os.environ.get("OMOI_MIRROR_DIR")
    os.environ["OMOI_MIRROR_DIR"] = str(folder)  # processes the tests start inherit it
    yield folder
    if old is None:
        os.environ.pop("OMOI_MIRROR_DIR", None)
    else:
        os.environ["OMOI_MIRROR_DIR"] = old
    shutil.rmtree(folder, ignore_errors=True)


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
    fake = start_github(rsa_keypair)
    yield fake
    fake.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Every test using this runs on both databases omoi supports, each already at the newest
    migration (a copy of one migrated once per session) unless the test is marked `empty_database`."""
    empty = request.node.get_closest_marker("empty_database") is not None
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/omoi.db" if empty else migrated_sqlite(tmp_path / "omoi.db")
        return
    require_service(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    with pg_database(migrated=not empty) as url:
        yield url


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


@pytest.fixture
def omoi_world(tmp_path, rsa_keypair):
    """Factory: omoi_world(start=True, beat=False, worker=True, **make_world options) -> World
    (tests/support/world.py): the site seeded on the given stand-ins and omoi's processes for it in
    tmp_path, started unless `start` is False; stopped at teardown."""
    made = []

    def make(*, start: bool = True, beat: bool = False, worker: bool = True, **options):
        world = make_world(tmp_path, rsa_keypair, **options)
        made.append(world)
        return world.start_all(beat=beat, worker=worker) if start else world

    yield make
    for world in made:
        world.stop_all()


@pytest.fixture
def fake_anthropic(monkeypatch):
    """tests/fakes/anthropic on a random port; ANTHROPIC_* env points the SDK (and any
    subprocess started with os.environ) at it."""
    from app.config import reset_settings_cache
    from tests.fakes.anthropic import FakeAnthropic

    fake = FakeAnthropic().start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", MODEL_KEY)
    reset_settings_cache()
    yield fake
    fake.stop()
    reset_settings_cache()


@pytest.fixture
def fake_daytona():
    """tests/fakes/daytona (Daytona control plane + toolbox) on a random port; point the SDK
    at `fake_daytona.api_url`."""
    from tests.fakes.daytona import FakeDaytona

    fake = FakeDaytona().start()
    yield fake
    fake.stop()


@pytest.fixture
def receiver():
    """A webhook endpoint (tests/support/servers.py Receiver) answering 202 unless told otherwise."""
    rx = Receiver()
    yield rx
    rx.close()
