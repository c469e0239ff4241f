"""Fixtures of the integration tests: git repositories for the sandboxes and the agent, a git
server that insists on a token (thin wrappers over tests/support/gitrepos.py), and running specs on
the GitHub stand-in whose task changes land (tests/support/gitwork.py)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.gitrepos import AuthGitServer, make_source_repo, one_commit_repo
from tests.support.gitwork import BATCH_BRANCH, BATCH_INSTALLATION, BATCH_README, BATCH_REPO, Run


@pytest.fixture
def repo(tmp_path) -> Path:
    """A one-commit git repository (`hello.py` with `greet()`) for sandbox and agent tests."""
    return one_commit_repo(tmp_path / "source")


@pytest.fixture
def source_repo(tmp_path) -> SimpleNamespace:
    """main: 2 commits; branch `feature`: +1 commit; tag v1 on the first commit."""
    return make_source_repo(tmp_path / "source")


@pytest.fixture
def auth_git_server(source_repo, tmp_path):
    """`source_repo` over dumb HTTP, answering only with tests/support/gitrepos.py TOKEN as Basic auth."""
    server = AuthGitServer(source_repo.path, tmp_path / "served")
    yield server
    server.close()


@pytest.fixture
def run_for(github_env, fake_github):
    """Factory: run_for([task ids]) -> Run, a running spec on BATCH_REPO whose tasks hold leases."""
    import asyncio

    from app.config import get_settings
    from app.github.client import installation_client

    fake_github.add_installation(BATCH_INSTALLATION, "octo")
    fake_github.add_repo(BATCH_REPO, installation_id=BATCH_INSTALLATION, files={"README.md": BATCH_README})
    fake_github.push_human_commit(BATCH_REPO, BATCH_BRANCH, {"spec.md": "spec\n"}, "start")
    settings = get_settings()

    async def token() -> str:
        async with installation_client(settings, BATCH_INSTALLATION) as gh:
            return gh.oauth_token

    made = []

    def make(tasks: list[str]) -> Run:
        run = Run(fake_github, settings, asyncio.run(token()), repo=BATCH_REPO, installation=BATCH_INSTALLATION,
                  branch=BATCH_BRANCH, tasks=tasks)
        made.append(run)
        return run

    yield make
    for run in made:
        run.cleanup()
