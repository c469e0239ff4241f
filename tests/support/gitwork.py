"""omoi's commit clone against a hostile origin (the gitwork unit tests): a bare `origin` with a
scratch clone in which people (or the agent) make changes and patches as a sandbox makes them, edits
that write files or plant symlinks, and omoi committing and pushing a patch (or refusing it)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from app.execution import policy
from app.execution.gitwork import Clone, commit_and_push
from app.sandbox.base import git_diff_args
from tests.support.env import BOT_AUTHOR
from tests.support.gitrepos import git, git_out

BRANCH = "main"
TOKEN = "ghs_" + "T0k3n" * 7 + "x"   # the clone's installation token (always scanned for)
AUTHOR = BOT_AUTHOR
FILES = {
    "README.md": "# demo\n",
    "src/app.py": "".join(f"line {i}\n" for i in range(1, 21)),
    "docs/keys.md": "AWS shows AKIAIOSFODNN7EXAMPLE as its example key.\n",
}


class Origin:
    """A bare `origin` plus a scratch clone in which people (or the agent) make changes."""

    def __init__(self, root: Path, files: dict[str, str | bytes]) -> None:
        self.root = root
        self.bare = root / "origin.git"
        self.url = f"file://{self.bare}"
        git(root, "init", "-q", "--bare", "-b", BRANCH, str(self.bare))
        self.work = root / "work"
        git(root, "clone", "-q", self.url, str(self.work))
        git(self.work, "checkout", "-q", "-b", BRANCH)
        self.commit(lambda w: write(w, files), "initial")

    def head(self) -> str:
        return git(self.root, "--git-dir", str(self.bare), "rev-parse", BRANCH)

    def file(self, path: str, ref: str = BRANCH) -> str:
        return git(self.root, "--git-dir", str(self.bare), "show", f"{ref}:{path}")

    def commit(self, edit: Callable[[Path], None], message: str) -> str:
        """A person's commit, pushed to origin."""
        git(self.work, "fetch", "-q", "origin")
        if self.has_branch():
            git(self.work, "reset", "-q", "--hard", f"origin/{BRANCH}")
        edit(self.work)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", f"HEAD:{BRANCH}")
        return self.head()

    def has_branch(self) -> bool:
        return subprocess.run(["git", "--git-dir", str(self.bare), "rev-parse", "-q", "--verify", BRANCH],
                              capture_output=True).returncode == 0

    def patch(self, edit: Callable[[Path], None]) -> tuple[str, str]:
        """(base, patch): the change `edit` makes, as a sandbox would produce it."""
        base = self.head()
        git(self.work, "fetch", "-q", "origin")
        git(self.work, "reset", "-q", "--hard", base)
        git(self.work, "clean", "-qfdx")
        edit(self.work)
        git(self.work, "add", "-A")
        patch = git_out(self.work, git_diff_args(base)[1:])
        git(self.work, "reset", "-q", "--hard", base)
        git(self.work, "clean", "-qfdx")
        return base, patch


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


def writes(files: dict[str, str | bytes]) -> Callable[[Path], None]:
    return lambda root: write(root, files)


def symlink(name: str, target: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / name)
    return edit


def push(clone: Clone, base: str, patch: str, key: str = "7/T1", **kw):
    return commit_and_push(clone, base_sha=base, patch=patch, message=f"T1: change\n\nOmoi-Task: {key}\n",
                           task_key=key, **kw)


def refused(clone: Clone, origin: Origin, base: str, patch: str, **kw) -> str:
    before = origin.head()
    with pytest.raises(policy.Refused) as info:
        push(clone, base, patch, **kw)
    assert origin.head() == before  # nothing was pushed
    return str(info.value.reason)  # the refusal in the words people see (a Reason, worded by its template)
