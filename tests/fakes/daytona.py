"""A local stand-in for Daytona: the control plane and, per sandbox, the toolbox daemon inside it.

Same shape as tests/fakes/anthropic.py: an aiohttp server in a background thread (own event
loop) on 127.0.0.1 and a random port. Point the `daytona` SDK (0.226.1) at `fake.api_url`
(`http://127.0.0.1:PORT/api`); every sandbox DTO carries `toolboxProxyUrl =
http://127.0.0.1:PORT/toolbox`, so the SDK's toolbox calls (`<toolboxProxyUrl>/<id>/<path>`)
come back here too.

**Each sandbox is a root of its own, as strict as a real one.** Its files live in a private host
directory (`<fake tmp>/<id>/root`) that a bubblewrap jail mounts as `/`: `/home/daytona` (home and
work dir, user `daytona`, uid 1000), a persistent `/tmp`, a generated `/etc/passwd` ...; the host's
`/usr` (and the merged `/bin`, `/lib` links), a few harmless `/etc` files, a fresh `/proc` and a
minimal `/dev` are mounted read-only on top. Nothing on the host answers at the paths the sandbox
reports: `/home/daytona/repo` exists only inside. One long-lived jail per sandbox owns the user,
PID, mount, IPC, UTS and (unless the sandbox may use the network) network namespaces, and every
command (`process/execute`, each session's shell, `git clone`) is entered into them with
`nsenter`, so, as in one real container, processes see each other, a server started by one
command is reachable from the next, and deleting the sandbox ends all of them. The Claude Code CLI
bundled in the claude-agent-sdk wheel is mounted at `/usr/local/bin/claude` (a real snapshot
would have it installed). File API paths are resolved inside that root the way the kernel would
resolve them in the sandbox (`..` stops at `/`, symlinks are followed inside it); the read-only
system mounts and `/proc`, `/dev` are refused (403), so no request can read or write a host file.

Network: `networkBlockAll` (default: blocked, `FakeDaytona(network_blocked_by_default=...)`) gives
the jail its own network namespace with only loopback; otherwise it shares the host's. A
`networkAllowList`/`domainAllowList` is recorded (`FakeSandbox.network_allow_list`), not enforced.

Implemented (what AsyncDaytona / AsyncSandbox call), answers shaped like the real ones:

- control plane: `POST /api/sandbox` (faults: `fail_next_creates(n, status=429|503)`),
  `GET /api/sandbox` (label filter, cursor paging), `GET|DELETE /api/sandbox/{id}`,
  `GET /api/sandbox/{id}/toolbox-proxy-url`;
- toolbox: `GET /work-dir`, `GET /user-home-dir` (both `/home/daytona`);
  `POST /process/execute` (run by bash, or zsh/sh, like the daemon; stdout+stderr in `result`;
  408 on timeout);
  sessions, modelled on the daemon (one shell per session, commands run one after another in
  it, so `cd`/`export` persist; each command's stdout/stderr are labelled line by line with
  `\\x01\\x01\\x01` / `\\x02\\x02\\x02` into `~/.daytona/sessions/<sid>/<cmd>/output.log`; an async
  command's stdin is a FIFO held open until it ends, fed by `.../input`, which also echoes the
  input into the log as stdout unless `suppressInputEcho`): `POST|GET /process/session`,
  `GET|DELETE /process/session/{sid}`, `POST /process/session/{sid}/exec` (`runAsync`: 202
  `{cmdId}`; else 200 `{cmdId, output, stdout, stderr, exitCode}`, `output` still labelled),
  `GET /process/session/{sid}/command/{cid}` (`exitCode` once ended),
  `GET .../command/{cid}/logs` (JSON `{output, stdout, stderr}`; with `Upgrade: websocket` the
  raw labelled log as binary frames, followed until the command ends with `?follow=true`, then
  close 1000), `POST .../command/{cid}/input` (204; 410 once the command ended; waits up to 2 s
  for a just-started command to open its stdin);
  files: `POST /files/bulk-upload`, `POST /files/bulk-download`, `GET /files` (list),
  `GET /files/info`, `DELETE /files`, `POST /files/folder`, `POST /files/move`;
  `POST /git/clone` (URLs in `fake.repo_map` are "on the internet": cloned by the fake from the
  local path they map to, only if the sandbox has network; others are cloned inside the jail).

Not served (404 and recorded in `fake.unhandled`): PTY, code-run, LSP, computer use, git other
than clone. `fake.requests` records every request; `fake.sandboxes[id]` is a `FakeSandbox`.
`jail_unavailable_reason()` says why sandboxes cannot run here; `start()` then skips the test.
"""
from __future__ import annotations

import asyncio
import base64
import errno
import fcntl
import importlib.util
import json
import logging
import os
import posixpath
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import aiohttp
from aiohttp import web

from ._server import ThreadedServer

log = logging.getLogger("tests.fakes.daytona")

HOME = "/home/daytona"                  # what `get_user_home_dir()` and `get_work_dir()` report
USER = "daytona"
INSIDE_UID = 1000
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DAEMON_DIR = f"{HOME}/.daytona"         # the daemon's config dir; session logs under sessions/
CLAUDE_INSIDE = "/usr/local/bin/claude"
STDOUT_PREFIX = b"\x01\x01\x01"         # daytona.common.process: the daemon's stream labels
STDERR_PREFIX = b"\x02\x02\x02"
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Harmless parts of the host's /etc that programs need to start (linker cache, TLS roots, alternatives).
ETC_FROM_HOST = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "ssl", "ca-certificates",
                 "ca-certificates.conf", "localtime", "nsswitch.conf", "protocols", "services", "mime.types")
SHELLS = ("/usr/bin/zsh", "/usr/bin/bash", "/bin/sh")   # the daemon runs the first of zsh, bash, sh
LOG_POLL_S = 0.02
INPUT_PIPE_WAIT_S = 2.0

_probe: dict[str, str | None] = {}


def claude_cli() -> Path | None:
    """The Claude Code binary bundled in the claude-agent-sdk wheel, if installed."""
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "_bundled" / "claude"
    return path if path.is_file() else None


def jail_unavailable_reason() -> str | None:
    """Why sandboxes cannot run on this host (None when they can); probed once per process by
    starting a jail and entering it."""
    if "reason" in _probe:
        return _probe["reason"]
    missing = [n for n in ("bwrap", "nsenter") if not shutil.which(n)]
    reason = f"{' and '.join(missing)} not installed (apt-get install bubblewrap util-linux)" if missing else None
    if reason is None:
        with tempfile.TemporaryDirectory(prefix="fake-daytona-probe-") as tmp:
            jail = _Jail(Path(tmp), "probe", network=False)
            try:
                jail.prepare()
                jail.spawn()
                jail.wait_ready()
                out = subprocess.run(jail.enter(["true"], cwd="/"), capture_output=True, timeout=15,
                                     env={"PATH": INSIDE_PATH})
                if out.returncode != 0:
                    reason = "cannot enter the jail: " + out.stderr.decode(errors="replace").strip()[:300]
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                reason = f"bubblewrap cannot create the sandbox's namespaces here: {exc}"
            finally:
                jail.kill_sync()
    _probe["reason"] = reason
    return reason


class _HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int = 0
    query: dict[str, str] = field(default_factory=dict)


REC = web.RequestKey("rec", RecordedRequest)


# ---------------------------------------------------------------------------------------------
# The jail: one long-lived bubblewrap per sandbox, commands entered with nsenter


class _Jail:
    """A sandbox's root directory and the bubblewrap process that holds its namespaces."""

    def __init__(self, base: Path, hostname: str, *, network: bool) -> None:
        self.base = base                     # <fake tmp>/<id>
        self.root = base / "root"            # mounted as / inside
        self.hostname = hostname
        self.network = network
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None          # first process inside (host pid): nsenter's target
        self.system_paths: list[str] = ["/usr", "/proc", "/dev"]

    def prepare(self) -> None:
        """The root's skeleton: home, /tmp, generated identity files, mount points."""
        for d in ("usr", "proc", "dev", "etc", "run", "var/tmp", "home/daytona", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").chmod(0o1777)
        (self.root / "var/tmp").chmod(0o1777)
        for name in MERGED_USR:
            host = Path("/") / name
            if host.is_symlink():
                os.symlink(os.readlink(host), self.root / name)
            elif host.is_dir():
                (self.root / name).mkdir()
                self.system_paths.append(f"/{name}")
        etc = self.root / "etc"
        (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                    f"{USER}:x:{INSIDE_UID}:{INSIDE_UID}::{HOME}:/bin/bash\n"
                                    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        (etc / "group").write_text(f"root:x:0:\n{USER}:x:{INSIDE_UID}:\nnogroup:x:65534:\n")
        (etc / "hostname").write_text(self.hostname + "\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost {self.hostname}\n::1 localhost\n")
        if self.network and os.path.isfile("/etc/resolv.conf"):
            shutil.copyfile("/etc/resolv.conf", etc / "resolv.conf")
        for name in ETC_FROM_HOST:
            if os.path.exists(f"/etc/{name}"):
                self.system_paths.append(f"/etc/{name}")

    def bwrap_argv(self, info_fd: int) -> list[str]:
        args = [shutil.which("bwrap") or "bwrap", "--info-fd", str(info_fd),
                "--unshare-user", "--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID), "--unshare-pid",
                "--unshare-ipc", "--unshare-uts", "--hostname", self.hostname, "--unshare-cgroup-try",
                "--die-with-parent"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--bind", str(self.root), "/", "--ro-bind", "/usr", "/usr"]
        for path in self.system_paths:
            if path not in ("/usr", "/proc", "/dev"):
                args += ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        cli = claude_cli()
        if cli is not None and os.path.isdir("/usr/local/bin"):
            # /usr is read-only: a tmpfs over /usr/local/bin holds the host's entries plus the CLI.
            args += ["--tmpfs", "/usr/local/bin"]
            for entry in sorted(os.listdir("/usr/local/bin")):
                src = f"/usr/local/bin/{entry}"
                if entry == "claude":
                    continue
                args += ["--symlink", os.readlink(src), src] if os.path.islink(src) else ["--ro-bind", src, src]
            args += ["--ro-bind", str(cli), CLAUDE_INSIDE]
        sleep = "/usr/bin/sleep" if os.path.exists("/usr/bin/sleep") else "/bin/sleep"
        return args + ["--", sleep, "infinity"]

    def spawn(self) -> None:
        """Starts the jail. Call it from the thread that should own it: `--die-with-parent` ends the
        jail when that thread ends (the stand-in's server thread)."""
        with open(self.base / "bwrap-info.json", "w") as fh:
            self.proc = subprocess.Popen(self.bwrap_argv(fh.fileno()), pass_fds=(fh.fileno(),),
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True, env={"PATH": INSIDE_PATH})

    def wait_ready(self) -> None:
        """Until the jail's first command runs: only then are its id maps and root in place."""
        assert self.proc is not None
        info = self.base / "bwrap-info.json"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.pid is None:
                try:
                    self.pid = int(json.loads(info.read_text())["child-pid"])
                except (ValueError, KeyError, OSError):
                    pass
            if self.pid is not None and _has_child(self.pid, "sleep"):
                return
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"bwrap exited {self.proc.returncode}: {err.strip()[:300]}")
            time.sleep(0.005)
        raise RuntimeError("the jail did not start")

    def enter(self, argv: list[str], *, cwd: str) -> list[str]:
        """argv that runs `argv` inside the jail as uid 1000 in `cwd` (an inside path)."""
        assert self.pid is not None
        return [shutil.which("nsenter") or "nsenter", "-t", str(self.pid), "-U", "-m", "-p", "-i", "-u", "-n",
                "-S", str(INSIDE_UID), "-G", str(INSIDE_UID), "-r", "-w", "--",
                "/bin/sh", "-c", 'cd -- "$1" || exit 1; shift; exec "$@"', "sh", cwd, *argv]

    def kill_sync(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self.proc.stderr:
            self.proc.stderr.close()
        # The kernel ends the rest of the PID namespace once its first process is gone (that process
        # stays a zombie until whoever adopted it reaps it); wait for it.
        deadline = time.monotonic() + 5
        while self.pid and time.monotonic() < deadline and _running(self.pid):
            time.sleep(0.005)

    def resolve(self, path: str, *, follow_last: bool = True) -> Path:
        """The host path of an inside path, resolved as the sandbox's kernel would (symlinks followed
        inside the root, `..` stopping at `/`). Refuses the read-only system mounts."""
        parts = deque(path.split("/"))
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.popleft()
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            inside = "/" + "/".join([*done, part])
            if any(inside == s or inside.startswith(s + "/") for s in self.system_paths):
                raise _HttpError(403, f"{path}: permission denied (not the sandbox's own file)", "FILE_ACCESS_DENIED")
            host = self.root.joinpath(*done, part)
            if (parts or follow_last) and host.is_symlink():
                hops += 1
                if hops > 40:
                    raise _HttpError(400, f"{path}: too many levels of symbolic links", "INVALID_FILE_PATH")
                target = os.readlink(host)
                if target.startswith("/"):
                    done = []
                parts.extendleft(reversed(target.split("/")))
                continue
            done.append(part)
        return self.root.joinpath(*done)


# ---------------------------------------------------------------------------------------------
# State


@dataclass
class FakeSessionCommand:
    id: str
    command: str
    dir: str                 # inside path of its log dir
    run_async: bool
    suppress_input_echo: bool
    exit_code: int | None = None
    inputs: list[str] = field(default_factory=list)

    def dto(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "command": self.command}
        if self.exit_code is not None:
            out["exitCode"] = self.exit_code
        return out


@dataclass
class FakeSession:
    id: str
    proc: asyncio.subprocess.Process
    commands: dict[str, FakeSessionCommand] = field(default_factory=dict)
    deleted: bool = False

    @property
    def dir(self) -> str:
        return f"{DAEMON_DIR}/sessions/{self.id}"

    @property
    def shell_alive(self) -> bool:
        return self.proc.returncode is None


@dataclass
class FakeSandbox:
    id: str
    dir: Path                # host dir of this sandbox (its root is dir/"root")
    create_params: dict
    network_block_all: bool
    state: str = "started"
    deleted: bool = False
    created_at: str = ""
    execs: list[dict] = field(default_factory=list)
    clones: list[dict] = field(default_factory=list)
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    jail: _Jail | None = None

    @property
    def workdir(self) -> PurePosixPath:
        """The work dir the sandbox reports (an inside path: it does not exist on the host)."""
        return PurePosixPath(HOME)

    @property
    def home(self) -> PurePosixPath:
        return PurePosixPath(HOME)

    @property
    def host_root(self) -> Path:
        return self.dir / "root"

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.create_params.get("labels") or {})

    @property
    def network_allow_list(self) -> list[str]:
        """The recorded CIDR allow-list (not enforced by the stand-in)."""
        return _csv(self.create_params.get("networkAllowList"))

    @property
    def domain_allow_list(self) -> list[str]:
        return _csv(self.create_params.get("domainAllowList"))

    def host_path(self, inside: str) -> Path:
        """For assertions: where an inside path lives on the host (resolved inside the root)."""
        assert self.jail is not None
        return self.jail.resolve(_absolute(inside))

    def env(self, extra: dict | None = None) -> dict[str, str]:
        """The environment a command starts with: the image's, the sandbox's env vars, the request's."""
        base = {"PATH": INSIDE_PATH, "HOME": HOME, "USER": USER, "LOGNAME": USER, "SHELL": "/bin/bash",
                "LANG": "C.UTF-8", "HOSTNAME": self.id, "TMPDIR": "/tmp"}
        return {**base, **{str(k): str(v) for k, v in (self.create_params.get("env") or {}).items()},
                **{str(k): str(v) for k, v in (extra or {}).items()}}


def _csv(value: Any) -> list[str]:
    return [p.strip() for p in str(value).split(",") if p.strip()] if value else []


def _absolute(path: str | None, base: str = HOME) -> str:
    """A request path as an absolute inside path (relative ones against the work dir)."""
    if not path:
        return base
    if "\x00" in path:
        raise _HttpError(400, "path contains a NUL byte", "INVALID_FILE_PATH")
    return path if path.startswith("/") else posixpath.join(base, path)


# ---------------------------------------------------------------------------------------------
# The server


class FakeDaytona:
    def __init__(self, *, api_key: str | None = None, root: str | Path | None = None,
                 network_blocked_by_default: bool = True) -> None:
        self.api_key = api_key  # None: accept any bearer token
        self._tmp = None if root else tempfile.mkdtemp(prefix="fake-daytona-")
        self.root = Path(root or self._tmp)
        os.chmod(self.root, 0o755)
        self.network_blocked_by_default = network_blocked_by_default
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api"
        self.toolbox_url = f"{self.url}/toolbox"
        self.sandboxes: dict[str, FakeSandbox] = {}
        # Remote URL -> local repo path: what `git/clone` fetches "from the internet".
        self.repo_map: dict[str, str] = {}
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[RecordedRequest] = []
        self._create_faults: deque[int] = deque()
        self._server = ThreadedServer(self._sock, self._build_app, "FakeDaytona")

    # -- lifecycle ----------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._record])
        r = app.router
        r.add_post("/api/sandbox", self._create)
        r.add_get("/api/sandbox", self._list)
        r.add_get("/api/sandbox/{id}", self._get)
        r.add_delete("/api/sandbox/{id}", self._delete)
        r.add_get("/api/sandbox/{id}/toolbox-proxy-url", self._proxy_url)
        t = "/toolbox/{id}"
        r.add_get(f"{t}/work-dir", self._work_dir)
        r.add_get(f"{t}/user-home-dir", self._work_dir)
        r.add_post(f"{t}/process/execute", self._execute)
        r.add_post(f"{t}/process/session", self._session_create)
        r.add_get(f"{t}/process/session", self._session_list)
        r.add_get(f"{t}/process/session/{{sid}}", self._session_get)
        r.add_delete(f"{t}/process/session/{{sid}}", self._session_delete)
        r.add_post(f"{t}/process/session/{{sid}}/exec", self._session_exec)
        r.add_get(f"{t}/process/session/{{sid}}/command/{{cid}}", self._command_get)
        r.add_get(f"{t}/process/session/{{sid}}/command/{{cid}}/logs", self._command_logs)
        r.add_post(f"{t}/process/session/{{sid}}/command/{{cid}}/input", self._command_input)
        r.add_post(f"{t}/files/bulk-upload", self._bulk_upload)
        r.add_post(f"{t}/files/bulk-download", self._bulk_download)
        r.add_get(f"{t}/files", self._files_list)
        r.add_get(f"{t}/files/info", self._files_info)
        r.add_delete(f"{t}/files", self._files_delete)
        r.add_post(f"{t}/files/folder", self._files_folder)
        r.add_post(f"{t}/files/move", self._files_move)
        r.add_post(f"{t}/git/clone", self._git_clone)
        r.add_route("*", "/{tail:.*}", self._unhandled)
        return app

    def start(self) -> "FakeDaytona":
        reason = jail_unavailable_reason()
        if reason:
            import pytest

            self.stop()
            pytest.skip(f"Daytona stand-in needs a bubblewrap jail: {reason}")
        self._server.start()
        return self

    def stop(self) -> None:
        for sb in list(self.sandboxes.values()):
            self._destroy(sb)
        self._server.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "FakeDaytona":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next_creates(self, count: int = 1, *, status: int = 429) -> None:
        """The next `count` `POST /api/sandbox` answer `status` (429 with Retry-After, or 503)."""
        self._create_faults.extend([status] * count)

    # -- helpers ------------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler):
        body: Any = None
        if request.content_type == "application/json" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = None
        rec = RecordedRequest(request.method, request.path, {k.lower(): v for k, v in request.headers.items()}, body,
                              query=dict(request.query))
        self.requests.append(rec)
        request[REC] = rec
        if request.path.startswith("/api/socket.io"):
            # The SDK's Socket.IO event stream: not served; the SDK falls back to polling.
            rec.status = 404
            return _error(request, 404, "socket.io is not served by the fake")
        if request.path.startswith(("/api/", "/toolbox/")):
            authz = request.headers.get("Authorization", "")
            if not authz.lower().startswith("bearer ") or (
                self.api_key is not None and authz[7:].strip() != self.api_key
            ):
                rec.status = 401
                return _error(request, 401, "Unauthorized")
        try:
            resp = await handler(request)
        except _HttpError as exc:
            resp = _error(request, exc.status, exc.message, exc.code)
        rec.status = resp.status
        return resp

    def _sandbox(self, request: web.Request, *, alive: bool = True) -> FakeSandbox:
        sb = self.sandboxes.get(request.match_info["id"])
        if sb is None or (alive and sb.deleted):
            raise _HttpError(404, "Sandbox not found")
        return sb

    @staticmethod
    def _jail(sb: FakeSandbox) -> _Jail:
        assert sb.jail is not None
        return sb.jail

    def _dto(self, sb: FakeSandbox) -> dict:
        p = sb.create_params
        return {
            "id": sb.id,
            "organizationId": "org-fake",
            "name": p.get("name") or sb.id,
            "snapshot": p.get("snapshot") or "daytonaio/sandbox:fake",
            "user": p.get("user") or USER,
            "env": p.get("env") or {},
            "labels": p.get("labels") or {},
            "public": bool(p.get("public", False)),
            "networkBlockAll": sb.network_block_all,
            "networkAllowList": p.get("networkAllowList"),
            "domainAllowList": p.get("domainAllowList"),
            "kvm": bool(p.get("kvm", False)),
            "target": p.get("target") or "us",
            "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
            "state": sb.state,
            "desiredState": "destroyed" if sb.deleted else "started",
            "autoStopInterval": p.get("autoStopInterval", 15),
            "autoArchiveInterval": p.get("autoArchiveInterval", 10080),
            "autoDeleteInterval": p.get("autoDeleteInterval", -1),
            "createdAt": sb.created_at,
            "updatedAt": sb.created_at,
            "toolboxProxyUrl": self.toolbox_url,
        }

    async def _spawn(self, sb: FakeSandbox, argv: list[str], *, cwd: str, env: dict, stdin: Any = subprocess.DEVNULL,
                     stdout: Any = subprocess.PIPE, stderr: Any = subprocess.STDOUT) -> asyncio.subprocess.Process:
        """Start `argv` inside the sandbox, in its own process group (so a timeout can end it all)."""
        return await asyncio.create_subprocess_exec(*self._jail(sb).enter(argv, cwd=cwd), env=env, stdin=stdin,
                                                    stdout=stdout, stderr=stderr, start_new_session=True)

    @staticmethod
    def _shell() -> str:
        return next(s for s in SHELLS if os.path.exists(s))

    # -- control plane ------------------------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        if self._create_faults:
            status = self._create_faults.popleft()
            message = "Too many requests" if status == 429 else "Service unavailable"
            resp = _error(request, status, message, source="api")
            if status == 429:
                resp.headers["Retry-After"] = "1"
            return resp
        params = request[REC].json or {}
        sid = str(uuid.uuid4())
        block = params.get("networkBlockAll")
        sb = FakeSandbox(id=sid, dir=self.root / sid, create_params=params,
                         network_block_all=self.network_blocked_by_default if block is None else bool(block),
                         created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        sb.dir.mkdir()
        sb.jail = _Jail(sb.dir, sid[:12], network=not sb.network_block_all)
        try:
            await asyncio.to_thread(sb.jail.prepare)
            sb.jail.spawn()
            await asyncio.to_thread(sb.jail.wait_ready)
        except (OSError, RuntimeError) as exc:
            await asyncio.to_thread(sb.jail.kill_sync)
            return _error(request, 500, f"sandbox failed to start: {exc}", source="api")
        self.sandboxes[sid] = sb
        return web.json_response(self._dto(sb))

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        want = json.loads(q["labels"]) if q.get("labels") else {}
        states = set(q.getall("states", []))
        items = [sb for sb in self.sandboxes.values()
                 if (sb.state in states if states else not sb.deleted)
                 and all(sb.labels.get(k) == v for k, v in want.items())]
        start, limit = int(q.get("cursor") or 0), int(q.get("limit") or 100)
        page = items[start:start + limit]
        more = start + limit < len(items)
        return web.json_response({"items": [self._dto(sb) for sb in page],
                                  "nextCursor": str(start + limit) if more else None})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._dto(self._sandbox(request, alive=False)))

    async def _delete(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        await asyncio.to_thread(self._destroy, sb)
        return web.json_response(self._dto(sb))  # the SDK validates a Sandbox DTO here

    def _destroy(self, sb: FakeSandbox) -> None:
        """Ends every process of the sandbox (its PID namespace) and removes its root."""
        if sb.deleted:
            return
        sb.deleted, sb.state = True, "destroyed"
        for session in sb.sessions.values():
            session.deleted = True
            _killpg(session.proc)
        if sb.jail is not None:
            sb.jail.kill_sync()
        shutil.rmtree(sb.dir, ignore_errors=True)

    async def _proxy_url(self, request: web.Request) -> web.Response:
        self._sandbox(request)
        return web.json_response({"url": self.toolbox_url})

    async def _unhandled(self, request: web.Request) -> web.Response:
        rec = request[REC]
        log.warning("fake daytona: unhandled %s %s", request.method, request.path_qs)
        self.unhandled.append(rec)
        return _error(request, 404, f"fake: no route {request.method} {request.path}")

    # -- toolbox: process ---------------------------------------------------------------------

    async def _work_dir(self, request: web.Request) -> web.Response:
        self._sandbox(request)
        return web.json_response({"dir": HOME})

    async def _execute(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise _HttpError(400, "command is required", "INVALID_REQUEST_BODY")
        sb.execs.append(body)
        cwd = posixpath.normpath(_absolute(body.get("cwd")))
        if not self._is_dir(sb, cwd):
            # What the daemon answers when exec.Cmd cannot start in the directory.
            return web.json_response({"exitCode": -1, "result": f"chdir {cwd}: no such file or directory"})
        proc = await self._spawn(sb, [self._shell(), "-c", command], cwd=cwd, env=sb.env(body.get("envs")))
        timeout = body.get("timeout") or None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            _killpg(proc)
            await proc.wait()
            raise _HttpError(408, f"Command execution timed out after {timeout} seconds. The timeout can be increased"
                                  " by adjusting the timeout parameter in the request.", "PROCESS_EXECUTION_TIMEOUT")
        code = proc.returncode if proc.returncode is not None and proc.returncode >= 0 else -1
        return web.json_response({"exitCode": code, "result": out.decode(errors="replace")})

    def _is_dir(self, sb: FakeSandbox, inside: str) -> bool:
        try:
            return self._jail(sb).resolve(inside).is_dir()
        except _HttpError:
            return True  # a read-only system mount: let `cd` decide

    # -- toolbox: sessions --------------------------------------------------------------------

    def _session(self, request: web.Request) -> tuple[FakeSandbox, FakeSession]:
        sb = self._sandbox(request)
        session = sb.sessions.get(request.match_info["sid"])
        if session is None or session.deleted:
            raise _HttpError(404, "session not found", "PROCESS_NOT_FOUND")
        return sb, session

    def _command(self, request: web.Request) -> tuple[FakeSandbox, FakeSession, FakeSessionCommand]:
        sb, session = self._session(request)
        cmd = session.commands.get(request.match_info["cid"])
        if cmd is None:
            raise _HttpError(404, "command not found", "PROCESS_NOT_FOUND")
        self._refresh_exit(sb, cmd)
        return sb, session, cmd

    def _refresh_exit(self, sb: FakeSandbox, cmd: FakeSessionCommand) -> int | None:
        """The exit code once the wrapper published it (`exit_code` appears after both streams drained)."""
        if cmd.exit_code is None:
            raw = self._read_inside(sb, f"{cmd.dir}/exit_code")
            if raw is not None and raw.strip().lstrip(b"-").isdigit():
                cmd.exit_code = int(raw.strip())
        return cmd.exit_code

    def _read_inside(self, sb: FakeSandbox, inside: str) -> bytes | None:
        try:
            fd = os.open(self._jail(sb).resolve(inside), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (OSError, _HttpError):
            return None
        with os.fdopen(fd, "rb") as fh:
            return fh.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None

    def _session_dto(self, sb: FakeSandbox, session: FakeSession) -> dict:
        for cmd in session.commands.values():
            self._refresh_exit(sb, cmd)
        return {"sessionId": session.id, "commands": [c.dto() for c in session.commands.values()]}

    async def _session_create(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        sid = (request[REC].json or {}).get("sessionId")
        if not isinstance(sid, str) or not sid or "/" in sid or sid in (".", ".."):
            raise _HttpError(400, "sessionId is required", "INVALID_REQUEST_BODY")
        old = sb.sessions.get(sid)
        if old is not None and not old.deleted:
            raise _HttpError(409, "session already exists", "CONFLICT")
        proc = await self._spawn(sb, [self._shell()], cwd=HOME, env=sb.env(), stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        session = FakeSession(sid, proc)
        self._mkdir_inside(sb, session.dir)
        sb.sessions[sid] = session
        return web.Response(status=201)

    async def _session_list(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        return web.json_response([self._session_dto(sb, s) for s in sb.sessions.values() if not s.deleted])

    async def _session_get(self, request: web.Request) -> web.Response:
        sb, session = self._session(request)
        return web.json_response(self._session_dto(sb, session))

    async def _session_delete(self, request: web.Request) -> web.Response:
        _, session = self._session(request)
        session.deleted = True
        # Like the daemon: the shell has its own process group; signal all of it.
        _killpg(session.proc)
        await session.proc.wait()
        return web.Response(status=204)

    async def _session_exec(self, request: web.Request) -> web.Response:
        sb, session = self._session(request)
        body = request[REC].json or {}
        command = body.get("command")
        if not isinstance(command, str) or not command.strip():
            raise _HttpError(400, "command cannot be empty", "INVALID_REQUEST_BODY")
        if not session.shell_alive:
            raise _HttpError(410, "session is no longer accepting commands", "SESSION_ENDED")
        run_async = bool(body.get("runAsync") or body.get("async"))
        cid = str(uuid.uuid4())
        cmd = FakeSessionCommand(cid, command, f"{session.dir}/{cid}", run_async, bool(body.get("suppressInputEcho")))
        self._mkdir_inside(sb, cmd.dir)
        self._write_inside(sb, f"{cmd.dir}/cmd.sh", command.encode())
        self._write_inside(sb, f"{cmd.dir}/output.log", b"")
        session.commands[cid] = cmd
        assert session.proc.stdin is not None
        try:
            session.proc.stdin.write(_wrapper(cmd.dir, run_async).encode())
            await session.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise _HttpError(410, "session is no longer accepting commands", "SESSION_ENDED") from None
        if run_async:
            return web.json_response({"cmdId": cid}, status=202)
        while self._refresh_exit(sb, cmd) is None:
            if session.deleted or sb.deleted:
                raise _HttpError(400, "session cancelled")
            if not session.shell_alive and self._refresh_exit(sb, cmd) is None:
                raise _HttpError(400, "session shell ended without a command result")
            await asyncio.sleep(LOG_POLL_S)
        raw = self._read_inside(sb, f"{cmd.dir}/output.log") or b""
        out, err = demux(raw)
        return web.json_response({"cmdId": cid, "output": raw.decode(errors="replace"),
                                  "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace"),
                                  "exitCode": cmd.exit_code})

    async def _command_get(self, request: web.Request) -> web.Response:
        _, _, cmd = self._command(request)
        return web.json_response(cmd.dto())

    async def _command_logs(self, request: web.Request) -> web.StreamResponse:
        sb, session, cmd = self._command(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._stream_logs(request, sb, session, cmd, follow=request.query.get("follow") == "true")
        raw = self._read_inside(sb, f"{cmd.dir}/output.log")
        if raw is None:
            raise _HttpError(404, "log file not found", "FILE_NOT_FOUND")
        if "application/json" not in request.headers.get("Accept", ""):
            return web.Response(body=raw, content_type="text/plain")
        out, err = demux(raw)
        return web.json_response({"output": raw.decode(errors="replace"), "stdout": out.decode(errors="replace"),
                                  "stderr": err.decode(errors="replace")})

    async def _stream_logs(self, request: web.Request, sb: FakeSandbox, session: FakeSession, cmd: FakeSessionCommand,
                           *, follow: bool) -> web.WebSocketResponse:
        """The labelled log as binary frames (what std_demux_stream_aio parses); with follow, new
        output as it is written, until the command ended (then everything left) or the session went."""
        try:
            fd = os.open(self._jail(sb).resolve(f"{cmd.dir}/output.log"), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            raise _HttpError(404, "log file not found", "FILE_NOT_FOUND") from None
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        client = asyncio.create_task(_drain_client(ws))
        try:
            with os.fdopen(fd, "rb") as fh:
                while not ws.closed:
                    chunk = fh.read(64 * 1024)
                    if chunk:
                        await ws.send_bytes(chunk)
                        continue
                    if not follow or client.done() or session.deleted or sb.deleted:
                        break
                    if self._refresh_exit(sb, cmd) is not None:
                        rest = fh.read()
                        if rest:
                            await ws.send_bytes(rest)
                        break
                    await asyncio.sleep(LOG_POLL_S)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            await ws.close(code=aiohttp.WSCloseCode.OK)
            client.cancel()
        return ws

    async def _command_input(self, request: web.Request) -> web.Response:
        sb, session, cmd = self._command(request)
        data = (request[REC].json or {}).get("data")
        if not isinstance(data, str):
            raise _HttpError(400, "data is required", "INVALID_REQUEST_BODY")
        if not session.shell_alive:
            raise _HttpError(410, "session process has exited", "SESSION_ENDED")
        if not data.endswith("\n"):
            data += "\n"  # the daemon adds it, "for commands like `read`"
        fd = await self._open_input(sb, cmd)
        try:
            await asyncio.to_thread(_write_all, fd, data.encode())
        finally:
            os.close(fd)
        cmd.inputs.append(data)
        if not cmd.suppress_input_echo:
            self._append_inside(sb, f"{cmd.dir}/output.log", STDOUT_PREFIX + data.encode())
        return web.Response(status=204)

    async def _open_input(self, sb: FakeSandbox, cmd: FakeSessionCommand) -> int:
        """The command's stdin FIFO, opened for writing (the shell creates it when the command starts)."""
        deadline = time.monotonic() + INPUT_PIPE_WAIT_S
        while True:
            if self._refresh_exit(sb, cmd) is not None:
                raise _HttpError(410, f"command has already completed with exit code {cmd.exit_code}",
                                 "COMMAND_ALREADY_COMPLETED")
            try:
                path = self._jail(sb).resolve(f"{cmd.dir}/input.pipe", follow_last=False)
                if stat.S_ISFIFO(os.lstat(path).st_mode):
                    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
                    return fd
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nothing reads the FIFO (yet)
                    raise _HttpError(500, f"failed to open input pipe: {exc}") from None
            if time.monotonic() > deadline:
                raise _HttpError(500, "failed to open input pipe: the command is not reading input")
            await asyncio.sleep(LOG_POLL_S)

    # -- toolbox: files -----------------------------------------------------------------------

    def _mkdir_inside(self, sb: FakeSandbox, inside: str) -> None:
        self._jail(sb).resolve(inside).mkdir(parents=True, exist_ok=True)

    def _write_inside(self, sb: FakeSandbox, inside: str, data: bytes) -> None:
        path = self._jail(sb).resolve(inside)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def _append_inside(self, sb: FakeSandbox, inside: str, data: bytes) -> None:
        fd = os.open(self._jail(sb).resolve(inside), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        with os.fdopen(fd, "ab") as fh:
            fh.write(data)

    def _file_info(self, path: Path, inside: str) -> dict:
        st = os.lstat(path)
        mtime = time.gmtime(st.st_mtime)
        return {"name": posixpath.basename(inside) or "/", "path": inside, "size": st.st_size,
                "isDir": stat.S_ISDIR(st.st_mode), "mode": stat.filemode(st.st_mode),
                "permissions": f"0{stat.S_IMODE(st.st_mode):o}", "owner": USER, "group": USER,
                "modTime": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", mtime),
                "modifiedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", mtime)}

    def _existing(self, sb: FakeSandbox, inside: str, *, follow_last: bool = True) -> Path:
        path = self._jail(sb).resolve(inside, follow_last=follow_last)
        if not os.path.lexists(path):
            raise _HttpError(404, f"file not found: {inside}", "FILE_NOT_FOUND")
        return path

    async def _files_list(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        inside = posixpath.normpath(_absolute(request.query.get("path")))
        path = self._existing(sb, inside)
        if not path.is_dir():
            raise _HttpError(400, f"{inside}: not a directory", "INVALID_FILE_PATH")
        names = sorted(os.listdir(path))
        return web.json_response([self._file_info(path / n, posixpath.join(inside, n)) for n in names])

    async def _files_info(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        inside = posixpath.normpath(_absolute(request.query.get("path")))
        return web.json_response(self._file_info(self._existing(sb, inside), inside))

    async def _files_delete(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        inside = _absolute(request.query.get("path"))
        path = self._existing(sb, inside, follow_last=False)
        if path.is_dir() and not path.is_symlink():
            if request.query.get("recursive") != "true":
                raise _HttpError(400, f"{inside}: is a directory (use recursive)", "BAD_REQUEST")
            shutil.rmtree(path)
        else:
            path.unlink()
        return web.Response(status=204)

    async def _files_folder(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        path = self._jail(sb).resolve(_absolute(request.query.get("path")))
        mode = int(request.query.get("mode") or "755", 8)
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        return web.Response(status=201)

    async def _files_move(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        src = self._existing(sb, _absolute(request.query.get("source")), follow_last=False)
        dest = self._jail(sb).resolve(_absolute(request.query.get("destination")), follow_last=False)
        os.rename(src, dest)
        return web.Response(status=200)

    async def _bulk_upload(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        reader = await request.multipart()
        paths: dict[str, str] = {}
        written = 0
        async for part in reader:
            name = part.name or ""
            if name.endswith(".path"):
                paths[name[: -len(".path")]] = (await part.read()).decode()
            elif name.endswith(".file"):
                key = name[: -len(".file")]
                dest = paths.get(key) or part.filename
                if not dest:
                    raise _HttpError(400, f"{key}: no destination path", "INVALID_FILE_PATH")
                self._write_inside(sb, _absolute(dest), bytes(await part.read()))
                written += 1
        if not written:
            raise _HttpError(400, "no files in request", "BAD_REQUEST")
        return web.Response(status=200)

    async def _bulk_download(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        writer = aiohttp.MultipartWriter("form-data")
        for src in body.get("paths") or []:
            try:
                path = self._existing(sb, _absolute(src))
                if not path.is_file():
                    raise _HttpError(400, f"{src}: is not a regular file", "INVALID_FILE_PATH")
                writer.append(path.read_bytes(), {"Content-Type": "application/octet-stream",
                                                  "Content-Disposition": _disposition("file", src)})
            except _HttpError as exc:
                err = {"message": exc.message, "statusCode": exc.status, "code": exc.code}
                writer.append(json.dumps(err), {"Content-Type": "application/json",
                                                "Content-Disposition": _disposition("error", src)})
        return web.Response(body=writer, status=200)

    # -- toolbox: git -------------------------------------------------------------------------

    async def _git_clone(self, request: web.Request) -> web.Response:
        sb = self._sandbox(request)
        body = request[REC].json or {}
        sb.clones.append(body)
        url, path = body.get("url"), body.get("path")
        if not url or not path:
            raise _HttpError(400, "url and path are required", "INVALID_REQUEST_BODY")
        dest = posixpath.normpath(_absolute(path))
        args = ["clone", "-q"]
        if body.get("branch"):
            args += ["--branch", body["branch"]]
        if body.get("depth"):
            args += ["--depth", str(body["depth"])]
        if url in self.repo_map:
            ok, out = await self._clone_from_internet(sb, self.repo_map[url], args, dest, body.get("commit_id"))
        else:
            ok, out = await self._clone_inside(sb, url, args, dest, body)
        if not ok:
            raise _HttpError(400, f"failed to clone repository: {out}", "GIT_TRANSPORT_FAILED")
        return web.Response(status=200)

    async def _clone_from_internet(self, sb: FakeSandbox, source: str, args: list[str], dest: str,
                                   commit: str | None) -> tuple[bool, str]:
        """A URL of `repo_map`: "the internet" is the host, reachable only with network."""
        if sb.network_block_all:
            return False, "dial tcp: lookup: network is unreachable (the sandbox has no network)"
        target = self._jail(sb).resolve(dest)
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            return False, f"destination path '{dest}' already exists and is not an empty directory"
        staging = sb.dir / f"clone-{uuid.uuid4().hex}"
        env = {"PATH": os.environ.get("PATH", INSIDE_PATH), "HOME": str(sb.dir), "GIT_TERMINAL_PROMPT": "0",
               "GIT_CONFIG_NOSYSTEM": "1"}
        extra = ["--no-local"] if "--depth" in args else []
        ok, out = await _run(["git", *args, *extra, source, str(staging)], env=env)
        if ok and commit:
            ok, out = await _run(["git", "-C", str(staging), "checkout", "-q", "--detach", commit], env=env)
        if ok:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target.rmdir()
            os.rename(staging, target)
        shutil.rmtree(staging, ignore_errors=True)
        return ok, out

    async def _clone_inside(self, sb: FakeSandbox, url: str, args: list[str], dest: str,
                            body: dict) -> tuple[bool, str]:
        """Any other URL: git runs in the sandbox; credentials only in its environment, never in .git/config."""
        env = sb.env({"GIT_TERMINAL_PROMPT": "0"})
        if body.get("password"):
            basic = base64.b64encode(f"{body.get('username') or 'git'}:{body['password']}".encode()).decode()
            env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                       GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}")
        proc = await self._spawn(sb, ["git", *args, url, dest], cwd=HOME, env=env)
        out, _ = await proc.communicate()
        ok = proc.returncode == 0
        if ok and body.get("commit_id"):
            proc = await self._spawn(sb, ["git", "-C", dest, "checkout", "-q", "--detach", body["commit_id"]],
                                     cwd=HOME, env=env)
            out, _ = await proc.communicate()
            ok = proc.returncode == 0
        return ok, out.decode(errors="replace").strip()


# ---------------------------------------------------------------------------------------------
# Module helpers


def demux(log_bytes: bytes) -> tuple[bytes, bytes]:
    """Split a labelled session log into stdout and stderr (the daemon's DemuxLogBytes)."""
    out, err = bytearray(), bytearray()
    current: bytearray | None = None
    i = 0
    while i < len(log_bytes):
        head = log_bytes[i:i + 3]
        if head == STDOUT_PREFIX or head == STDERR_PREFIX:
            current = out if head == STDOUT_PREFIX else err
            i += 3
            continue
        j = min((k for k in (log_bytes.find(STDOUT_PREFIX, i), log_bytes.find(STDERR_PREFIX, i)) if k != -1),
                default=len(log_bytes))
        if current is not None:
            current += log_bytes[i:j]
        i = j
    return bytes(out), bytes(err)


def _wrapper(cmd_dir: str, run_async: bool) -> str:
    """What is written to a session's shell for one command (modelled on the daemon's wrapper):
    the command is sourced, so `cd`/`export` persist in the session; its stdout and stderr pass
    through FIFOs whose readers label each line into output.log; an async command reads a FIFO
    opened read-write (never EOF) that `.../input` writes to; the exit code is published (renamed
    into place) only after both streams drained. An `exit` in the command ends the shell, so an
    EXIT trap publishes its code too."""
    d = shlex.quote(cmd_dir)
    stdin = '<> "$__dtn_d/input.pipe"' if run_async else "< /dev/null"
    return f"""{{
__dtn_d={d}
rm -f "$__dtn_d/stdout.pipe" "$__dtn_d/stderr.pipe" "$__dtn_d/input.pipe"
if mkfifo "$__dtn_d/stdout.pipe" "$__dtn_d/stderr.pipe" "$__dtn_d/input.pipe"; then
  __dtn_label() {{ while IFS= read -r __dtn_l || [ -n "$__dtn_l" ]; do printf "$1%s\\n" "$__dtn_l"; done; }}
  __dtn_label '\\001\\001\\001' < "$__dtn_d/stdout.pipe" >> "$__dtn_d/output.log" & __dtn_r1=$!
  __dtn_label '\\002\\002\\002' < "$__dtn_d/stderr.pipe" >> "$__dtn_d/output.log" & __dtn_r2=$!
  __dtn_done() {{
    wait "$__dtn_r1" "$__dtn_r2"
    printf '%s\\n' "$1" > "$__dtn_d/exit_code.tmp" && mv -f "$__dtn_d/exit_code.tmp" "$__dtn_d/exit_code"
    rm -f "$__dtn_d/stdout.pipe" "$__dtn_d/stderr.pipe" "$__dtn_d/input.pipe"
  }}
  trap '__dtn_e=$?; exec >/dev/null 2>&1; __dtn_done "$__dtn_e"' EXIT
  {{ . "$__dtn_d/cmd.sh"; }} {stdin} > "$__dtn_d/stdout.pipe" 2> "$__dtn_d/stderr.pipe"
  __dtn_done "$?"
  trap - EXIT
else
  printf '1\\n' > "$__dtn_d/exit_code"
fi
}}
"""


async def _drain_client(ws: web.WebSocketResponse) -> None:
    """Reads (and so answers pings and notices the close of) a log follower."""
    async for _ in ws:
        pass


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _has_child(pid: int, comm: str) -> bool:
    """A process whose parent is `pid` runs `comm` (scans /proc: children files are optional)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat_line[stat_line.find("(") + 1:stat_line.rfind(")")]
        ppid = stat_line[stat_line.rfind(")") + 2:].split()[1]
        if name == comm and ppid == str(pid):
            return True
    return False


def _killpg(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _error(request: web.Request, status: int, message: str, code: str | None = None, *,
           source: str | None = None) -> web.Response:
    """The daemon's / API's ErrorResponse shape (path and timestamp are required by the SDK)."""
    body: dict[str, Any] = {"statusCode": status, "message": message, "path": request.path, "method": request.method,
                            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if code:
        body["code"] = code
    body["source"] = "DAYTONA_API" if source == "api" or request.path.startswith("/api/") else "DAYTONA_DAEMON"
    return web.json_response(body, status=status)


def _disposition(name: str, filename: str) -> str:
    # Written by hand: aiohttp's set_content_disposition percent-encodes the filename, while the
    # daemon sends it as a plain quoted string and the SDK matches it against the requested path.
    escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
    return f'form-data; name="{name}"; filename="{escaped}"'


async def _run(args: list[str], *, env: dict) -> tuple[bool, str]:
    def go() -> tuple[bool, str]:
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        return p.returncode == 0, (p.stdout + p.stderr).strip()

    return await asyncio.to_thread(go)
