"""Fixtures of the unit tests: omoi's commit clone of a hostile origin (thin wrappers over
tests/support/gitwork.py)."""
from __future__ import annotations

import pytest

from app.execution.gitwork import Clone
from tests.support.gitwork import AUTHOR, BRANCH, FILES, TOKEN, Origin


@pytest.fixture
def origin(tmp_path) -> Origin:
    return Origin(tmp_path, FILES)


@pytest.fixture
def clone(origin):
    c = Clone(url=origin.url, token=TOKEN, branch=BRANCH, author=AUTHOR)
    c.clone()
    yield c
    c.cleanup()
