"""Local sandboxes: a fresh clone in a temp dir, commands confined by bubblewrap.

Layout: `<base>/omoi-sb-<label>-XXXX/{work,home}`; `work` is the clone (the `workdir`), `home`
is `$HOME` for commands. Under bwrap a command sees the host filesystem read-only, a private
`/tmp`, its own sandbox dir read-write, a new PID namespace (so nothing outlives the command
and no host process's /proc/<pid>/environ is visible), and no network unless
`sandbox_network` is on. A few credential stores of the host user (~/.ssh, ~/.aws, ...) and
omoi's data dir / .env are masked as well.

Where bwrap is missing or does not work (probed once per process) commands run as plain
subprocesses with a warning: same environment scrubbing and timeouts, no confinement.

The clone itself runs on the host, before any untrusted code, with a scrubbed environment and
the token (if any) given to git through GIT_CONFIG_* variables as an http.extraHeader: it never
appears on a command line or in a file.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import shlex
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from app.logging import get_logger
from app.sandbox.base import (
    DEFAULT_MAX_OUTPUT_BYTES,
    ExecResult,
    RepoSource,
    SandboxError,
    git_diff_args,
    label_slug,
    safe_relpath,
    split_repo_url,
)

log = get_logger("omoi.sandbox.local")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GIT_IDENTITY = ("omoi", "omoi@localhost")
# Credential stores of the host user that sandboxed commands must not read.
HOME_SECRETS = (".ssh", ".aws", ".azure", ".config/gcloud", ".config/gh", ".git-credentials", ".netrc",
                ".docker", ".kube", ".gnupg", ".pypirc", ".npmrc", ".claude", ".claude.json")

_bwrap_ok: bool | None = None


def bwrap_available() -> bool:
    """True when `bwrap` exists and can build the namespaces omoi uses (probed once)."""
    global _bwrap_ok
    if _bwrap_ok is None:
        path = shutil.which("bwrap")
        if path is None:
            _bwrap_ok = False
        else:
            try:
                probe = subprocess.run(
                    [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
                     "--unshare-net", "--unshare-pid", "--die-with-parent", "--", "true"],
                    capture_output=True, timeout=15, env={"PATH": DEFAULT_PATH},
                )
                _bwrap_ok = probe.returncode == 0
                if not _bwrap_ok:
                    log.warning("bwrap_probe_failed", stderr=probe.stderr.decode(errors="replace")[:500])
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("bwrap_probe_failed", error=str(exc))
                _bwrap_ok = False
    return _bwrap_ok


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


# --------------------------------------------------------------------------------------------
# host-side clone (also used by the Daytona provider when the sandbox has no network)


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


# --------------------------------------------------------------------------------------------
# process execution


async def _drain(stream: asyncio.StreamReader | None, limit: int | None) -> tuple[bytes, bool]:
    """Read a pipe to EOF, keeping at most `limit` bytes; returns (data, truncated)."""
    if stream is None:
        return b"", False
    buf = bytearray()
    truncated = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        if limit is not None and len(buf) + len(chunk) > limit:
            buf += chunk[: max(0, limit - len(buf))]
            truncated = True
        else:
            buf += chunk
    return bytes(buf), truncated


def _decode(out: tuple[bytes, bool], limit: int | None) -> str:
    data, truncated = out
    text = data.decode("utf-8", errors="replace")
    return text + f"\n[omoi: output truncated at {limit} bytes]" if truncated else text


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def run_process(argv: list[str], *, cwd: str, env: dict, timeout: float, limit: int | None,
                      running: set[int] | None = None) -> ExecResult:
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
    except OSError as exc:
        return ExecResult(127, "", f"cannot start {argv[0]}: {exc}", time.monotonic() - started)
    if running is not None:
        running.add(proc.pid)
    readers = [asyncio.ensure_future(_drain(proc.stdout, limit)), asyncio.ensure_future(_drain(proc.stderr, limit))]
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            timed_out = True
        # Nothing a command started survives it (under bwrap the PID namespace is gone already).
        _kill_group(proc.pid)
        await proc.wait()
        done, pending = await asyncio.wait(readers, timeout=5)
        for task in pending:
            task.cancel()
        outs = [t.result() if t in done and not t.cancelled() and t.exception() is None else (b"", False)
                for t in readers]
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        for task in readers:
            task.cancel()
        raise
    finally:
        if running is not None:
            running.discard(proc.pid)
    rc = proc.returncode if proc.returncode is not None else -1
    if rc < 0:
        rc = 128 - rc  # killed by a signal: shell convention
    stderr = _decode(outs[1], limit)
    if timed_out:
        stderr += f"\n[omoi: command timed out after {timeout:g}s and was killed]"
    return ExecResult(rc, _decode(outs[0], limit), stderr, time.monotonic() - started, timed_out)


# --------------------------------------------------------------------------------------------
# the sandbox


class LocalSandbox:
    def __init__(self, *, id: str, root: Path, base_sha: str, network: bool, use_bwrap: bool,
                 hide_paths: list[str], max_output_bytes: int | None) -> None:
        self.id = id
        self.root = root
        self.workdir = str(root / "work")
        self.home = str(root / "home")
        self.base_sha = base_sha
        self.network = network
        self.use_bwrap = use_bwrap
        self.hide_paths = hide_paths
        self.max_output_bytes = max_output_bytes
        self.destroyed = False
        self._running: set[int] = set()

    def __repr__(self) -> str:
        return f"<LocalSandbox {self.id} {self.workdir} bwrap={self.use_bwrap} network={self.network}>"

    # -- paths ----------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.destroyed:
            raise SandboxError(f"sandbox {self.id} was destroyed")

    def _inside(self, path: str) -> bool:
        real_root = os.path.realpath(self.workdir)
        real = os.path.realpath(path)
        return real == real_root or real.startswith(real_root + os.sep)

    def _resolve_cwd(self, cwd: str | None) -> str:
        if cwd is None:
            return self.workdir
        if os.path.isabs(cwd):
            if not self._inside(cwd):
                raise SandboxError(f"cwd {cwd!r} is outside the sandbox work dir")
            return cwd
        path = os.path.join(self.workdir, safe_relpath(cwd))
        if not self._inside(path) or not os.path.isdir(path):
            raise SandboxError(f"cwd {cwd!r} is not a directory inside the work dir")
        return path

    # -- exec -----------------------------------------------------------------------------------

    def _wrap(self, argv: list[str], cwd: str) -> list[str]:
        if not self.use_bwrap:
            return argv
        root = str(self.root)
        wrapped = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for path in self.hide_paths:
            if os.path.isdir(path):
                wrapped += ["--tmpfs", path]
            elif os.path.exists(path):
                wrapped += ["--ro-bind", "/dev/null", path]
        wrapped += ["--tmpfs", "/tmp", "--bind", root, root]
        if not self.network:
            wrapped.append("--unshare-net")
        wrapped += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session",
                    "--chdir", cwd, "--"]
        return wrapped + argv

    async def exec(self, command: str | list[str], *, timeout: float, env: dict | None = None,
                   cwd: str | None = None) -> ExecResult:
        return await self._exec(command, timeout=timeout, env=env, cwd=cwd, limit=self.max_output_bytes)

    async def _exec(self, command: str | list[str], *, timeout: float, env: dict | None, cwd: str | None,
                    limit: int | None) -> ExecResult:
        self._check_alive()
        if isinstance(command, str):
            argv = ["bash", "-c", command] if shutil.which("bash") else ["sh", "-c", command]
        else:
            argv = [str(a) for a in command]
            if not argv:
                raise SandboxError("empty command")
        run_cwd = self._resolve_cwd(cwd)
        full_env = base_env(self.home, env)
        return await run_process(self._wrap(argv, run_cwd), cwd=run_cwd, env=full_env, timeout=timeout,
                                 limit=limit, running=self._running)

    # -- files ----------------------------------------------------------------------------------

    def _write(self, rel: str, data: bytes) -> None:
        path = os.path.join(self.workdir, safe_relpath(rel))
        parent = os.path.dirname(path)
        if not self._inside(parent):
            raise SandboxError(f"upload path {rel!r} leaves the work dir (through a symlink)")
        os.makedirs(os.path.realpath(parent), exist_ok=True)
        if os.path.islink(path):
            os.unlink(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def _read(self, rel: str) -> bytes:
        path = os.path.join(self.workdir, safe_relpath(rel))
        if not self._inside(path):
            raise SandboxError(f"download path {rel!r} leaves the work dir (through a symlink)")
        try:
            fd = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError as exc:
            raise SandboxError(f"no such file in sandbox: {rel}") from exc
        except IsADirectoryError as exc:
            raise SandboxError(f"not a file: {rel}") from exc
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    async def upload(self, files: dict[str, bytes]) -> None:
        self._check_alive()

        def go() -> None:
            for rel, data in files.items():
                self._write(rel, bytes(data))

        await asyncio.to_thread(go)

    async def download(self, path: str) -> bytes:
        self._check_alive()
        return await asyncio.to_thread(self._read, path)

    # -- diff / destroy -------------------------------------------------------------------------

    async def diff(self) -> str:
        # Runs inside the sandbox: the repo's .git/config is untrusted by now (hooks, fsmonitor).
        script = "git add -A && " + shlex.join(git_diff_args(self.base_sha))
        res = await self._exec(script, timeout=300, env=None, cwd=None, limit=None)
        if not res.ok:
            raise SandboxError(f"git diff failed ({res.exit_code}): {res.stderr[-2000:]}")
        return res.stdout

    async def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        for pid in list(self._running):
            _kill_group(pid)
        await asyncio.to_thread(shutil.rmtree, self.root, True)
        log.info("sandbox_destroyed", sandbox_id=self.id, provider="local")


class LocalSandboxProvider:
    def __init__(self, settings: Any = None, *, base_dir: str | Path | None = None, network: bool | None = None,
                 use_bwrap: bool | None = None, hide_paths: list[str] | None = None,
                 max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self.settings = settings
        self.base_dir = Path(base_dir or getattr(settings, "sandbox_dir", None) or tempfile.gettempdir())
        self.network = bool(getattr(settings, "sandbox_network", False)) if network is None else network
        self._use_bwrap = use_bwrap
        self.hide_paths = hide_paths if hide_paths is not None else default_hidden_paths(settings)
        self.max_output_bytes = max_output_bytes

    @property
    def use_bwrap(self) -> bool:
        if self._use_bwrap is None:
            self._use_bwrap = bwrap_available()
            if not self._use_bwrap:
                log.warning("sandbox_unconfined",
                            reason="bubblewrap is missing or does not work here; sandboxed commands run as "
                                   "plain subprocesses (scrubbed env, no filesystem/network isolation)")
        return self._use_bwrap

    async def create(self, *, repo_url: str, ref: str, label: str) -> LocalSandbox:
        source = split_repo_url(repo_url)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix=f"omoi-sb-{label_slug(label)}-", dir=self.base_dir))
        (root / "home").mkdir()
        try:
            sha = await asyncio.to_thread(host_clone, source, ref, root / "work", root / "home")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        sandbox = LocalSandbox(id=f"local-{uuid.uuid4().hex[:12]}", root=root, base_sha=sha, network=self.network,
                               use_bwrap=self.use_bwrap, hide_paths=self.hide_paths,
                               max_output_bytes=self.max_output_bytes)
        log.info("sandbox_created", sandbox_id=sandbox.id, provider="local", label=label, repo=source.url,
                 ref=ref, sha=sha, bwrap=sandbox.use_bwrap, network=sandbox.network)
        return sandbox


def default_hidden_paths(settings: Any = None) -> list[str]:
    home = os.path.expanduser("~")
    paths = [os.path.join(home, p) for p in HOME_SECRETS]
    data_dir = getattr(settings, "data_dir", None)
    if data_dir:
        paths.append(str(Path(data_dir).resolve()))
    paths.append(str(Path.cwd() / ".env"))
    return [p for p in paths if os.path.lexists(p)]


__all__ = ["LocalSandbox", "LocalSandboxProvider", "bwrap_available", "host_clone", "base_env", "run_process"]
