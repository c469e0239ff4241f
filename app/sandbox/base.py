"""The sandbox interface: a fresh clone of a repository in which untrusted commands run.

A `SandboxProvider.create(repo_url=..., ref=..., label=...)` returns a `Sandbox` whose `workdir`
holds a clone of `repo_url` checked out (detached) at `ref`. Everything in it is untrusted once
a command has run: callers read results only through `exec`, `download` and `diff`.

Credentials: `repo_url` may carry a token as userinfo (`https://x-access-token:TOKEN@host/o/r`).
Providers strip it, authenticate the clone without writing it anywhere in the sandbox, and
check that `.git/config` holds no credentials afterwards.
"""
from __future__ import annotations

import base64
import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit, urlunsplit

from app.text.rendering import render_line

DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
NOTES = "sandbox/notes.j2"  # what a sandbox adds to a command's output
_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
_FULL_SHA_RE = re.compile(r"^[0-9a-fA-F]{40}([0-9a-fA-F]{24})?$")


class SandboxError(Exception):
    """A sandbox could not be created or an operation on it failed (not a failing command:
    commands report their exit code in ExecResult)."""


class SandboxFileMissing(SandboxError):
    """`download` of a path that does not exist (a provider that cannot tell raises SandboxError)."""


@dataclass
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@dataclass
class SetupStep:
    """One of a repository's setup commands: its result and the addresses the egress proxy refused it."""

    command: str
    result: ExecResult
    blocked: list[str]


@runtime_checkable
class Sandbox(Protocol):
    id: str
    workdir: str

    async def exec(self, command: str | list[str], *, timeout: float, env: dict | None = None,
                   cwd: str | None = None) -> ExecResult:
        """Run `command` (a string goes through a shell; a list is an argv) in the sandbox.
        `cwd` is relative to `workdir` (or absolute inside it). `env` is added to a minimal
        allow-listed environment; nothing of the caller's environment is inherited."""
        ...

    async def upload(self, files: dict[str, bytes]) -> None:
        """Write files at paths relative to `workdir` (parents created, files overwritten)."""
        ...

    async def download(self, path: str) -> bytes:
        """Read a file at a path relative to `workdir`."""
        ...

    async def diff(self) -> str:
        """`git diff --binary` of the work tree (untracked files included) against the commit
        the sandbox was created from."""
        ...

    async def destroy(self) -> None:
        """Remove the sandbox; safe to call more than once."""
        ...


@runtime_checkable
class SandboxProvider(Protocol):
    async def create(self, *, repo_url: str, ref: str, label: str) -> Sandbox:
        ...


# --------------------------------------------------------------------------------------------
# helpers shared by the providers


@dataclass(frozen=True)
class RepoSource:
    """`repo_url` split into a credential-free URL and the credentials (never stored)."""

    url: str
    username: str | None = None
    password: str | None = None

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")

    def auth_header(self) -> str | None:
        """`Authorization: Basic ...` for git's http.extraHeader (GitHub accepts
        x-access-token:<installation token> this way)."""
        if self.password is None:
            return None
        raw = f"{self.username or 'x-access-token'}:{self.password}".encode()
        return "Authorization: Basic " + base64.b64encode(raw).decode()

    def secrets(self) -> list[str]:
        out = []
        if self.password:
            out.append(self.password)
            header = self.auth_header()
            if header:
                out.append(header.split(" ", 2)[2])
        return out


def split_repo_url(repo_url: str) -> RepoSource:
    if "://" not in repo_url or repo_url.startswith("file://"):
        return RepoSource(url=repo_url)
    parts = urlsplit(repo_url)
    if parts.username is None and parts.password is None:
        return RepoSource(url=repo_url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username:
        # https://TOKEN@host/... : a bare token as the user name
        username, password = "x-access-token", username
    return RepoSource(url=clean, username=username, password=password)


def looks_like_sha(ref: str) -> bool:
    return bool(_SHA_RE.match(ref))


def is_full_sha(ref: str) -> bool:
    return bool(_FULL_SHA_RE.match(ref))


def safe_relpath(path: str) -> str:
    """Normalise a path relative to the work dir; reject absolute paths and `..` escapes."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise SandboxError(f"invalid sandbox path {path!r}")
    if path.startswith("/") or path.startswith("\\"):
        raise SandboxError(f"sandbox paths are relative to the work dir, got {path!r}")
    norm = posixpath.normpath(path.replace("\\", "/"))
    if norm == "." or norm == ".." or norm.startswith("../"):
        raise SandboxError(f"sandbox path escapes the work dir: {path!r}")
    return norm


def shell_command(command: str | list[str]) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def truncate(data: bytes, limit: int | None) -> str:
    text = data.decode("utf-8", errors="replace")
    if limit is not None and len(data) > limit:
        return text + "\n" + render_line(NOTES, part="truncated", limit=limit)
    return text


def git_diff_args(base: str) -> list[str]:
    """Arguments for a patch that `git apply` accepts whatever the repo's own config says
    (external diff drivers, textconv, prefixes and colour are all overridden)."""
    return ["git", "-c", "core.quotepath=off", "diff", "--cached", "--binary", "--no-color",
            "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", base, "--"]


def label_slug(label: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.")[:40]
    return slug or "sandbox"


__all__ = [
    "Sandbox", "SandboxProvider", "ExecResult", "SetupStep", "SandboxError", "SandboxFileMissing", "RepoSource", "split_repo_url",
    "looks_like_sha", "is_full_sha", "safe_relpath", "shell_command", "DEFAULT_MAX_OUTPUT_BYTES",
]
