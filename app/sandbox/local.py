"""Local sandboxes: a fresh clone in a private temp dir; everything untrusted runs in its jail.

The clone is made on the host, before any untrusted code, with a scrubbed environment and the
token (if any) given to git through GIT_CONFIG_* variables as an http.extraHeader: it never
appears on a command line or in a file. From then on every command (verify commands, `git diff`,
the agent's CLI and its tools) runs inside `app/sandbox/jail.py`'s bubblewrap jail, which sees
the work dir and nothing of omoi. Without a working jail, `create` refuses (fail closed) unless
the operator set the loudly named `unsafe_allow_unconfined_sandbox`.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import shlex
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

from app.observability.logs import get_logger
from app.sandbox import disposal, egress_proxy
from app.sandbox import jail as jail_mod
from app.sandbox.clone import base_env, host_clone  # noqa: F401 - host_clone is part of this module's interface
from app.sandbox.process import kill_group, run_process
from app.sandbox.base import (
    DEFAULT_MAX_OUTPUT_BYTES,
    ExecResult,
    SetupStep,
    SandboxError,
    SandboxFileMissing,
    git_diff_args,
    label_slug,
    safe_relpath,
    split_repo_url,
)
from app.text.rendering import Reason, reason

log = get_logger("omoi.sandbox.local")



def bwrap_available() -> bool:
    """True when the jail (bubblewrap with user namespaces, util-linux, socat) works here (probed once)."""
    return jail_mod.available()


class SandboxUnavailable(SandboxError):
    """The sandbox cannot be built on this worker; nothing untrusted was run."""


# --------------------------------------------------------------------------------------------
# the sandbox


class LocalSandbox:
    """A clone on this host whose commands (and agent) run in `Jail` (app/sandbox/jail.py).

    `workdir` is the host path of the clone (omoi reads results from it); `agent_cwd` is the same
    directory as jailed processes see it (`/workspace`). Layout of `root` (0700, omoi's uid):
    `work/` (the clone, owned by the jail's uid), `etc/` (generated passwd/hosts), `run/` (the model
    proxy's socket), `host/` (the agent launcher; never bound into the jail)."""

    def __init__(self, *, id: str, root: Path, base_sha: str, network: bool, jail: jail_mod.Jail | None,
                 max_output_bytes: int | None, max_workdir_bytes: int | None = None,
                 allow_unconfined: bool = False) -> None:
        self.id = id
        self.root = root
        self.workdir = str(root / "work")
        self.base_sha = base_sha
        self.network = network
        self.jail = jail
        self.max_output_bytes = max_output_bytes
        self.max_workdir_bytes = max_workdir_bytes
        self.destroyed = False
        self._running: set[int] = set()
        # The operator's explicit, unsafe opt-out: an agent may run on the host (app/agent/isolation.py).
        self.unconfined_agent_ok = jail is None and allow_unconfined

    @property
    def use_bwrap(self) -> bool:
        return self.jail is not None

    @property
    def agent_cwd(self) -> str:
        return jail_mod.WORKSPACE if self.jail is not None else self.workdir

    @property
    def home(self) -> str:
        return jail_mod.HOME if self.jail is not None else str(self.root / "home")

    def __repr__(self) -> str:
        return f"<LocalSandbox {self.id} {self.workdir} jailed={self.use_bwrap} network={self.network}>"

    # -- paths ----------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.destroyed:
            raise SandboxError(f"sandbox {self.id} was destroyed")

    def _inside(self, path: str) -> bool:
        real_root = os.path.realpath(self.workdir)
        real = os.path.realpath(path)
        return real == real_root or real.startswith(real_root + os.sep)

    def _resolve_cwd(self, cwd: str | None) -> tuple[str, str]:
        """(host path, path as the jailed command sees it)."""
        if cwd is None:
            return self.workdir, self.agent_cwd
        if os.path.isabs(cwd):
            if cwd == jail_mod.WORKSPACE or cwd.startswith(jail_mod.WORKSPACE + "/"):
                cwd = os.path.relpath(cwd, jail_mod.WORKSPACE)
            elif self._inside(cwd):
                cwd = os.path.relpath(cwd, self.workdir)
            else:
                raise SandboxError(f"cwd {cwd!r} is outside the sandbox work dir")
            if cwd == ".":
                return self.workdir, self.agent_cwd
        rel = safe_relpath(cwd)
        path = os.path.join(self.workdir, rel)
        if not self._inside(path) or not os.path.isdir(path):
            raise SandboxError(f"cwd {cwd!r} is not a directory inside the work dir")
        return path, os.path.join(self.agent_cwd, rel)

    # -- exec -----------------------------------------------------------------------------------

    async def exec(self, command: str | list[str], *, timeout: float, env: dict | None = None,
                   cwd: str | None = None) -> ExecResult:
        return await self._exec(command, timeout=timeout, env=env, cwd=cwd, limit=self.max_output_bytes)

    async def _exec(self, command: str | list[str], *, timeout: float, env: dict | None, cwd: str | None,
                    limit: int | None) -> ExecResult:
        self._check_alive()
        if isinstance(command, str):
            argv = ["/bin/bash", "-c", command] if shutil.which("bash") else ["/bin/sh", "-c", command]
        else:
            argv = [str(a) for a in command]
            if not argv:
                raise SandboxError("empty command")
        host_cwd, inner_cwd = self._resolve_cwd(cwd)
        full_env = base_env(self.home, env)
        if self.jail is None:
            return await run_process(argv, cwd=host_cwd, env=full_env, timeout=timeout, limit=limit,
                                     running=self._running)
        full_env["PATH"] = jail_mod.INSIDE_PATH
        host = self.root / "host"
        host.mkdir(mode=0o700, exist_ok=True)
        info = host / f"exec-{uuid.uuid4().hex[:8]}.json"
        fd = os.open(info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            return await run_process(self.jail.argv(argv, cwd=inner_cwd, info_fd=fd), cwd="/", env=full_env,
                                     timeout=timeout, limit=limit, running=self._running, watch=self._over_disk_limit,
                                     pass_fds=(fd,), kill=lambda pid: jail_mod.kill(info, pid=pid))
        finally:
            os.close(fd)
            info.unlink(missing_ok=True)

    # -- the agent ------------------------------------------------------------------------------

    def model_socket(self) -> str:
        """Host path of the unix socket the model proxy listens on for this sandbox's agent."""
        return str(self.root / "run" / "model.sock")

    def agent_launcher(self, cli: str, keep_env: list[str], *, proxy_port: int) -> str:
        """The command the Agent SDK runs as its CLI: Claude Code inside this sandbox's jail."""
        self._check_alive()
        if self.jail is None:
            raise SandboxError("this sandbox is not confined; agents run only in a confined sandbox")
        host = self.root / "host"
        host.mkdir(mode=0o700, exist_ok=True)
        return self.jail.write_agent_launcher(host, cli, keep_env, proxy_port=proxy_port,
                                              pidfile=host / "agent.pid", infofile=host / "agent.json")

    def kill_agent(self) -> int:
        """SIGKILL the agent's jail (its PID namespace takes every process it started along)."""
        host = self.root / "host"
        try:
            pid = int((host / "agent.pid").read_text().strip())
        except (OSError, ValueError):
            pid = None
        return jail_mod.kill(host / "agent.json", pid=pid)

    def _over_disk_limit(self) -> Reason | None:
        if not self.max_workdir_bytes:
            return None
        used = workdir_bytes(self.workdir)
        if used > self.max_workdir_bytes:
            return reason("sandbox/disk_limit", size_mb=used // (1 << 20), limit_mb=self.max_workdir_bytes // (1 << 20))
        return None

    async def watch_disk(self, on_exceeded, interval: float = 2.0) -> None:
        """Until cancelled: every `interval` s, call `on_exceeded(reason)` once the work dir is over its limit."""
        while True:
            await asyncio.sleep(interval)
            reason = await asyncio.to_thread(self._over_disk_limit)
            if reason:
                on_exceeded(reason)
                return

    # -- setup steps ----------------------------------------------------------------------------

    async def run_setup(self, commands: list[str], *, allow: list[str], timeout: float) -> list[SetupStep]:
        """Run the repository's setup commands in the jail, each with network only through omoi's egress
        proxy (app/sandbox/egress_proxy.py), which admits the `allow` hosts and records what it refused.
        Stops at the first command that fails. The proxy is gone when this returns."""
        self._check_alive()
        steps: list[SetupStep] = []
        sock = self.root / "run" / "egress.sock"
        port = 3128
        async with egress_proxy.serve_unix(str(sock), tuple(allow), uid=self.jail.uid if self.jail else None) as proxy:
            for command in commands:
                proxy.command = command
                url = f"http://127.0.0.1:{port}"
                env = {"HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
                       "NO_PROXY": "", "no_proxy": ""}
                script = command
                if self.jail is not None:  # the jail has no network: join its loopback to the proxy's socket
                    script = jail_mod.loopback_forwarder(port, "egress.sock") + command
                res = await self.exec(script, timeout=timeout, env=env)
                steps.append(SetupStep(command, res, [f"{b.host}:{b.port}" for b in proxy.blocked
                                                       if b.command == command]))
                if not res.ok:
                    break
        return steps

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
        if self.jail is not None:
            jail_mod.chown_tree(Path(path), self.jail.uid)

    def _read(self, rel: str) -> bytes:
        path = os.path.join(self.workdir, safe_relpath(rel))
        if not self._inside(path):
            raise SandboxError(f"download path {rel!r} leaves the work dir (through a symlink)")
        try:
            fd = os.open(os.path.realpath(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError as exc:
            raise SandboxFileMissing(f"no such file in sandbox: {rel}") from exc
        except IsADirectoryError as exc:
            raise SandboxError(f"not a file: {rel}") from exc
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise SandboxError(f"not a regular file: {rel}")
            return fh.read(self.max_output_bytes or -1)

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
        self.kill_agent()
        for pid in list(self._running):
            kill_group(pid)
        if self.jail is not None:
            jail_mod.kill(uid=self.jail.uid)  # whatever is left of the jail's own uid
        disposal.dispose(self.root)  # renamed aside now, removed at low priority
        log.info("sandbox_destroyed", sandbox_id=self.id, provider="local")


class LocalSandboxProvider:
    """Creates `LocalSandbox`es. Fails closed: where the jail cannot be built (no bubblewrap, no user
    namespaces) `create` refuses, unless the operator set `unsafe_allow_unconfined_sandbox`."""

    def __init__(self, settings: Any = None, *, base_dir: str | Path | None = None, network: bool | None = None,
                 use_bwrap: bool | None = None, max_output_bytes: int | None = DEFAULT_MAX_OUTPUT_BYTES,
                 limits: jail_mod.Limits | None = None) -> None:
        self.settings = settings
        self.base_dir = Path(base_dir or getattr(settings, "sandbox_dir", None) or tempfile.gettempdir())
        self.network = bool(getattr(settings, "sandbox_network", False)) if network is None else network
        self._use_bwrap = use_bwrap
        self.allow_unconfined = bool(getattr(settings, "unsafe_allow_unconfined_sandbox", False)) or use_bwrap is False
        self.max_output_bytes = max_output_bytes
        self.limits = limits or jail_mod.Limits.from_settings(settings)
        self.max_workdir_bytes = int(getattr(settings, "sandbox_max_workdir_mb", 4096)) << 20

    @property
    def use_bwrap(self) -> bool:
        if self._use_bwrap is None:
            self._use_bwrap = jail_mod.available()
        return self._use_bwrap

    def _check_confinement(self) -> None:
        if self.use_bwrap:
            return
        if not self.allow_unconfined:
            raise SandboxUnavailable(
                "omoi will not run untrusted code unconfined: the local sandbox cannot be built on this worker ("
                + (jail_mod.unavailable_reason() or "bubblewrap disabled") + "). Install bubblewrap, util-linux and "
                "socat and allow user namespaces, use the Daytona provider, or (unsafe) set "
                "OMOI_UNSAFE_ALLOW_UNCONFINED_SANDBOX=true.")
        log.warning("sandbox_unconfined", reason="OMOI_UNSAFE_ALLOW_UNCONFINED_SANDBOX is set: untrusted commands "
                                                 "run as plain subprocesses of omoi (no isolation)")

    def _jail_base(self) -> Path:
        base = sandbox_base_dir(self.settings, self.base_dir, jailed=self.use_bwrap)
        if not base.is_dir():
            base.mkdir(parents=True, exist_ok=True)
            base.chmod(0o711)
        return base

    async def create(self, *, repo_url: str, ref: str, label: str) -> LocalSandbox:
        self._check_confinement()
        source = split_repo_url(repo_url)
        root = Path(tempfile.mkdtemp(prefix=f"omoi-sb-{label_slug(label)}-", dir=self._jail_base()))
        try:
            home = root / "home"
            home.mkdir(mode=0o700)
            sha = await asyncio.to_thread(host_clone, source, ref, root / "work", home)
            jail = None
            if self.use_bwrap:
                uid = jail_mod.new_uid(self.settings)
                root.chmod(0o711)  # the jail uid passes through to work/, etc/, run/; it cannot list root
                (root / "run").mkdir(mode=0o755)
                jail = jail_mod.Jail(workdir=root / "work", etc_dir=jail_mod.write_identity_files(root / "etc"),
                                     uid=uid, limits=self.limits, network=self.network, run_dir=root / "run")
                await asyncio.to_thread(jail_mod.chown_tree, root / "work", uid)
                (root / "work").chmod(0o700)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        sandbox = LocalSandbox(id=f"local-{uuid.uuid4().hex[:12]}", root=root, base_sha=sha, network=self.network,
                               jail=jail, max_output_bytes=self.max_output_bytes,
                               max_workdir_bytes=self.max_workdir_bytes, allow_unconfined=self.allow_unconfined)
        log.info("sandbox_created", sandbox_id=sandbox.id, provider="local", label=label, repo=source.url,
                 ref=ref, sha=sha, jailed=sandbox.use_bwrap, network=sandbox.network)
        return sandbox


def sandbox_base_dir(settings: Any = None, base_dir: str | Path | None = None, *, jailed: bool = True) -> Path:
    """Where local sandbox roots go (also where the orphan sweep looks). A jail with a uid of its own
    (omoi running as root) must reach its root, so a base under a private parent (mode 0700) is
    replaced by `omoi-sandboxes` in the system temp dir, or in /tmp."""
    base = Path(base_dir or getattr(settings, "sandbox_dir", None) or tempfile.gettempdir())
    if jailed and os.geteuid() == 0 and not jail_mod.traversable(base):
        for candidate in (Path(tempfile.gettempdir()), Path("/tmp")):
            if jail_mod.traversable(candidate):
                return candidate / "omoi-sandboxes"
    return base


def workdir_bytes(path: str) -> int:
    """Disk used under `path` (files' allocated blocks; symlinks not followed)."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue
    return total


__all__ = ["LocalSandbox", "LocalSandboxProvider", "SandboxUnavailable", "bwrap_available", "host_clone", "base_env",
           "run_process", "workdir_bytes", "sandbox_base_dir"]
