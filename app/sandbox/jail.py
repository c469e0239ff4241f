"""The local confinement: one bubblewrap profile for everything untrusted (agent CLI, its tools,
verify commands, `git diff` in the work tree).

What a jailed process sees (nothing else of the host exists for it):
- `/usr` read-only (and the merged-/usr links `/bin`, `/lib`, ...), a short list of harmless `/etc`
  files plus a generated `passwd`/`group`/`hosts`/`hostname`;
- `/workspace`: the task's work dir, the only writable bind;
- private, size-limited tmpfs `/tmp` and `$HOME` (`/home/agent`);
- a fresh `/proc` of its own PID namespace and a minimal `/dev`;
- for an agent only: the Claude Code binary at `/opt/omoi/claude` (bound from an open fd) and the
  model proxy's socket directory at `/run/omoi`.
Namespaces: user (uid 1000 inside, no capabilities, no further user namespaces), PID, IPC, UTS,
cgroup and network (only loopback) unless the operator turned `sandbox_network` on.
When omoi runs as root the jail is entered as an unprivileged host uid of its own (per sandbox),
so the kernel's per-user process limit applies and no file of the host is the jail's by ownership.
Limits (rlimits, inherited by everything started inside): processes, data size (memory), file
size, open files, no core dumps; `--die-with-parent` and the PID namespace end every process when
the jail's first process ends or is killed.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.observability.logs import get_logger

log = get_logger("omoi.sandbox.jail")

WORKSPACE = "/workspace"
HOME = "/home/agent"
RUN_DIR = "/run/omoi"          # the model proxy's unix socket lives here (agent jails only)
CLI_INSIDE = "/opt/omoi/claude"
ETC_INSIDE = "/run/omoi-etc"   # generated identity files; /etc/passwd etc. link here
IDENTITY_FILES = ("passwd", "group", "hosts", "hostname")
INSIDE_UID = 1000
INSIDE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME = "omoi-sandbox"
# Harmless parts of /etc that programs need to start (dynamic linker, TLS roots, locales, Python).
ETC_KEEP = ("alternatives", "ssl", "ca-certificates", "ca-certificates.conf", "ld.so.cache", "ld.so.conf",
            "ld.so.conf.d", "localtime", "timezone", "nsswitch.conf", "protocols", "services", "mime.types",
            "os-release", "debian_version", "bash.bashrc", "inputrc", "profile", "terminfo", "gai.conf",
            "host.conf", "magic", "magic.mime")
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

_probe: dict[str, Any] = {}


@dataclass(frozen=True)
class Limits:
    """Per-jail resource limits (rlimits; see module docstring)."""

    max_processes: int = 512
    max_memory_bytes: int = 4 << 30      # RLIMIT_DATA of every process
    max_file_bytes: int = 1 << 30        # RLIMIT_FSIZE: the largest single file
    max_open_files: int = 4096
    tmpfs_bytes: int = 512 << 20         # each of /tmp and $HOME

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        mb = 1 << 20
        return cls(max_processes=int(getattr(settings, "sandbox_max_processes", 512)),
                   max_memory_bytes=int(getattr(settings, "sandbox_max_memory_mb", 4096)) * mb,
                   max_file_bytes=int(getattr(settings, "sandbox_max_file_mb", 1024)) * mb,
                   tmpfs_bytes=int(getattr(settings, "sandbox_tmpfs_mb", 512)) * mb)


def _tools() -> dict[str, str | None]:
    tools = {name: shutil.which(name) for name in ("setpriv", "prlimit", "socat")}
    tools["bwrap"] = bwrap_path()
    return tools


def bwrap_path() -> str | None:
    """The bubblewrap binary (setting `sandbox_bwrap`: a name on PATH or an absolute path)."""
    return shutil.which(get_settings().sandbox_bwrap or "bwrap")


def unavailable_reason() -> str | None:
    """Why the jail cannot be built on this host (None when it can). Probed once per process by
    really building a jail with every namespace and the uid switch."""
    if "reason" in _probe:
        return _probe["reason"]
    tools = _tools()
    missing = [n for n in ("bwrap", "prlimit", "socat") if not tools[n]] + (
        ["setpriv"] if os.geteuid() == 0 and not tools["setpriv"] else [])
    if missing:
        reason = f"{', '.join(missing)} not installed (Debian: apt-get install bubblewrap util-linux socat)"
    else:
        argv = host_prefix(probe_uid(), Limits()) + [
            str(tools["bwrap"]), "--unshare-user", "--disable-userns", "--uid", str(INSIDE_UID), "--gid", str(INSIDE_UID),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net", "--unshare-cgroup-try",
            "--die-with-parent", "--cap-drop", "ALL", *_system_binds(), "--proc", "/proc", "--dev", "/dev",
            "--", "/bin/sh", "-c", "true"]
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=15, env={"PATH": INSIDE_PATH})
            reason = None if proc.returncode == 0 else (
                "bubblewrap cannot create the sandbox's namespaces here: "
                + proc.stderr.decode(errors="replace").strip()[:300]
                + " (user namespaces must be allowed; in Docker run with --security-opt seccomp=unconfined"
                  " --security-opt apparmor=unconfined, or --privileged)")
        except (OSError, subprocess.SubprocessError) as exc:
            reason = f"bubblewrap failed to start: {exc}"
    if reason:
        log.warning("sandbox_jail_unavailable", reason=reason)
    _probe["reason"] = reason
    return reason


def available() -> bool:
    return unavailable_reason() is None


def probe_uid() -> int | None:
    return 65534 if os.geteuid() == 0 else None


def new_uid(settings: Any = None) -> int | None:
    """A host uid of the jail's own (running as root), else None (the jail keeps omoi's uid)."""
    if os.geteuid() != 0:
        return None
    base = int(getattr(settings, "sandbox_uid_base", 200000) or 200000)
    return base + secrets.randbelow(60000)


def host_prefix(uid: int | None, limits: Limits) -> list[str]:
    """The host-side commands in front of bwrap: switch to the jail's uid, set the rlimits."""
    prefix: list[str] = []
    if uid is not None:
        prefix += [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                   "--inh-caps=-all", "--"]
    prefix += [shutil.which("prlimit") or "prlimit", f"--nproc={limits.max_processes}",
               f"--data={limits.max_memory_bytes}", f"--fsize={limits.max_file_bytes}",
               f"--nofile={limits.max_open_files}", "--core=0", "--"]
    return prefix


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in MERGED_USR:
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ETC_KEEP:
        path = f"/etc/{name}"
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    return args


def write_identity_files(directory: Path) -> Path:
    """passwd/group/hosts/hostname for the jail (the host's own are never shown)."""
    directory.mkdir(mode=0o755, exist_ok=True)
    (directory / "passwd").write_text(f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                                      f"agent:x:{INSIDE_UID}:{INSIDE_UID}:omoi agent:{HOME}:/bin/bash\n"
                                      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    (directory / "group").write_text(f"root:x:0:\nagent:x:{INSIDE_UID}:\nnogroup:x:65534:\n")
    (directory / "hosts").write_text(f"127.0.0.1 localhost {HOSTNAME}\n::1 localhost\n")
    (directory / "hostname").write_text(HOSTNAME + "\n")
    for f in directory.iterdir():
        f.chmod(0o444)
    return directory


@dataclass
class Jail:
    """One sandbox's confinement; `argv()` wraps a command so that it runs inside.

    bwrap runs as the jail's uid, so every bound host path must be reachable by it: the sandbox
    root is 0711 (traversable, not listable) under a base dir whose parents are traversable
    (`traversable()`); the work dir itself is the jail uid's, 0700."""

    workdir: Path            # host path bound at /workspace
    etc_dir: Path            # generated identity files, bound at /run/omoi-etc
    uid: int | None
    limits: Limits
    network: bool = False
    run_dir: Path | None = None   # bound read-only at /run/omoi (the model proxy's socket)

    def bwrap_args(self, *, cwd: str = WORKSPACE, cli: str | None = None, info_fd: int | None = None) -> list[str]:
        args = [bwrap_path() or "bwrap"]
        if info_fd is not None:
            args += ["--info-fd", str(info_fd)]  # {"child-pid": N}: killing N ends the whole PID namespace
        args += ["--unshare-user", "--disable-userns", "--uid", str(INSIDE_UID),
                "--gid", str(INSIDE_UID), "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", HOSTNAME,
                "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        if not self.network:
            args.append("--unshare-net")
        args += _system_binds()
        args += ["--ro-bind", str(self.etc_dir), ETC_INSIDE]
        for name in IDENTITY_FILES:
            args += ["--symlink", f"{ETC_INSIDE}/{name}", f"/etc/{name}"]
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", str(self.limits.tmpfs_bytes), "--tmpfs", "/tmp",
                 "--size", str(self.limits.tmpfs_bytes), "--tmpfs", HOME,
                 "--bind", str(self.workdir), WORKSPACE]
        if self.run_dir is not None:
            args += ["--ro-bind", str(self.run_dir), RUN_DIR]
        if cli is not None:
            args += ["--ro-bind", cli, CLI_INSIDE]
        args += ["--remount-ro", "/", "--setenv", "HOME", HOME, "--setenv", "PWD", cwd, "--setenv", "TMPDIR", "/tmp",
                 "--setenv", "PATH", INSIDE_PATH, "--setenv", "USER", "agent", "--chdir", cwd]
        return args

    def argv(self, command: list[str], *, cwd: str = WORKSPACE, info_fd: int | None = None) -> list[str]:
        return host_prefix(self.uid, self.limits) + self.bwrap_args(cwd=cwd, info_fd=info_fd) + ["--", *command]

    def write_agent_launcher(self, directory: Path, cli: str, keep_env: list[str], *, proxy_port: int,
                             pidfile: Path, infofile: Path) -> str:
        """A host script the Agent SDK starts as its "CLI": it records its pid (for a hard kill), keeps only
        `keep_env` of the SDK's environment, enters the jail, starts a loopback forwarder to the model
        proxy's socket and execs Claude Code inside. The SDK's stdin/stdout protocol passes through."""
        for name in keep_env:
            if not name.replace("_", "").isalnum() or name[0].isdigit():
                raise ValueError(f"bad environment variable name {name!r}")
        if self.run_dir is None:
            raise ValueError("an agent jail needs the model proxy's run dir")
        kept = " ".join(f'${{{n}+"{n}=${n}"}}' for n in keep_env)
        inner = loopback_forwarder(proxy_port, "model.sock") + f'exec {CLI_INSIDE} "$@"'
        jailed = host_prefix(self.uid, self.limits) + self.bwrap_args(cli=cli, info_fd=7) + [
            "--", "/bin/sh", "-c", inner, "sh"]
        script = directory / "claude-jailed"
        script.write_text("#!/bin/sh\n"
                          f"echo $$ > {shlex.quote(str(pidfile))}\n"
                          f"exec 7>{shlex.quote(str(infofile))}\n"
                          f'exec /usr/bin/env -i {kept} {shlex.join(jailed)} "$@"\n')
        script.chmod(0o700)
        return str(script)


def loopback_forwarder(port: int, socket_name: str) -> str:
    """Shell that joins 127.0.0.1:`port` of the jail's own loopback to one of omoi's unix sockets in
    `RUN_DIR` (the jail has no other network) and waits until it listens; the command follows it."""
    return (f"socat TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{RUN_DIR}/{socket_name} "
            f"</dev/null >/dev/null 2>&1 & "
            f"i=0; until socat -u OPEN:/dev/null TCP:127.0.0.1:{port} 2>/dev/null; do "
            f"i=$((i+1)); [ $i -gt 500 ] && break; sleep 0.01; done; ")


def kill(infofile: Path | None = None, *, pid: int | None = None, uid: int | None = None, wait_s: float = 5.0) -> int:
    """SIGKILL a jail: the first process of its PID namespace (from bwrap's info file; the kernel then
    ends every process in it), the host-side process `pid`, and with `uid` every process of the jail's
    own host uid. Returns how many processes were signalled."""
    targets: set[int] = set()
    if pid:
        targets.add(pid)
    if infofile is not None:
        try:
            child = int(json.loads(infofile.read_text() or "{}").get("child-pid") or 0)
        except (OSError, ValueError, AttributeError):
            child = 0
        if child and _other_pid_namespace(child):
            targets.add(child)
    if uid is not None:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        targets.add(int(entry))
                except OSError:
                    pass
    count = 0
    for target in targets:
        try:
            os.kill(target, signal.SIGKILL)
            count += 1
        except OSError:
            pass
    # The kernel tears a PID namespace down asynchronously (its init waits for every member to exit):
    # wait for it, so "ended" means nothing of the jail runs any more.
    deadline = time.monotonic() + wait_s
    while targets and time.monotonic() < deadline:
        targets = {t for t in targets if _running(t)}
        if targets:
            time.sleep(0.01)
    return count


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _other_pid_namespace(pid: int) -> bool:
    """`pid` still runs in a PID namespace other than ours (guards against a reused pid)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def traversable(path: Path) -> bool:
    """Every directory from / down to `path` lets other users pass (o+x): bwrap, running as the jail's
    uid, must reach the paths it binds."""
    current = Path(os.path.realpath(path))
    for part in [current, *current.parents]:
        try:
            if not os.stat(part).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def chown_tree(path: Path, uid: int | None) -> None:
    """Give the jail's uid the tree it may write (no-op when the jail keeps omoi's uid)."""
    if uid is None:
        return
    os.chown(path, uid, uid)
    for base, dirs, files in os.walk(path):
        for name in dirs + files:
            os.lchown(os.path.join(base, name), uid, uid)


__all__ = ["Jail", "Limits", "available", "unavailable_reason", "new_uid", "chown_tree", "write_identity_files",
           "traversable", "kill", "WORKSPACE", "HOME", "RUN_DIR", "CLI_INSIDE"]
