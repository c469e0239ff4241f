"""Fixtures of the end-to-end tests, thin wrappers over tests/support/world.py: omoi's real
processes for an approved spec (with or without supervision), a broker to match the database, and
the containment tests' world among decoys (tests/support/decoys.py)."""
from __future__ import annotations

import pytest

from tests.support.decoys import make_decoy_world
from tests.support.services import REDIS_URL, redis_available, require_service
from tests.support.world import APPROVED, RUN_ENV, SUPERVISION_ENV


@pytest.fixture
def broker_url(database_url):
    """Two stacks prove both paths: the embedded broker on SQLite, Redis on PostgreSQL."""
    if database_url.startswith("sqlite"):
        return ""
    require_service(redis_available(), "Redis on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture
def approved_run(fake_github, fake_anthropic, omoi_world):
    """Factory: approved_run(files=None, extra_env=None, **omoi_world options) -> World: the repository,
    issue and branch of an approved spec (APPROVED, with `files` added) on the GitHub stand-in, and
    omoi's web process and worker (with beat every second, RUN_ENV and `extra_env`) against it and
    the Anthropic stand-in; SQLite and the embedded broker unless `database` and `broker` say otherwise."""
    def start(*, files: dict | None = None, extra_env: dict | None = None, **options):
        return omoi_world(github=fake_github, anthropic=fake_anthropic, site=APPROVED.with_files(files),
                          extra_env=RUN_ENV | (extra_env or {}), beat=True, **options)
    return start


@pytest.fixture
def supervised_run(approved_run):
    """Factory: supervised_run(files=None, extra_env=None) -> World: an approved_run with the guardian
    and the conductor looking at the running sessions every second or two."""
    def start(files: dict | None = None, extra_env: dict | None = None):
        return approved_run(files=files, extra_env=SUPERVISION_ENV | (extra_env or {}))
    return start


@pytest.fixture
def decoy_world(fake_github, fake_anthropic, rsa_keypair):
    """Factory: decoy_world(**extra_env) -> DecoyWorld, started (worker with beat), one per test;
    its processes are stopped and its directory removed at teardown."""
    made = []

    def make(**extra_env: str):
        world = make_decoy_world(fake_github, fake_anthropic, rsa_keypair, **extra_env)
        made.append(world)
        return world.start_all(beat=True)

    yield make
    for world in made:
        world.remove()
