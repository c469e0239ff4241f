"""omoi's own commits: a clean host clone of the branch, the task's diff applied, committed, pushed.

The installation token reaches git only as an `http.extraHeader` through GIT_CONFIG_* environment
variables of the git commands that talk to GitHub: never on a command line, never in a file.
Pushes are never forced: a rejected push (someone pushed first) fetches, rebases and pushes again.
All functions block; call them in a thread.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from app.sandbox.local import DEFAULT_PATH

TRAILER = "Omoi-Task"


class GitError(Exception):
    pass


class PushRejected(GitError):
    pass


class ApplyFailed(GitError):
    pass


@dataclass
class Clone:
    url: str                 # credential-free https URL of the repository
    token: str
    branch: str
    author: tuple[str, str]  # (name, email)
    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="omoi-commit-")))

    # -- plumbing ---------------------------------------------------------------------------

    def _env(self, auth: bool) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "HOME": str(self.path), "LANG": "C.UTF-8",
               "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_ASKPASS": "/bin/false",
               "GIT_AUTHOR_NAME": self.author[0], "GIT_AUTHOR_EMAIL": self.author[1],
               "GIT_COMMITTER_NAME": self.author[0], "GIT_COMMITTER_EMAIL": self.author[1]}
        if auth:
            basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
        return env

    def git(self, *args: str, auth: bool = False, check: bool = True, stdin: bytes | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        cwd = str(self.path / "repo") if (self.path / "repo").exists() else str(self.path)
        proc = subprocess.run(["git", *args], cwd=cwd, env=self._env(auth), input=stdin, capture_output=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise GitError(f"git {args[0]} failed ({proc.returncode}): {self._clean(proc.stderr)}")
        return proc

    def _clean(self, data: bytes) -> str:
        text = data.decode(errors="replace").strip()[-2000:]
        return text.replace(self.token, "[REDACTED]") if self.token else text

    def out(self, *args: str, **kw) -> str:
        return self.git(*args, **kw).stdout.decode(errors="replace").strip()

    # -- operations -------------------------------------------------------------------------

    def clone(self) -> str:
        """Clone the branch; returns its head sha."""
        self.git("clone", "-q", "--no-tags", "--single-branch", "-b", self.branch, "--", self.url,
                 str(self.path / "repo"), auth=True)
        return self.out("rev-parse", "HEAD")

    def fetch(self) -> str:
        """The branch head on GitHub now."""
        self.git("fetch", "-q", "origin", f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}", auth=True)
        return self.out("rev-parse", f"refs/remotes/origin/{self.branch}")

    def find_task_commit(self, task_key: str, ref: str) -> str | None:
        """The commit on `ref` whose `Omoi-Task` trailer is `task_key` (a killed worker may have pushed)."""
        out = self.out("log", ref, "-F", f"--grep={TRAILER}: {task_key}",
                       f"--format=%H %(trailers:key={TRAILER},valueonly,separator=%x2C)")
        for line in out.splitlines():
            sha, _, values = line.partition(" ")
            if task_key in [v.strip() for v in values.split(",")]:
                return sha
        return None

    def commit_patch(self, base_sha: str, patch: str, message: str) -> str:
        """Apply `patch` (made against `base_sha`) and commit it; returns the new commit sha."""
        self.git("checkout", "-q", "--detach", base_sha)
        proc = self.git("apply", "--index", "--binary", "--whitespace=nowarn", "-", stdin=patch.encode(), check=False)
        if proc.returncode != 0:
            raise ApplyFailed(f"the change does not apply: {self._clean(proc.stderr)}")
        self.git("commit", "-q", "--no-verify", "-F", "-", stdin=message.encode())
        return self.out("rev-parse", "HEAD")

    def rebase_onto(self, upstream: str) -> str:
        proc = self.git("rebase", "-q", upstream, check=False)
        if proc.returncode != 0:
            self.git("rebase", "--abort", check=False)
            raise ApplyFailed(f"the change conflicts with commits pushed meanwhile: {self._clean(proc.stderr)}")
        return self.out("rev-parse", "HEAD")

    def push(self) -> None:
        proc = self.git("push", "-q", "--porcelain", "origin", f"HEAD:refs/heads/{self.branch}", auth=True,
                        check=False)
        if proc.returncode == 0:
            return
        text = self._clean(proc.stderr + proc.stdout)
        if any(s in text for s in ("non-fast-forward", "fetch first", "[rejected]", "stale info", "cannot lock ref")):
            raise PushRejected(text)
        raise GitError(f"git push failed ({proc.returncode}): {text}")

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class Pushed:
    sha: str
    rebased: bool
    existing: bool  # the commit was already on the branch (pushed by an earlier, killed attempt)


def commit_and_push(clone: Clone, *, base_sha: str, patch: str, message: str, task_key: str,
                    max_rounds: int = 8) -> Pushed:
    """Commit the task's patch on top of the branch and push it, rebasing when others pushed first."""
    head = clone.fetch()
    existing = clone.find_task_commit(task_key, head)
    if existing:
        return Pushed(existing, rebased=False, existing=True)
    sha = clone.commit_patch(base_sha, patch, message)
    rebased = False
    for _ in range(max_rounds):
        if head != base_sha and clone.out("merge-base", "HEAD", head) != head:
            sha = clone.rebase_onto(head)
            rebased = True
        try:
            clone.push()
            return Pushed(sha, rebased=rebased, existing=False)
        except PushRejected:
            head = clone.fetch()
            existing = clone.find_task_commit(task_key, head)
            if existing:
                return Pushed(existing, rebased=False, existing=True)
    raise GitError(f"the push was rejected {max_rounds} times in a row (the branch keeps moving)")
