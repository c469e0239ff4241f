"""Fixtures of the integration tests: git repositories for the sandboxes and the agent, and a
git server that insists on a token (thin wrappers over tests/support/gitrepos.py)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.gitrepos import AuthGitServer, make_source_repo, one_commit_repo


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
