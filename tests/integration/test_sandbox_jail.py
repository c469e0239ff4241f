"""app/sandbox's bubblewrap jail on a real temp git repository: no network (a control sandbox with
network on connects), the host's files are not there, and processes, memory, file size, tmpfs and
the work dir's disk use are bounded."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.sandbox.local import LocalSandboxProvider, bwrap_available
from tests.support.servers import TcpListener

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap missing or not working here (CI installs it)")

# Inside the jail only /usr is there: the system's interpreter, not the venv's.
JAIL_PYTHON = "/usr/bin/python3"

CONNECT = "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3); print('connected')"


async def test_no_network_inside_bwrap(tmp_path, source_repo):
    listener = TcpListener()
    try:
        blocked = LocalSandboxProvider(base_dir=tmp_path / "sb")
        sb = await blocked.create(repo_url=str(source_repo.path), ref="main", label="net")
        try:
            res = await sb.exec([JAIL_PYTHON, "-c", CONNECT, str(listener.port)], timeout=20)
            assert res.exit_code != 0 and "connected" not in res.stdout
            assert "Connection refused" in res.stderr or "unreachable" in res.stderr.lower()
            assert listener.accepted == 0
            # The host filesystem is read-only inside, except the sandbox's own dirs; /tmp is private.
            # (not under /tmp: that is the sandbox's private tmpfs, and a checkout may live there)
            host_file = Path("/var/tmp") / f".sandbox-write-probe-{os.getpid()}"
            try:
                res = await sb.exec(["sh", "-c", f"echo x > {host_file}"], timeout=10)
                assert res.exit_code != 0 and ("Read-only file system" in res.stderr or "nonexistent" in res.stderr
                                               or "No such file" in res.stderr), res
                assert not host_file.exists()
            finally:
                host_file.unlink(missing_ok=True)
            res = await sb.exec(["sh", "-c", f"echo x > {tmp_path / 'outside.txt'}"], timeout=10)
            assert not (tmp_path / "outside.txt").exists()  # went to the sandbox's own /tmp
            res = await sb.exec("echo x > /tmp/scratch && echo x > $HOME/h && cat /tmp/scratch", timeout=10)
            assert res.ok, res
        finally:
            await sb.destroy()
        # Control: the same probe connects when the sandbox has network.
        open_net = LocalSandboxProvider(base_dir=tmp_path / "sb2", network=True)
        sb = await open_net.create(repo_url=str(source_repo.path), ref="main", label="net-on")
        try:
            res = await sb.exec([JAIL_PYTHON, "-c", CONNECT, str(listener.port)], timeout=20)
            assert res.ok and "connected" in res.stdout, res
        finally:
            await sb.destroy()
    finally:
        listener.close()


async def test_host_files_are_not_there(tmp_path, source_repo):
    """The jail shows /usr and a few /etc files, nothing else of the host: no home, no /root, no
    /etc/shadow, no other directory of the host at its path."""
    secret_dir = tmp_path / "fakehome" / ".ssh"
    secret_dir.mkdir(parents=True)
    (secret_dir / "id_rsa").write_text("PRIVATE")
    provider = LocalSandboxProvider(base_dir=tmp_path / "sb")
    sb = await provider.create(repo_url=str(source_repo.path), ref="main", label="hide")
    try:
        for path in (secret_dir / "id_rsa", Path("/etc/shadow"), Path("/root"), Path(sb.workdir), Path.cwd(),
                     Path("/run/postgresql"), Path("/var/run")):
            res = await sb.exec(["ls", "-la", str(path)], timeout=10)
            assert res.exit_code != 0 and "No such file" in res.stderr, (path, res)
        res = await sb.exec("ls /", timeout=10)
        assert set(res.stdout.split()) <= {"bin", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "proc",
                                           "run", "sbin", "tmp", "usr", "workspace"}, res.stdout
    finally:
        await sb.destroy()


async def test_jail_limits_hold(tmp_path, source_repo):
    """Processes, memory, file size, tmpfs and the work dir's disk use are bounded; a command over the
    work-dir limit is stopped (within the watch interval) and says why."""
    from app.config import Settings
    from app.sandbox.jail import Limits

    mb = 1 << 20  # (the memory setting has a floor for Claude Code's runtime; a verify command has none)
    limits = Limits(max_processes=40, max_memory_bytes=200 * mb, max_file_bytes=2 * mb, tmpfs_bytes=4 * mb)
    sb = await LocalSandboxProvider(Settings(sandbox_max_workdir_mb=8), base_dir=tmp_path / "sb", limits=limits).create(
        repo_url=str(source_repo.path), ref="main", label="limits")
    try:
        res = await sb.exec("n=0; for i in $(seq 1 100); do (sleep 3 &) 2>/dev/null && n=$((n+1)); done; "
                            "ps -e --no-headers | wc -l", timeout=30)
        assert int(res.stdout.split()[-1]) <= 40, res
        res = await sb.exec([JAIL_PYTHON, "-c", "x = bytearray(400 * 1024 * 1024)"], timeout=30)
        assert res.exit_code != 0 and "MemoryError" in res.stderr
        res = await sb.exec("head -c 5000000 /dev/zero > big.bin; ls -l big.bin", timeout=30)
        assert "File size limit exceeded" in res.stderr and " 2097152 " in res.stdout, res
        res = await sb.exec("head -c 1000000 /dev/zero > /tmp/a && head -c 1000000 /dev/zero > /tmp/b && "
                            "head -c 1000000 /dev/zero > /tmp/c && head -c 1000000 /dev/zero > /tmp/d && "
                            "head -c 1000000 /dev/zero > /tmp/e", timeout=30)
        assert res.exit_code != 0 and "No space left on device" in res.stderr, res
        started = time.monotonic()
        res = await sb.exec("for i in $(seq 1 40); do head -c 1000000 /dev/urandom > fill-$i.bin; sleep 0.2; done",
                            timeout=60)
        assert not res.ok and "over the sandbox limit of 8 MB" in res.stderr, res
        assert time.monotonic() - started < 8.5
    finally:
        await sb.destroy()
