"""omoi's commit clone against a hostile origin (the gitwork unit tests): a bare `origin` with a
scratch clone in which people (or the agent) make changes and patches as a sandbox makes them, edits
that write files or plant symlinks, and omoi committing and pushing a patch (or refusing it); and a
running spec on the GitHub stand-in whose tasks land together (`Run`, `land_change`)."""
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
# the spec the integration tests land changes on (tests/integration/conftest.py `run_for`)
BATCH_REPO, BATCH_INSTALLATION, BATCH_BRANCH = "octo/batch", 77, "omoi/issue-1-batch"
BATCH_README = "# batch\n\n" + "".join(f"line {i}\n" for i in range(1, 13)).replace("line 2\n", "two\n").replace(
    "line 11\n", "six\n")  # two edits far enough apart for a clean 3-way merge
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


class Run:
    """A running spec on the GitHub stand-in for the integration tests (app/execution/integration.py):
    its branch, task rows holding leases as workers hold them, and omoi's commit clones of the branch."""

    def __init__(self, fake, settings, token: str, *, repo: str, installation: int, branch: str,
                 tasks: list[str]) -> None:
        from app.db.models import Spec, SpecTask
        from app.db.session import session_scope
        from app.execution.leases import Lease

        self.fake, self.settings, self.token, self.repo, self.branch = fake, settings, token, repo, branch
        with session_scope(settings.database_url) as s:
            spec = Spec(repo_full_name=repo, issue_number=1, installation_id=installation, title="t",
                        state="approved", branch=branch, run_state="running")
            s.add(spec)
            s.flush()
            self.spec_id = spec.id
            rows = [SpecTask(spec_id=spec.id, task_id=t, status="running", lease_owner=f"lease-{t}", attempts=1,
                             files=[]) for t in tasks]
            s.add_all(rows)
            s.flush()
            self.leases = {t: Lease(spec.id, t, r.id, f"lease-{t}", 1) for t, r in zip(tasks, rows)}
        self.clones: list[Clone] = []

    def clone(self, token: str | None = None, want: tuple[str, ...] | list[str] = ()) -> Clone:
        c = Clone(url=self.fake.clone_url(self.repo), token=token or self.token, branch=self.branch,
                  author=BOT_AUTHOR)
        c.clone(want)
        self.clones.append(c)
        return c

    def head(self) -> str:
        return self.fake.branch_sha(self.repo, self.branch)

    def enqueue(self, task: str, patch: str, base: str | None = None, files: tuple[str, ...] = (),
                wip: bool = False) -> int:
        from app.execution import integration

        clone = self.clones[0] if self.clones else self.clone()
        paths = set(files) | clone.patch_paths(patch)
        return integration.enqueue(self.settings, self.leases[task], base_sha=base or self.head(), patch=patch,
                                   message=f"{task}: change\n\nOmoi-Task: {self.spec_id}/{task}\n", paths=paths,
                                   wip=wip)

    def task_commits(self) -> dict[str, dict]:
        """Task id -> the branch's commit carrying its trailer, from the stand-in's git."""
        out = {}
        for c in self.fake.commits(self.repo, self.branch):
            for line in c["message"].splitlines():
                if line.startswith(f"Omoi-Task: {self.spec_id}/"):
                    out[line.rsplit("/", 1)[1]] = c
        return out

    def cleanup(self) -> None:
        for c in self.clones:
            c.cleanup()


def land_change(run: Run, task: str, row: int, clone: Clone | None = None, **kw):
    """`integration.land` for `task`'s waiting change (row `row`), as its worker calls it."""
    import asyncio
    import threading

    from app.execution import integration

    clone = clone or run.clone()
    return asyncio.run(integration.land(run.settings, run.spec_id, row, integration.lock_key(run.repo, run.branch),
                                        clone, None, [], threading.Event(), **kw))


def new_file(path: str, text: str) -> str:
    """A patch creating `path`, made as a sandbox makes one (`git add -A` and `git diff --cached --binary`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        git(root, "init", "-q")
        write(root, {path: text})
        git(root, "add", "-A")
        empty_tree = git_out(root, ["hash-object", "-t", "tree", "/dev/null"]).strip()
        return git_out(root, git_diff_args(empty_tree)[1:])


def edit_file(path: str, old: str, new: str) -> str:
    """A patch changing `path` from `old` to `new` (the same blob ids as in any repository holding `old`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        git(root, "init", "-q")
        write(root, {path: old})
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "old")
        write(root, {path: new})
        git(root, "add", "-A")
        return git_out(root, git_diff_args("HEAD")[1:])
