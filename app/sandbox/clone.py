"""The host side of a local sandbox's clone: made before any untrusted code runs, with a scrubbed
environment and the token (if any) given to git through GIT_CONFIG_* variables as an
http.extraHeader, so it never appears on a command line or in a file. Also used by the Daytona
provider, which uploads the tree instead of handing Daytona a token.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from app.sandbox.base import RepoSource, SandboxError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GIT_IDENTITY = ("omoi", "omoi@localhost")


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
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"git {args[0]} timed out after {timeout}s") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).decode(errors="replace").strip()
        for s in secrets:
            msg = msg.replace(s, "[REDACTED]")
        raise SandboxError(f"git {args[0]} failed ({proc.returncode}): {msg[-2000:]}")
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
    # --no-hardlinks: a sandboxed process must not be able to rewrite the source repo's objects.
    _git(["clone", "-q", "--no-checkout", "--no-hardlinks", "--", url, str(dest)], cwd=None, env=auth, secrets=secrets)
    work = str(dest)
    sha = None
    for candidate in (f"refs/remotes/origin/{ref}", f"refs/tags/{ref}", ref):
        try:
            sha = _git(["rev-parse", "--verify", "-q", f"{candidate}^{{commit}}"], cwd=work, env=env, secrets=secrets)
            break
        except SandboxError:
            continue
    if not sha:
        _git(["fetch", "-q", "origin", "--", ref], cwd=work, env=auth, secrets=secrets)
        sha = _git(["rev-parse", "--verify", "FETCH_HEAD^{commit}"], cwd=work, env=env, secrets=secrets)
    _git(["checkout", "-q", "--detach", sha], cwd=work, env=env, secrets=secrets)
    _git(["remote", "set-url", "origin", source.url], cwd=work, env=env, secrets=secrets)
    _git(["config", "user.name", GIT_IDENTITY[0]], cwd=work, env=env, secrets=secrets)
    _git(["config", "user.email", GIT_IDENTITY[1]], cwd=work, env=env, secrets=secrets)
    assert_no_credentials(dest, source)
    return sha


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


__all__ = ["host_clone", "base_env", "assert_no_credentials", "DEFAULT_PATH", "GIT_IDENTITY"]
