"""omoi's own commits: a private bare clone of the branch, the task's diff applied, inspected, committed, pushed.

The repository and the patch are treated as hostile. The clone is bare (no work tree: no checkout,
no filters, no fsmonitor) and lives in a fresh 0700 directory under a private 0700 parent that no
sandbox sees, so its .git/config is only what `git clone` wrote. Every git command still runs with
system and global config, hooks, fsmonitor, credential helpers, ssh and unknown protocols switched
off (`HARDENING`), and commits are made with plumbing (`apply --cached` into a private index,
`write-tree`, `commit-tree`), which runs no hooks. The applied index, not the patch text, is what
app/execution/policy.py inspects before anything is committed.

The installation token reaches git only as an `http.extraHeader` through GIT_CONFIG_* environment
variables of the git commands that talk to GitHub: never on a command line, never in a file.
Pushes are never forced: a rejected push (someone pushed first) fetches, re-applies and pushes again.
All functions block; call them in a thread.
"""
from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from app.execution import policy
from app.github import cache as github_cache
from app.text.redaction import redact_outbound
from app.execution.policy import Refused  # noqa: F401 - callers catch it from here too
from app.sandbox.clone import DEFAULT_PATH, HARDENING, HARDENING_ARGS, Mirror, set_origin_url  # noqa: F401 - HARDENING: re-exported
from app.sandbox import disposal
from app.sandbox.base import SandboxError
from app.text.rendering import Reason, reason
from app.observability.logs import get_logger

log = get_logger("omoi.gitwork")

TRAILER = "Omoi-Task"
_HARDENING_ARGS = HARDENING_ARGS


class GitError(Exception):
    pass


class PushRejected(GitError):
    pass


class ApplyFailed(GitError):
    """The patch did not apply; `reason` says why (templates/reasons/task/apply_failed.md.j2)."""

    def __init__(self, why: Reason) -> None:
        super().__init__(str(why))
        self.reason = why


def private_parent() -> Path:
    """The 0700 directory, owned by this user, that holds every commit clone."""
    parent = Path(tempfile.gettempdir()) / f"omoi-commits-{os.getuid()}"
    try:
        parent.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(parent)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise GitError(f"{parent} is not a private directory of this user; refusing to clone there")
    return parent


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="omoi-commit-", dir=private_parent()))  # mkdtemp: mode 0700


@dataclass
class Clone:
    url: str                 # credential-free https URL of the repository
    token: str
    branch: str
    author: tuple[str, str]  # (name, email)
    path: Path = field(default_factory=_workdir)

    def __post_init__(self) -> None:
        self.home.mkdir(mode=0o700, exist_ok=True)

    @property
    def git_dir(self) -> Path:
        return self.path / "repo"

    @property
    def home(self) -> Path:
        return self.path / "home"  # empty: nothing for git to find in ~/.gitconfig or ~/.config/git

    # -- plumbing ---------------------------------------------------------------------------

    def _env(self, auth: bool) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "HOME": str(self.home), "LANG": "C.UTF-8",
               "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
               "GIT_ATTR_NOSYSTEM": "1", "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
               "GIT_NO_REPLACE_OBJECTS": "1",
               "GIT_AUTHOR_NAME": self.author[0], "GIT_AUTHOR_EMAIL": self.author[1],
               "GIT_COMMITTER_NAME": self.author[0], "GIT_COMMITTER_EMAIL": self.author[1]}
        if self.git_dir.exists():
            env.update({"GIT_DIR": str(self.git_dir), "GIT_INDEX_FILE": str(self.path / "index")})
        if auth:
            basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
        return env

    def git(self, *args: str, auth: bool = False, check: bool = True, stdin: bytes | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        feed = {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        proc = subprocess.run(["git", *_HARDENING_ARGS, *args], cwd=str(self.path), env=self._env(auth),
                              capture_output=True, timeout=timeout, **feed)
        if check and proc.returncode != 0:
            raise GitError(f"git {args[0]} failed ({proc.returncode}): {self._clean(proc.stderr)}")
        return proc

    def _clean(self, data: bytes) -> str:
        text = data.decode(errors="replace").strip()[-2000:]
        return text.replace(self.token, "[REDACTED]") if self.token else text

    def out(self, *args: str, **kw) -> str:
        return self.git(*args, **kw).stdout.decode(errors="replace").strip()

    # -- operations -------------------------------------------------------------------------

    def refresh(self, want: Sequence[str] = ()) -> str | None:
        """Bring this host's mirror of the repository up to date and return the branch head in it (None
        without a usable mirror). It is fetched (once for the tasks that start together) unless its branch
        already holds every commit in `want` (the dependencies omoi pushed from this host)."""
        try:
            mirror = Mirror(self.url)
            mirror.update(self.token, self.branch, want)
            return mirror.head(self.branch)
        except (SandboxError, OSError) as exc:
            log.warning("mirror_unavailable", error=self._clean(str(exc).encode()))
            return None

    def clone(self, want: Sequence[str] = (), *, refreshed: bool = False) -> str | None:
        """Clone the branch (bare: nothing is checked out) from this host's mirror (`refresh`, unless
        `refreshed`), or from the repository without one; returns its head sha (None when `refreshed`:
        the caller has the head from `refresh`)."""
        mirror = Mirror.existing(self.url) if refreshed or self.refresh(want) else None
        try:
            if mirror is None:
                raise GitError("no mirror")
            with mirror.reading():  # --shared: the mirror's objects are read in place (omoi's own clone only)
                self.git("clone", "-q", "--bare", "--template=", "--shared", "--no-tags", "--single-branch",
                         "-b", self.branch, "--", str(mirror.path), str(self.git_dir))
            if not set_origin_url(self.git_dir / "config", self.url):
                self.git("remote", "set-url", "origin", self.url)
            if refreshed:
                return None
        except (SandboxError, OSError, GitError):  # straight from the repository
            shutil.rmtree(self.git_dir, ignore_errors=True)
            self.git("clone", "-q", "--bare", "--template=", "--no-tags", "--single-branch", "-b", self.branch, "--",
                     self.url, str(self.git_dir), auth=True)
        return self.out("rev-parse", "HEAD")

    def fetch(self) -> str:
        """The branch head on GitHub now."""
        self.git("fetch", "-q", "origin", f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}", auth=True)
        return self.out("rev-parse", f"refs/remotes/origin/{self.branch}")

    def fetch_mirrored(self) -> str | None:
        """The branch head as this host's mirror has it (what omoi pushed last from here), copied into the
        clone without the network; None without a mirror. It may be behind GitHub: a push tells."""
        mirror = Mirror.existing(self.url)
        if mirror is None:
            return None
        if (self.git_dir / "objects" / "info" / "alternates").is_file():  # cloned --shared: its objects are ours
            return mirror.head(self.branch)
        with mirror.reading():
            proc = self.git("fetch", "-q", "--no-tags", str(mirror.path),
                            f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}", check=False)
        if proc.returncode != 0:
            return None
        return self.out("rev-parse", f"refs/remotes/origin/{self.branch}")

    def record_pushed(self, sha: str) -> None:
        """Copy a commit just pushed into this host's mirror (the next tasks start from it, no fetch)."""
        mirror = Mirror.existing(self.url)
        if mirror is not None:
            try:
                mirror.record(self.git_dir, sha, self.branch)
            except (SandboxError, OSError) as exc:
                log.warning("mirror_record_failed", error=self._clean(str(exc).encode()))

    def find_task_commit(self, task_key: str, ref: str) -> str | None:
        """The commit on `ref` whose `Omoi-Task` trailer is `task_key` (a killed worker may have pushed)."""
        return self.find_trailer(TRAILER, task_key, ref)

    def find_trailer(self, trailer: str, value: str, ref: str) -> str | None:
        """The newest commit on `ref` with `value` among the values of its `trailer`."""
        out = self.out("log", ref, "-F", f"--grep={trailer}: {value}",
                       f"--format=%H %(trailers:key={trailer},valueonly,separator=%x2C)")
        for line in out.splitlines():
            sha, _, values = line.partition(" ")
            if value in [v.strip() for v in values.split(",")]:
                return sha
        return None

    def apply_checked(self, base_sha: str, patch: str, limits: policy.Limits | None = None,
                      secrets: Iterable[str] = (), *, three_way: bool = False) -> None:
        """Apply `patch` to `base_sha` in this clone's private index and inspect the result there.

        Raises `policy.Refused` (nothing is committed) or `ApplyFailed`. Safe to call again: the
        index is rebuilt from `base_sha` each time. The clone's token is always among the secrets.
        """
        limits = limits or policy.Limits()
        early = policy.precheck(patch, limits)
        if early:
            raise Refused(early.reason)
        self.git("read-tree", base_sha)  # replaces whatever an earlier call left in the index
        proc = self.git("apply", "--cached", "--binary", "--whitespace=nowarn", *(["--3way"] if three_way else []),
                        "-", stdin=patch.encode(), check=False)
        if proc.returncode != 0:
            raise ApplyFailed(reason("task/apply_failed", conflict=three_way, detail=self._clean(proc.stderr)))
        changes = self.staged_changes(base_sha)
        links_before = links_after = None
        if any(policy.LINK in (c.old_mode, c.new_mode) for c in changes):
            links_before, links_after = self._links("ls-tree", "-r", "-z", base_sha), self._links("ls-files", "-s", "-z")
        scanner = policy.scanner_for([*secrets, self.token])
        sizes = self._sizes(c.new_sha for c in changes if c.adds_content)
        policy.inspect(changes, limits, scanner, sizes=sizes, read=self.read_blob,
                       links_before=links_before, links_after=links_after)

    def staged_changes(self, base_sha: str) -> list[policy.Change]:
        """What the private index changes against `base_sha`, read from git, not from the patch."""
        raw = self.git("diff-index", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", "--no-ext-diff",
                       "--no-textconv", base_sha, "--").stdout
        fields = raw.split(b"\0")
        changes = []
        for meta, path in zip(fields[0::2], fields[1::2]):
            old_mode, new_mode, old_sha, new_sha, status = meta.decode().lstrip(":").split(" ")
            changes.append(policy.Change(path.decode("utf-8", "surrogateescape"), status[0], old_mode, new_mode,
                                         old_sha, new_sha))
        return changes

    def read_blob(self, sha: str) -> bytes:
        return self.git("cat-file", "blob", sha).stdout  # no --filters, no --textconv: the stored bytes

    def _sizes(self, shas: Iterable[str]) -> dict[str, int]:
        wanted = sorted(set(shas))
        if not wanted:
            return {}
        out = self.git("cat-file", "--batch-check=%(objectname) %(objectsize)", stdin="\n".join(wanted).encode())
        return {sha: int(size) for sha, size in (line.split() for line in out.stdout.decode().splitlines())}

    def _links(self, *listing: str) -> dict[str, str]:
        """path -> target of every symlink in a tree (`ls-tree`) or in the private index (`ls-files -s`)."""
        found = {}
        for entry in self.git(*listing).stdout.split(b"\0"):
            meta, _, path = entry.partition(b"\t")
            parts = meta.split()
            if parts and parts[0] == policy.LINK.encode():
                sha = parts[2] if listing[0] == "ls-tree" else parts[1]
                found[path.decode("utf-8", "surrogateescape")] = sha.decode()
        targets = self._read_many(found.values())
        return {path: targets[sha].decode("utf-8", "surrogateescape") for path, sha in found.items()}

    def _read_many(self, shas: Iterable[str]) -> dict[str, bytes]:
        """Many small blobs (symlink targets) in one `cat-file --batch`."""
        wanted = sorted(set(shas))
        if not wanted:
            return {}
        data, blobs, at = self.git("cat-file", "--batch", stdin="\n".join(wanted).encode()).stdout, {}, 0
        while at < len(data):
            header_end = data.index(b"\n", at)
            sha, _, size = data[at:header_end].decode().split(" ")
            blobs[sha] = data[header_end + 1:header_end + 1 + int(size)]
            at = header_end + 1 + int(size) + 1
        return blobs

    def commit_patch(self, base_sha: str, patch: str, message: str, limits: policy.Limits | None = None,
                     secrets: Sequence[str] = (), *, three_way: bool = False) -> str:
        """Apply `patch` on `base_sha`, inspect it, and make a commit whose parent is `base_sha`; returns its
        sha. Plumbing only: no hook runs, no ref moves (the commit is only reachable once pushed)."""
        self.apply_checked(base_sha, patch, limits, secrets, three_way=three_way)
        tree = self.out("write-tree")
        # A commit message reaches GitHub too: the same redaction as everything the API client sends.
        message = redact_outbound(message, extra=[self.token, *secrets])
        text = self.git("stripspace", stdin=message.encode()).stdout  # what `git commit` would have stored
        return self.out("commit-tree", "--no-gpg-sign", tree, "-p", base_sha, "-F", "-", stdin=text)

    def task_commits(self, ref: str, since: Iterable[str] = ()) -> dict[str, str]:
        """`Omoi-Task` key -> commit for every task commit on `ref` (one scan for a whole batch), among the
        commits not on any of `since` when given (the tasks' bases: an earlier attempt's commit on one of
        them was found when that attempt's successor started)."""
        out = self.out("log", ref, *(f"^{s}" for s in sorted(set(since))), "-F", f"--grep={TRAILER}: ",
                       f"--format=%H %(trailers:key={TRAILER},valueonly,separator=%x2C)")
        found: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, values = line.partition(" ")
            for value in values.split(","):
                found.setdefault(value.strip(), sha)  # newest first: the latest commit of a key wins
        found.pop("", None)
        return found

    def changed_paths(self, old: str, new: str) -> set[str]:
        """The paths that differ between two commits (renames as a delete and an add)."""
        raw = self.git("diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", old, new,
                       "--").stdout
        return {p.decode("utf-8", "surrogateescape") for p in raw.split(b"\0") if p}

    def patch_paths(self, patch: str) -> set[str]:
        """Every path `patch` touches (both sides of a rename), as git reads the patch."""
        raw = self.git("apply", "--numstat", "-z", "-", stdin=patch.encode()).stdout
        paths, fields = set(), raw.split(b"\0")
        at = 0
        while at < len(fields):
            counts = fields[at].split(b"\t", 2)
            if len(counts) == 3 and counts[2]:
                paths.add(counts[2])
                at += 1
            elif len(counts) == 3:  # a rename: the old and the new path follow
                paths.update(fields[at + 1:at + 3])
                at += 3
            else:
                at += 1
        return {p.decode("utf-8", "surrogateescape") for p in paths if p}

    def contains(self, sha: str, ancestor: str) -> bool:
        return self.git("merge-base", "--is-ancestor", ancestor, sha, check=False).returncode == 0

    def push(self, sha: str, expect: str | None = None) -> None:
        """Push `sha` to the branch (never forced). With `expect`, only if the branch is at `expect` on
        GitHub (a compare-and-swap: `sha` descends from it, so this is still a fast-forward)."""
        lease = [f"--force-with-lease=refs/heads/{self.branch}:{expect}"] if expect else []
        proc = self.git("push", "-q", "--porcelain", *lease, "origin", f"{sha}:refs/heads/{self.branch}", auth=True,
                        check=False)
        if proc.returncode == 0:  # the head omoi pushed, for the run's check run (app/github/cache.py)
            github_cache.remember_push(self.url, self.branch, sha, lambda old: self.contains(sha, old))
            return
        text = self._clean(proc.stderr + proc.stdout)
        if any(s in text for s in ("non-fast-forward", "fetch first", "[rejected]", "stale info", "cannot lock ref")):
            raise PushRejected(text)
        raise GitError(f"git push failed ({proc.returncode}): {text}")

    def cleanup(self) -> None:
        disposal.dispose(self.path)  # renamed aside now, removed at low priority


@dataclass
class Pushed:
    sha: str
    rebased: bool
    existing: bool  # the commit was already on the branch (pushed by an earlier, killed attempt)


def commit_and_push(clone: Clone, *, base_sha: str, patch: str, message: str, task_key: str,
                    limits: policy.Limits | None = None, secrets: Sequence[str] = (), max_rounds: int = 8,
                    precommitted: str | None = None) -> Pushed:
    """Commit the task's patch on top of the branch and push it, re-applying it on the new head when
    others pushed first. Raises `policy.Refused` before committing anything the policy forbids (checked
    again after each re-apply). Idempotent per `task_key`: a commit already pushed is found and returned.
    `precommitted`: the commit `clone.commit_patch(base_sha, ...)` already made (and checked) outside the
    caller's branch lock, so tasks racing for one branch apply and scan in parallel."""
    head = clone.fetch()
    existing = clone.find_task_commit(task_key, head)
    if existing:
        return Pushed(existing, rebased=False, existing=True)
    sha = precommitted or clone.commit_patch(base_sha, patch, message, limits, secrets)
    rebased = False
    for _ in range(max_rounds):
        if head != base_sha and not clone.contains(sha, head):
            sha = clone.commit_patch(head, patch, message, limits, secrets, three_way=True)
            rebased = True
        try:
            clone.push(sha)
            return Pushed(sha, rebased=rebased, existing=False)
        except PushRejected:
            head = clone.fetch()
            existing = clone.find_task_commit(task_key, head)
            if existing:
                return Pushed(existing, rebased=False, existing=True)
    raise GitError(f"the push was rejected {max_rounds} times in a row (the branch keeps moving)")
