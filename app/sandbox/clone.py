"""The host side of a local sandbox's clone: made before any untrusted code runs, with a scrubbed
environment and the token (if any) given to git through GIT_CONFIG_* variables as an
http.extraHeader, so it never appears on a command line or in a file. Also used by the Daytona
provider, which uploads the tree instead of handing Daytona a token.

`Mirror`: a bare copy of a repository's branches on this host, private to omoi, that omoi's commit
clones (app/execution/gitwork.py) and the sandboxes' host clones copy from instead of downloading
the repository again; it is fetched when a task starts (once for all the tasks that start together).
A sandbox gets a copy of a pack of what the mirror's refs reach (app/sandbox/seed.py: made once per
state of the mirror, no alternates), never a file of the mirror or a link into it, and its `origin`
is GitHub, not the mirror.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from app.sandbox.base import RepoSource, SandboxError
from app.sandbox.seed import PLAIN_URL, seed

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GIT_IDENTITY = ("omoi", "omoi@localhost")
# `git -c` settings for every command omoi runs on a repository it treats as hostile; they outrank the
# repository's own config. `diff.external=` is not here on purpose: git 2.39 then runs an empty command;
# omoi uses plumbing diffs, which never run one.
HARDENING: tuple[str, ...] = (
    "core.hooksPath=/dev/null", "core.fsmonitor=false", "core.untrackedCache=false", "credential.helper=",
    "core.sshCommand=false", "core.askPass=/bin/false", "core.attributesFile=/dev/null",
    "core.useReplaceRefs=false", "protocol.allow=never", "protocol.https.allow=always",
    "protocol.http.allow=always", "protocol.file.allow=always", "commit.gpgSign=false",
    "log.showSignature=false", "gc.auto=0", "maintenance.auto=false", "receive.autoGc=false",
)
HARDENING_ARGS = [arg for item in HARDENING for arg in ("-c", item)]
MIRROR_KEEP_SECONDS = 3 * 3600  # a mirror no task used for this long is deleted (one clone rebuilds it)


def base_env(home: str, extra: dict | None = None) -> dict[str, str]:
    """The allow-listed environment every sandboxed command starts from (nothing inherited
    except PATH)."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "GIT_TERMINAL_PROMPT": "0",
        "PYTHONDONTWRITEBYTECODE": "1",  # keeps __pycache__ out of diffs
    }
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
            raise SandboxError(f"invalid environment variable name {key!r}")
        env[key] = str(value)
    return env


def _git(args: list[str], *, cwd: str | None, env: dict, secrets: list[str], timeout: float = 600) -> str:
    name = next((a for a in args if not a.startswith("-") and "=" not in a), "")  # the command, after any `-c`
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"git {name} timed out after {timeout}s") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        for s in secrets:
            msg = msg.replace(s, "[REDACTED]")
        raise SandboxError(f"git {name} failed ({proc.returncode}): {msg[-2000:]}")
    return proc.stdout.decode(errors="replace").strip()


def host_clone(source: RepoSource, ref: str, dest: Path, home: Path) -> str:
    """Clone `source` into `dest`, check out `ref` detached, return the commit sha.

    Blocking; call it in a thread."""
    if not ref or ref.startswith("-") or any(c in ref for c in "\x00\n\r"):
        raise SandboxError(f"invalid ref {ref!r}")
    secrets = source.secrets()
    env = base_env(str(home), {"GIT_CONFIG_NOSYSTEM": "1", "GIT_ASKPASS": "/bin/false",
                               "SSH_ASKPASS": "/bin/false", "GIT_SSH_COMMAND": "false"})
    auth = dict(env)
    header = source.auth_header()
    if header:
        auth.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": header})
    url = source.url
    if source.is_local and not url.startswith("file://"):
        url = str(Path(url).resolve())
    mirror = None if source.is_local else Mirror.existing(url)
    # The identity is written by the clone itself (one git command fewer than `git config` twice).
    # --template=: none of git's sample hooks and files (never used; 18 fewer files to create and delete)
    clone = ["clone", "-q", "--no-checkout", "--no-hardlinks", "--template=", "--config", f"user.name={GIT_IDENTITY[0]}",
             "--config", f"user.email={GIT_IDENTITY[1]}", "--"]
    work = str(dest)
    sha = None
    # --no-hardlinks: a sandboxed process must not be able to rewrite the source repo's objects. From the
    # mirror: a copy of a pack of what its refs reach, as from GitHub (no file of the mirror's).
    if mirror is not None and Mirror._full_sha(ref):
        try:  # the pack of the mirror's state, made once for every sandbox that starts from it
            seed(mirror, ref, dest, url=source.url, identity=GIT_IDENTITY, env=env)  # origin: the repository
            sha = ref
        except SandboxError:  # not in the mirror (or no pack of it): from the repository itself
            _empty(dest)
    if sha is None:
        sha = _clone_from(source, url, ref, clone, work, env, auth, secrets)
        if not set_origin_url(dest / ".git" / "config", source.url):
            _git(["remote", "set-url", "origin", source.url], cwd=work, env=env, secrets=secrets)
    assert_no_credentials(dest, source)
    return sha


def _clone_from(source: RepoSource, url: str, ref: str, clone: list[str], work: str, env: dict, auth: dict,
                secrets: list[str]) -> str:
    """`host_clone` from the repository itself (no mirror holds `ref`): clone, find `ref`, check it out."""
    _git([*clone, url, work], cwd=None, env=auth, secrets=secrets)
    candidates = (ref, f"refs/remotes/origin/{ref}", f"refs/tags/{ref}") if Mirror._full_sha(ref) else (
        f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref)
    sha = None
    for candidate in candidates:
        try:
            sha = _git(["rev-parse", "--verify", "-q", f"{candidate}^{{commit}}"], cwd=work, env=env, secrets=secrets)
            break
        except SandboxError:
            continue
    if not sha:
        _git(["fetch", "-q", "origin", "--", ref], cwd=work, env=auth, secrets=secrets)
        sha = _git(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], cwd=work, env=env, secrets=secrets)
    _git(["checkout", "-q", "--detach", sha], cwd=work, env=env, secrets=secrets)
    return sha


def _empty(path: Path) -> None:
    """Remove what is in `path`, keeping the directory (made by the caller, with its mode)."""
    for child in path.iterdir() if path.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def set_origin_url(config: Path, url: str) -> bool:
    """Point `origin` at `url` in a clone's config just written by `git clone` (before any untrusted code
    ran), without a git process: True if done, False when the caller must use `git remote set-url`."""
    if not PLAIN_URL.fullmatch(url):  # nothing to quote or escape; anything else: `git remote set-url`
        return False
    try:
        lines = config.read_text().split("\n")
    except (OSError, UnicodeDecodeError):
        return False
    section, found = None, []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == '[remote "origin"]' and stripped.split("=", 1)[0].strip().lower() == "url":
            found.append(i)
    if len(found) != 1:
        return False
    lines[found[0]] = f"\turl = {url}"
    config.write_text("\n".join(lines))
    return True


def assert_no_credentials(workdir: Path, source: RepoSource) -> None:
    git_dir = workdir / ".git"
    for name in ("config", "FETCH_HEAD", "logs/HEAD", "packed-refs"):
        path = git_dir / name
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        leaked = [s for s in source.secrets() if s and s in text]
        if leaked or (name == "config" and "extraheader" in text.lower()):
            raise SandboxError(f"credentials found in {path.relative_to(workdir)} after clone")


def _private_dir(path: Path) -> Path:
    """`path` as a 0700 directory of this user (made if missing); refuses anything else."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise SandboxError(f"{path} is not a private directory of this user")
    return path


class Mirror:
    """A bare copy of one repository's branches and tags (see the module docstring). Blocking."""

    def __init__(self, url: str) -> None:
        self.url = url
        # OMOI_MIRROR_DIR: where the mirrors live (default: one private folder in the temp dir per user)
        root = os.environ.get("OMOI_MIRROR_DIR") or str(Path(tempfile.gettempdir()) / f"omoi-mirrors-{os.getuid()}")
        parent = _private_dir(Path(root))
        name = hashlib.sha256(url.encode()).hexdigest()[:32]
        self.path = parent / f"{name}.git"
        self._lock = parent / f"{name}.lock"
        self._stamp = parent / f"{name}.fetched"  # when the last completed fetch started

    @classmethod
    def existing(cls, url: str) -> "Mirror | None":
        try:
            mirror = cls(url)
        except (SandboxError, OSError):
            return None
        return mirror if (mirror.path / "HEAD").is_file() else None

    def _env(self, header: str | None = None) -> dict[str, str]:
        env = base_env(str(self.path), {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                                        "GIT_ASKPASS": "/bin/false", "SSH_ASKPASS": "/bin/false",
                                        "GIT_DIR": str(self.path)})
        if header:
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": header})
        return env

    @contextmanager
    def _locked(self, kind: int) -> Iterator[None]:
        with open(self._lock, "a") as fh:
            fcntl.flock(fh, kind)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def reading(self):
        """Held while copying from the mirror: no fetch prunes a ref under the copy."""
        return self._locked(fcntl.LOCK_SH)

    def writing(self):
        """Held while changing the mirror (or what is cached beside it): no copy is being made."""
        return self._locked(fcntl.LOCK_EX)

    def update(self, token: str | None, branch: str | None = None, want: Sequence[str] = ()) -> None:
        """Fetch every branch and tag from the repository, unless `branch` in the mirror already holds
        every commit in `want` (omoi pushed them from this host: `record`), or a fetch that started after
        this call was made has completed meanwhile (the tasks that start together share one fetch)."""
        asked = time.time()
        header = None
        if token:
            header = "Authorization: Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        if branch and want and (self.path / "HEAD").is_file():
            with self.reading():  # many tasks check at once; only a fetch needs the mirror alone
                if self.holds(branch, want):
                    return
        with self._locked(fcntl.LOCK_EX):
            try:
                if float(self._stamp.read_text()) >= asked:
                    return
            except (OSError, ValueError):
                pass
            started = time.time()
            if not (self.path / "HEAD").is_file():
                self._sweep()
                shutil.rmtree(self.path, ignore_errors=True)
                _git([*HARDENING_ARGS, "init", "-q", "--bare", "--template=", str(self.path)], cwd=None, env=self._env(),
                     secrets=[token or ""])
            _git([*HARDENING_ARGS, "fetch", "-q", "--prune", "--no-tags", "--", self.url, "+refs/heads/*:refs/heads/*",
                  "+refs/tags/*:refs/tags/*"], cwd=str(self.path), env=self._env(header), secrets=[token or ""])
            self._stamp.write_text(repr(started))

    def holds(self, branch: str, want: Sequence[str]) -> bool:
        """Whether every commit in `want` (full shas) is on `branch` as the mirror has it (one git command:
        nothing reachable from them that the branch lacks; an unknown commit is an error)."""
        if not all(self._full_sha(w) for w in want):
            return False
        proc = subprocess.run(["git", *HARDENING_ARGS, "rev-list", "--count", *want, "--not", f"refs/heads/{branch}",
                               "--"], cwd=str(self.path), env=self._env(), capture_output=True)
        return proc.returncode == 0 and proc.stdout.strip() == b"0"

    @staticmethod
    def _full_sha(ref: str) -> bool:
        return len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)

    def record(self, git_dir: Path, sha: str, branch: str) -> None:
        """`sha` was just pushed to `branch` from omoi's clone `git_dir`: copy it here (no network), so the
        tasks that start next on this host need no fetch."""
        with self._locked(fcntl.LOCK_EX):
            if not (self.path / "HEAD").is_file():
                return
            env = {**self._env(), "GIT_DIR": str(git_dir)}
            _git([*HARDENING_ARGS, "push", "-q", "--no-verify", str(self.path), f"+{sha}:refs/heads/{branch}"],
                 cwd=str(git_dir), env=env, secrets=[])
            os.utime(self._lock)  # in use: the sweep keeps it

    def head(self, branch: str) -> str | None:
        """The commit `branch` points at in the mirror: its loose ref file, which fetch and `record`
        write (no git process for every task that starts), else git's answer (a packed ref)."""
        with self.reading():
            try:
                loose = (self.path / "refs" / "heads" / branch).read_text().strip()
            except (OSError, UnicodeDecodeError):
                loose = ""
            if self._full_sha(loose):
                return loose
            proc = subprocess.run(["git", *HARDENING_ARGS, "rev-parse", "--verify", "-q",
                                   f"refs/heads/{branch}^{{commit}}"], cwd=str(self.path), env=self._env(),
                                  capture_output=True)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def _sweep(self) -> None:
        """Delete the mirrors no task used for `MIRROR_KEEP_SECONDS` (holding this mirror's lock)."""
        now = time.time()
        for stamp in self._stamp.parent.glob("*.fetched"):
            try:
                used = max(stamp.stat().st_mtime, stamp.with_suffix(".lock").stat().st_mtime)
                if now - used > MIRROR_KEEP_SECONDS:
                    shutil.rmtree(stamp.with_suffix(".git"), ignore_errors=True)
                    shutil.rmtree(stamp.with_suffix(".packs"), ignore_errors=True)  # app/sandbox/seed.py
                    stamp.unlink(missing_ok=True)
            except OSError:
                continue


__all__ = ["host_clone", "base_env", "assert_no_credentials", "DEFAULT_PATH", "GIT_IDENTITY", "HARDENING", "Mirror"]
