"""The Daytona stand-in (tests/fakes/daytona.py) through the real `daytona` SDK: each sandbox is a
root of its own (nothing on the host answers at its paths), the session API drives an interactive
command, the network is closed unless asked for, and the control plane lists by label and fails
like the real service. The fixture skips when bubblewrap cannot build the jail here."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid

import pytest
from daytona import (
    AsyncDaytona,
    CreateSandboxFromSnapshotParams,
    DaytonaConfig,
    DaytonaError,
    DaytonaGoneError,
    DaytonaNotFoundError,
    DaytonaRateLimitError,
    DaytonaServiceUnavailableError,
    DaytonaTimeoutError,
    ListSandboxesQuery,
    SessionExecuteRequest,
)

from tests.fakes.daytona import HOME, STDERR_PREFIX, STDOUT_PREFIX, claude_cli

INTERACTIVE = ("""sh -c 'while IFS= read -r l; do [ "$l" = bye ] && exit 3; """
               """printf "%s\\n" "$l" | tr a-z A-Z; echo "err:$l" >&2; done'""")


@pytest.fixture
async def client(fake_daytona):
    dt = AsyncDaytona(DaytonaConfig(api_key="dtn-test", api_url=fake_daytona.api_url))
    yield dt
    await dt.close()


async def new_sandbox(client, **params):
    return await client.create(CreateSandboxFromSnapshotParams(**params), timeout=60)


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def host_processes_running(needle: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if needle.encode() in fh.read().replace(b"\0", b" "):
                    return True
        except OSError:
            pass
    return False


async def test_paths_the_sandbox_reports_do_not_exist_on_the_host(client, fake_daytona):
    sb = await new_sandbox(client, network_block_all=True)
    fsb = fake_daytona.sandboxes[sb.id]
    assert await sb.get_work_dir() == HOME and await sb.get_user_home_dir() == HOME
    assert not os.path.exists(HOME)

    await sb.fs.upload_file(b"hello\n", f"{HOME}/x.txt")
    await sb.fs.upload_file(b"rel\n", "sub/y.txt")  # relative: against the work dir
    assert await sb.fs.download_file(f"{HOME}/x.txt") == b"hello\n"
    res = await sb.process.exec(f"cat {HOME}/x.txt sub/y.txt; id -un; pwd; echo $HOME")
    assert (res.exit_code, res.result) == (0, f"hello\nrel\ndaytona\n{HOME}\n{HOME}\n")
    assert not os.path.exists(f"{HOME}/x.txt")
    # It lives under the sandbox's private root, and only there.
    assert fsb.host_path(f"{HOME}/x.txt").read_bytes() == b"hello\n"
    assert fsb.host_path(f"{HOME}/x.txt").is_relative_to(fsb.host_root)

    # The file API beyond upload/download.
    await sb.fs.create_folder(f"{HOME}/d", "755")
    await sb.fs.move_files(f"{HOME}/x.txt", f"{HOME}/d/x.txt")
    assert [f.name for f in await sb.fs.list_files(f"{HOME}/d")] == ["x.txt"]
    info = await sb.fs.get_file_info(f"{HOME}/d/x.txt")
    assert (info.size, info.is_dir, info.owner) == (6, False, "daytona")
    await sb.fs.delete_file(f"{HOME}/d", recursive=True)
    with pytest.raises(DaytonaNotFoundError):
        await sb.fs.get_file_info(f"{HOME}/d")
    assert fake_daytona.unhandled == []


async def test_file_api_cannot_reach_the_host(client, fake_daytona):
    sb = await new_sandbox(client)
    fsb = fake_daytona.sandboxes[sb.id]
    marker = f"omoi-escape-{uuid.uuid4().hex}"
    # `..` stops at the sandbox's own /: the file lands in its /tmp, not the host's.
    await sb.fs.upload_file(b"x", f"{HOME}/../../../../../../tmp/{marker}")
    assert not os.path.exists(f"/tmp/{marker}")
    assert (await sb.process.exec(f"cat /tmp/{marker}")).result == "x"

    # Symlinks are followed inside the sandbox, where they point.
    res = await sb.process.exec(f"ln -s / {HOME}/root && ln -s /proc/self/environ {HOME}/env"
                                f" && ln -s {fake_daytona.root} {HOME}/host")
    assert res.exit_code == 0, res.result
    assert await sb.fs.download_file(f"{HOME}/root/etc/hostname") == (sb.id[:12] + "\n").encode()
    await sb.fs.upload_file(b"y", f"{HOME}/root/tmp/{marker}.2")
    assert not os.path.exists(f"/tmp/{marker}.2")
    with pytest.raises(DaytonaNotFoundError):  # the host's path means nothing inside
        await sb.fs.download_file(f"{HOME}/host/{sb.id}/root/home/daytona/env")

    # The read-only system mounts, /proc and /dev are not the sandbox's files: refused.
    for path in ("/proc/self/environ", f"{HOME}/env", "/usr/bin/git", "/etc/ssl"):
        with pytest.raises(DaytonaError):
            await sb.fs.download_file(path)
    with pytest.raises(DaytonaError):
        await sb.fs.upload_file(b"evil", f"/usr/local/bin/{marker}")
    with pytest.raises(DaytonaError):
        await sb.fs.get_file_info("/proc/1/environ")
    assert not os.path.exists(f"/usr/local/bin/{marker}")
    assert fsb.host_path(f"/tmp/{marker}.2").read_bytes() == b"y"


async def test_two_sandboxes_see_neither_files_nor_processes_of_each_other(client, fake_daytona):
    a = await new_sandbox(client)
    b = await new_sandbox(client)
    await a.fs.upload_file(b"secret", f"{HOME}/only-a.txt")
    await a.process.create_session("bg")
    await a.process.execute_session_command("bg", SessionExecuteRequest(command="sleep 31337", run_async=True))
    ps = "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"
    await until(lambda: host_processes_running("sleep 31337"))
    # One sandbox is one set of namespaces: a's other commands see its session's process...
    assert "sleep 31337" in (await a.process.exec(ps)).result
    # ...b sees neither it nor a's files (not even through a's host path).
    assert "sleep 31337" not in (await b.process.exec(ps)).result
    a_root = fake_daytona.sandboxes[a.id].host_root
    assert "only-a.txt" not in (await b.process.exec(f"ls -a {HOME}")).result
    res = await b.process.exec(f"cat {HOME}/only-a.txt || cat {a_root}/home/daytona/only-a.txt")
    assert res.exit_code != 0 and "secret" not in res.result
    with pytest.raises(DaytonaNotFoundError):
        await b.fs.download_file(f"{HOME}/only-a.txt")

    # Deleting a sandbox ends its processes and removes its root.
    await a.delete()
    await until(lambda: not host_processes_running("sleep 31337"))
    assert not a_root.exists() and fake_daytona.sandboxes[a.id].deleted


async def test_interactive_session_command(client, fake_daytona):
    """What a stream-json transport needs: input to a long-running command, its output as it comes."""
    sb = await new_sandbox(client)
    await sb.process.create_session("agent")
    started = await sb.process.execute_session_command(
        "agent", SessionExecuteRequest(command=INTERACTIVE, run_async=True, suppress_input_echo=True))
    cid = started.cmd_id
    out: list[str] = []
    err: list[str] = []
    follower = asyncio.create_task(sb.process.get_session_command_logs_async("agent", cid, out.append, err.append))

    await sb.process.send_session_command_input("agent", cid, "hello")
    await until(lambda: "".join(out) == "HELLO\n")
    await sb.process.send_session_command_input("agent", cid, "world\n")
    await until(lambda: "".join(out) == "HELLO\nWORLD\n" and "".join(err) == "err:hello\nerr:world\n")
    assert (await sb.process.get_session_command("agent", cid)).exit_code is None
    assert not follower.done()

    await sb.process.send_session_command_input("agent", cid, "bye")
    await asyncio.wait_for(follower, 10)  # the stream closes (1000) once the command ended
    assert (await sb.process.get_session_command("agent", cid)).exit_code == 3
    logs = await sb.process.get_session_command_logs("agent", cid)
    assert (logs.stdout, logs.stderr) == ("HELLO\nWORLD\n", "err:hello\nerr:world\n")
    with pytest.raises(DaytonaGoneError):
        await sb.process.send_session_command_input("agent", cid, "late")
    session = await sb.process.get_session("agent")
    assert [(c.id, c.exit_code) for c in session.commands] == [(cid, 3)]

    await sb.process.delete_session("agent")
    with pytest.raises(DaytonaNotFoundError):
        await sb.process.get_session_command("agent", cid)
    assert [s.session_id for s in await sb.process.list_sessions()] == []


async def test_session_semantics_follow_the_daemon(client, fake_daytona):
    sb = await new_sandbox(client)
    process = sb.process
    await process.create_session("s")
    with pytest.raises(DaytonaError):
        await process.create_session("s")
    # One shell per session: state persists from command to command.
    await process.execute_session_command("s", SessionExecuteRequest(command="cd /tmp && export FOO=bar"))
    res = await process.execute_session_command("s", SessionExecuteRequest(command="echo $FOO; pwd; echo oops >&2"))
    assert (res.exit_code, res.stdout, res.stderr) == (0, "bar\n/tmp\n", "oops\n")
    # `output` is the labelled log itself (the two streams interleave line by line, in any order).
    assert sorted(res.output.splitlines()) == sorted([f"{STDOUT_PREFIX.decode()}bar", f"{STDOUT_PREFIX.decode()}/tmp",
                                                      f"{STDERR_PREFIX.decode()}oops"])

    # Input is echoed into the log as stdout unless suppressed.
    cat = await process.execute_session_command("s", SessionExecuteRequest(command="cat", run_async=True))
    await process.send_session_command_input("s", cat.cmd_id, "ping")
    await until_logs(process, "s", cat.cmd_id, "ping\nping\n")

    # Deleting the session ends what it started.
    await process.create_session("t")
    await process.execute_session_command("t", SessionExecuteRequest(command="sleep 31338", run_async=True))
    await until(lambda: host_processes_running("sleep 31338"))
    await process.delete_session("t")
    await process.delete_session("s")
    await until(lambda: not host_processes_running("sleep 31338"))

    # `exit` in a command ends the session's shell; its code is still published.
    await process.create_session("u")
    res = await process.execute_session_command("u", SessionExecuteRequest(command="echo last; exit 5"))
    assert (res.exit_code, res.stdout) == (5, "last\n")
    with pytest.raises(DaytonaGoneError):
        await process.execute_session_command("u", SessionExecuteRequest(command="true"))


async def until_logs(process, sid: str, cid: str, stdout: str) -> None:
    for _ in range(200):
        if (await process.get_session_command_logs(sid, cid)).stdout == stdout:
            return
        await asyncio.sleep(0.02)
    assert (await process.get_session_command_logs(sid, cid)).stdout == stdout


async def test_exec_cwd_env_and_timeout(client, fake_daytona):
    sb = await new_sandbox(client, env_vars={"FROM_CREATE": "1"})
    res = await sb.process.exec("echo $FROM_CREATE $FROM_CALL; pwd", cwd="/tmp", env={"FROM_CALL": "2"})
    assert (res.exit_code, res.result) == (0, "1 2\n/tmp\n")
    res = await sb.process.exec("true", cwd=f"{HOME}/missing")
    assert res.exit_code == -1 and "no such file or directory" in res.result
    with pytest.raises(DaytonaTimeoutError):
        await sb.process.exec("sleep 30", timeout=1)


async def test_claude_cli_runs_inside(client, fake_daytona):
    if claude_cli() is None:
        pytest.skip("the claude-agent-sdk wheel's bundled CLI is not installed")
    sb = await new_sandbox(client)
    res = await sb.process.exec("command -v claude && claude --version", timeout=60)
    assert res.exit_code == 0, res.result
    assert res.result.startswith("/usr/local/bin/claude\n") and "Claude Code" in res.result


@pytest.fixture
def host_listener():
    srv = socket.create_server(("127.0.0.1", 0))
    yield srv.getsockname()[1]
    srv.close()


async def test_network_closed_unless_asked_for(client, fake_daytona, host_listener):
    connect = f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{host_listener} && echo connected'"
    closed = await new_sandbox(client)  # no network_block_all sent: closed
    assert fake_daytona.sandboxes[closed.id].network_block_all and closed.network_block_all
    res = await closed.process.exec(connect)
    assert res.exit_code != 0 and "connected" not in res.result

    opened = await new_sandbox(client, network_block_all=False, network_allow_list="127.0.0.1/32,10.0.0.0/8")
    fsb = fake_daytona.sandboxes[opened.id]
    assert not fsb.network_block_all and fsb.network_allow_list == ["127.0.0.1/32", "10.0.0.0/8"]
    assert opened.network_allow_list == "127.0.0.1/32,10.0.0.0/8"
    res = await opened.process.exec(connect)
    assert (res.exit_code, res.result) == (0, "connected\n")


async def test_list_by_labels(client, fake_daytona):
    ours = await new_sandbox(client, labels={"app": "omoi", "omoi-label": "t-1"})
    await new_sandbox(client, labels={"app": "other"})
    found = [s.id async for s in client.list(ListSandboxesQuery(labels={"app": "omoi"}))]
    assert found == [ours.id]
    assert fake_daytona.sandboxes[ours.id].labels["omoi-label"] == "t-1"
    assert len([s async for s in client.list(ListSandboxesQuery(limit=1))]) == 2  # pages through
    await ours.delete()
    assert [s.id async for s in client.list(ListSandboxesQuery(labels={"app": "omoi"}))] == []


async def test_create_faults(client, fake_daytona):
    fake_daytona.fail_next_creates(1, status=429)
    fake_daytona.fail_next_creates(1, status=503)
    with pytest.raises(DaytonaRateLimitError):
        await new_sandbox(client)
    with pytest.raises(DaytonaServiceUnavailableError):
        await new_sandbox(client)
    sb = await new_sandbox(client)
    creates = [r for r in fake_daytona.requests if (r.method, r.path) == ("POST", "/api/sandbox")]
    assert [r.status for r in creates] == [429, 503, 200]
    assert list(fake_daytona.sandboxes) == [sb.id]


@pytest.fixture
def local_repo(tmp_path):
    repo = tmp_path / "repo"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, env=env)
    (repo / "README.md").write_text("hi\n")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "init"], check=True, env=env)
    return repo


async def test_git_clone_needs_the_network(client, fake_daytona, local_repo):
    url = "https://github.example/o/r.git"
    fake_daytona.repo_map[url] = str(local_repo)
    closed = await new_sandbox(client)
    with pytest.raises(DaytonaError, match="network"):
        await closed.git.clone(url, f"{HOME}/r")

    opened = await new_sandbox(client, network_block_all=False)
    await opened.git.clone(url, "r", branch="main", username="x-access-token", password="s3cret")
    res = await opened.process.exec("git log --format=%s && cat .git/config", cwd=f"{HOME}/r")
    assert res.exit_code == 0 and res.result.startswith("init\n") and "s3cret" not in res.result
    assert not os.path.exists(f"{HOME}/r")
    assert fake_daytona.sandboxes[opened.id].clones[-1]["password"] == "s3cret"
    # Any other URL is cloned by git inside the sandbox: a host path means nothing there.
    with pytest.raises(DaytonaError):
        await opened.git.clone(str(local_repo), f"{HOME}/r2")
