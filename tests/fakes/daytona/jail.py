"""The jail: one long-lived bubblewrap per sandbox, commands entered with nsenter.

A sandbox's root is a private host directory mounted as ``/``; the host's ``/usr``, a few
harmless ``/etc`` files, a fresh ``/proc`` and a minimal ``/dev`` are mounted read-only on top.
``jail_unavailable_reason()`` probes once per process whether this host can run jails.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path

from .common import CLAUDE_INSIDE, ETC_FROM_HOST, HOME, INSIDE_PATH, INSIDE_UID, MERGED_USR, USER, _HttpError


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
