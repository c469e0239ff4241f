"""app/sandbox: LocalSandbox on real temp git repos (under bubblewrap where it works) and
DaytonaSandboxProvider through the real daytona SDK against tests/fakes/daytona.py."""
from __future__ import annotations

import base64
import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.sandbox import ExecResult, SandboxError, make_sandbox
from app.sandbox.base import safe_relpath, split_repo_url
from app.sandbox.daytona import DaytonaSandboxProvider
from app.sandbox.local import LocalSandboxProvider, bwrap_available

HAVE_BWRAP = bwrap_available()
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap missing or not working here (CI installs it)")
TOKEN = "ghs_FAKEinstallationTOKEN0123456789abcdef"
GIT_ID = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ID, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def source_repo(tmp_path) -> SimpleNamespace:
    """main: 2 commits; branch `feature`: +1 commit; tag v1 on the first commit."""
    repo = tmp_path / "source"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("hello\n")
    (repo / "old.txt").write_text("to be deleted\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "tag", "v1")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("print('v2')\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two")
    main = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "feature.txt").write_text("feature\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feature")
    feature = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return SimpleNamespace(path=repo, first=first, main=main, feature=feature)


@pytest.fixture
async def local_provider(tmp_path):
    return LocalSandboxProvider(base_dir=tmp_path / "sandboxes")


def sandboxes_left(base: Path) -> list[Path]:
    return list(base.iterdir()) if base.exists() else []


# --------------------------------------------------------------------------------------------
# helpers


def test_split_repo_url():
    s = split_repo_url(f"https://x-access-token:{TOKEN}@github.com/o/r.git")
    assert (s.url, s.username, s.password) == ("https://github.com/o/r.git", "x-access-token", TOKEN)
    assert s.auth_header() == "Authorization: Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    bare = split_repo_url(f"https://{TOKEN}@ghe.example:8443/o/r")
    assert (bare.url, bare.username, bare.password) == ("https://ghe.example:8443/o/r", "x-access-token", TOKEN)
    assert split_repo_url("/tmp/repo").is_local and split_repo_url("file:///tmp/repo").is_local
    assert split_repo_url("https://github.com/o/r").password is None


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../x", "a/../../x", ".", "a\x00b"])
def test_safe_relpath_rejects(bad):
    with pytest.raises(SandboxError):
        safe_relpath(bad)


def test_make_sandbox_factory():
    from app.sandbox.local import LocalSandboxProvider as L

    assert isinstance(make_sandbox(SimpleNamespace()), L)
    assert isinstance(make_sandbox(SimpleNamespace(sandbox_provider="local")), L)
    d = make_sandbox(SimpleNamespace(sandbox_provider="daytona", daytona_api_key="k", daytona_api_url="http://x/api",
                                     sandbox_network=False, sandbox_timeout_seconds=600))
    assert isinstance(d, DaytonaSandboxProvider) and (d.api_key, d.api_url, d.network) == ("k", "http://x/api", False)
    with pytest.raises(SandboxError):
        make_sandbox(SimpleNamespace(sandbox_provider="docker"))


# --------------------------------------------------------------------------------------------
# LocalSandbox


async def test_local_lifecycle(local_provider, source_repo, tmp_path):
    sb = await local_provider.create(repo_url=str(source_repo.path), ref="main", label="spec 7 / task 1")
    assert sb.use_bwrap == HAVE_BWRAP
    work = Path(sb.workdir)
    assert sb.base_sha == source_repo.main
    assert (work / "src" / "app.py").read_text() == "print('v2')\n"
    assert not (work / "feature.txt").exists()

    res = await sb.exec("echo out; echo err >&2; exit 3", timeout=10)
    assert isinstance(res, ExecResult)
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, "out\n", "err\n", False)
    res = await sb.exec(["cat", "README.md"], timeout=10)
    assert res.ok and res.stdout == "hello\n"
    res = await sb.exec("pwd", timeout=10, cwd="src")
    assert res.stdout.strip() == (f"{sb.agent_cwd}/src" if sb.use_bwrap else str(work / "src"))
    with pytest.raises(SandboxError):
        await sb.exec("true", timeout=5, cwd="../..")

    await sb.upload({"tests/test_new.py": b"def test_x():\n    assert True\n", "data/blob.bin": bytes(range(256))})
    assert await sb.download("tests/test_new.py") == b"def test_x():\n    assert True\n"
    assert await sb.download("data/blob.bin") == bytes(range(256))
    with pytest.raises(SandboxError):
        await sb.download("nope.txt")

    # Change tracked files from inside, delete one, add untracked ones.
    res = await sb.exec("echo more >> README.md && rm old.txt && mkdir -p new && echo n > new/file.txt", timeout=10)
    assert res.ok, res
    patch = await sb.diff()
    assert "diff --git a/README.md b/README.md" in patch and "+more" in patch
    assert "deleted file mode" in patch and "old.txt" in patch
    assert "b/new/file.txt" in patch and "b/tests/test_new.py" in patch
    assert "GIT binary patch" in patch  # data/blob.bin

    # The patch applies to a fresh checkout of the base commit and reproduces the work tree.
    check = tmp_path / "check"
    git(tmp_path, "clone", "-q", str(source_repo.path), str(check))
    (tmp_path / "p.diff").write_text(patch)
    git(check, "apply", "--binary", str(tmp_path / "p.diff"))
    assert (check / "README.md").read_text() == "hello\nmore\n"
    assert (check / "data" / "blob.bin").read_bytes() == bytes(range(256))
    assert not (check / "old.txt").exists()

    # A commit made inside the sandbox is still measured against the base commit.
    await sb.exec("git add -A && git commit -qm wip", timeout=10)
    assert "b/new/file.txt" in await sb.diff()

    await sb.destroy()
    assert not Path(sb.workdir).exists()
    await sb.destroy()  # idempotent
    with pytest.raises(SandboxError):
        await sb.exec("true", timeout=5)


@pytest.mark.parametrize("ref_name", ["feature", "v1", "first_sha", "short_sha"])
async def test_local_refs(local_provider, source_repo, ref_name):
    ref, expected = {
        "feature": ("feature", source_repo.feature),
        "v1": ("v1", source_repo.first),
        "first_sha": (source_repo.first, source_repo.first),
        "short_sha": (source_repo.feature[:10], source_repo.feature),
    }[ref_name]
    sb = await local_provider.create(repo_url=f"file://{source_repo.path}", ref=ref, label="refs")
    try:
        assert sb.base_sha == expected
        assert (await sb.exec("git rev-parse HEAD", timeout=10)).stdout.strip() == expected
        assert await sb.diff() == ""
    finally:
        await sb.destroy()


async def test_local_unknown_ref_cleans_up(local_provider, source_repo):
    with pytest.raises(SandboxError, match="fetch"):
        await local_provider.create(repo_url=str(source_repo.path), ref="no-such-branch", label="x")
    assert sandboxes_left(local_provider.base_dir) == []


@pytest.mark.parametrize("use_bwrap", [True, False], ids=["bwrap", "plain"])
async def test_no_secret_env_inside(tmp_path, source_repo, monkeypatch, use_bwrap):
    if use_bwrap and not HAVE_BWRAP:
        pytest.skip("bubblewrap missing or not working here (CI installs it)")
    for name, value in {"OMOI_WEBHOOK_SECRET": "whsec", "OMOI_GITHUB_PRIVATE_KEY": "pem", "GITHUB_TOKEN": TOKEN,
                        "GH_TOKEN": TOKEN, "ANTHROPIC_API_KEY": "sk-ant-secret", "AWS_SECRET_ACCESS_KEY": "aws"}.items():
        monkeypatch.setenv(name, value)
    provider = LocalSandboxProvider(base_dir=tmp_path / "sb", use_bwrap=use_bwrap)
    sb = await provider.create(repo_url=str(source_repo.path), ref="main", label="env")
    try:
        res = await sb.exec("env", timeout=10, env={"CI": "true", "FOO": "bar baz"})
        env = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        assert env["FOO"] == "bar baz" and env["CI"] == "true"
        assert env["HOME"] == sb.home and env["LANG"]
        leaked = [k for k in env if k.startswith("OMOI_") or "TOKEN" in k or "SECRET" in k or "KEY" in k]
        assert leaked == []
        assert TOKEN not in res.stdout and "sk-ant-secret" not in res.stdout
    finally:
        await sb.destroy()


@pytest.mark.parametrize("use_bwrap", [True, False], ids=["bwrap", "plain"])
async def test_timeout_kills_process_group(tmp_path, source_repo, use_bwrap):
    if use_bwrap and not HAVE_BWRAP:
        pytest.skip("bubblewrap missing or not working here (CI installs it)")
    provider = LocalSandboxProvider(base_dir=tmp_path / "sb", use_bwrap=use_bwrap)
    sb = await provider.create(repo_url=str(source_repo.path), ref="main", label="timeout")
    try:
        started = time.monotonic()
        res = await sb.exec("echo started; (sleep 2; touch late.txt) & sleep 60", timeout=1)
        assert res.timed_out and not res.ok
        assert time.monotonic() - started < 10
        assert res.stdout == "started\n"  # output before the kill is kept
        assert "timed out" in res.stderr
        time.sleep(2.5)
        assert not (Path(sb.workdir) / "late.txt").exists(), "a background child survived the timeout"
        # Background children of a command that exits normally do not survive it either.
        res = await sb.exec("(sleep 1; touch later.txt) >/dev/null 2>&1 & echo done", timeout=10)
        assert res.ok and res.stdout == "done\n"
        time.sleep(1.5)
        assert not (Path(sb.workdir) / "later.txt").exists()
    finally:
        await sb.destroy()


async def test_output_is_capped(tmp_path, source_repo):
    provider = LocalSandboxProvider(base_dir=tmp_path / "sb", max_output_bytes=1000)
    sb = await provider.create(repo_url=str(source_repo.path), ref="main", label="cap")
    try:
        res = await sb.exec("head -c 100000 /dev/zero | tr '\\0' a", timeout=10)
        assert res.ok and res.stdout.startswith("a" * 1000) and "truncated at 1000 bytes" in res.stdout
        assert len(res.stdout) < 1100
    finally:
        await sb.destroy()


async def test_paths_cannot_escape_workdir(local_provider, source_repo, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret")
    sb = await local_provider.create(repo_url=str(source_repo.path), ref="main", label="escape")
    try:
        await sb.exec(["ln", "-s", str(outside), "link"], timeout=5)
        await sb.exec(["ln", "-s", str(outside / "secret.txt"), "secret-link"], timeout=5)
        with pytest.raises(SandboxError):
            await sb.upload({"link/planted.txt": b"x"})
        assert not (outside / "planted.txt").exists()
        with pytest.raises(SandboxError):
            await sb.download("secret-link")
        with pytest.raises(SandboxError):
            await sb.download("link/secret.txt")
        with pytest.raises(SandboxError):
            await sb.upload({"../escape.txt": b"x"})
        # An upload over a symlink replaces the link instead of writing through it.
        await sb.exec(["ln", "-s", str(outside / "secret.txt"), "over.txt"], timeout=5)
        await sb.upload({"over.txt": b"mine"})
        assert (outside / "secret.txt").read_text() == "host secret"
        assert await sb.download("over.txt") == b"mine"
    finally:
        await sb.destroy()


class _Listener:
    """A TCP server on 127.0.0.1 that counts connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


# Inside the jail only /usr is there: the system's interpreter, not the venv's.
JAIL_PYTHON = "/usr/bin/python3"

CONNECT = "import socket,sys; s=socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3); print('connected')"


@needs_bwrap
async def test_no_network_inside_bwrap(tmp_path, source_repo):
    listener = _Listener()
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


@needs_bwrap
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


# --------------------------------------------------------------------------------------------
# token handling: a dumb-HTTP git server that insists on Basic auth


class _AuthGitServer:
    def __init__(self, root: Path, token: str) -> None:
        expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.seen: list[str] = []
        seen = self.seen

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):  # noqa: N802
                auth = self.headers.get("Authorization", "")
                seen.append(auth)
                if auth != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def auth_git_server(source_repo, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    bare = served / "repo.git"
    git(tmp_path, "clone", "-q", "--bare", str(source_repo.path), str(bare))
    git(bare, "update-server-info")
    server = _AuthGitServer(served, TOKEN)
    yield server
    server.close()


def _files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            try:
                if needle.encode() in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


async def test_token_used_for_clone_but_never_stored(local_provider, auth_git_server, source_repo):
    url = f"http://x-access-token:{TOKEN}@127.0.0.1:{auth_git_server.port}/repo.git"
    sb = await local_provider.create(repo_url=url, ref="feature", label="token")
    try:
        assert sb.base_sha == source_repo.feature
        assert any(h.startswith("Basic ") for h in auth_git_server.seen)  # the token did authenticate
        config = (Path(sb.workdir) / ".git" / "config").read_text()
        assert TOKEN not in config and "extraheader" not in config.lower()
        assert f"url = http://127.0.0.1:{auth_git_server.port}/repo.git" in config
        b64 = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        assert _files_containing(Path(sb.root), TOKEN) == []
        assert _files_containing(Path(sb.root), b64) == []
        res = await sb.exec("git config --list --show-origin; git remote -v", timeout=10)
        assert TOKEN not in res.stdout
    finally:
        await sb.destroy()


async def test_clone_error_does_not_leak_token(local_provider, auth_git_server):
    url = f"http://x-access-token:{TOKEN}@127.0.0.1:{auth_git_server.port}/missing.git"
    with pytest.raises(SandboxError) as info:
        await local_provider.create(repo_url=url, ref="main", label="x")
    assert TOKEN not in str(info.value)
    assert sandboxes_left(local_provider.base_dir) == []


# --------------------------------------------------------------------------------------------
# Daytona through the real SDK against the stand-in


def daytona_provider(fake, **kw) -> DaytonaSandboxProvider:
    settings = SimpleNamespace(sandbox_provider="daytona", daytona_api_url=fake.api_url, daytona_api_key="dtn-key",
                               sandbox_network=kw.pop("network", False), sandbox_timeout_seconds=1800)
    provider = make_sandbox(settings)
    assert isinstance(provider, DaytonaSandboxProvider)
    return provider


async def test_daytona_lifecycle_network_blocked(fake_daytona, source_repo, tmp_path):
    provider = daytona_provider(fake_daytona)
    sb = await provider.create(repo_url=str(source_repo.path), ref="main", label="spec-3 task/1")
    fsb = fake_daytona.sandboxes[sb.id]
    params = fsb.create_params
    assert params["networkBlockAll"] is True and fsb.network_block_all
    assert params["autoDeleteInterval"] == 0 and params["autoStopInterval"] == 30
    assert params["labels"]["app"] == "omoi" and params["labels"]["omoi-label"] == "spec-3-task-1"
    assert params["env"] == {}
    assert all(r.headers.get("authorization") == "Bearer dtn-key" for r in fake_daytona.requests
               if r.path.startswith(("/api/sandbox", "/toolbox/")))
    # No network inside: the code was cloned on the host and uploaded, not cloned by the daemon.
    assert fsb.clones == []
    assert sb.base_sha == source_repo.main
    assert sb.workdir == str(fsb.workdir / "repo")

    res = await sb.exec("cat README.md; echo err >&2; exit 4", timeout=10, env={"FOO": "bar"})
    assert res.exit_code == 4 and res.stdout == "hello\nerr\n" and not res.timed_out
    assert fsb.execs[-1]["envs"]["FOO"] == "bar"
    res = await sb.exec(["sh", "-c", "echo $FOO; pwd"], timeout=10, env={"FOO": "it's"}, cwd="src")
    assert res.stdout == f"it's\n{sb.workdir}/src\n"

    await sb.upload({"tests/test_new.py": b"def test_x():\n    pass\n", "bin/blob": bytes(range(256))})
    assert await sb.download("tests/test_new.py") == b"def test_x():\n    pass\n"
    assert await sb.download("bin/blob") == bytes(range(256))
    with pytest.raises(SandboxError):
        await sb.download("missing.txt")
    await sb.exec("echo more >> README.md && rm old.txt", timeout=10)
    patch = await sb.diff()
    assert "+more" in patch and "b/tests/test_new.py" in patch and "deleted file mode" in patch
    assert "GIT binary patch" in patch
    config = (await sb.download(".git/config")).decode()
    assert "[remote \"origin\"]" in config

    started = time.monotonic()
    res = await sb.exec("sleep 30", timeout=1)
    assert res.timed_out and time.monotonic() - started < 15

    await sb.destroy()
    await sb.destroy()
    assert fsb.deleted and fsb.state == "destroyed"
    assert [r.method for r in fake_daytona.requests if r.path == f"/api/sandbox/{sb.id}"] == ["DELETE"]
    assert fake_daytona.unhandled == []


async def test_daytona_gets_the_code_but_never_the_token(fake_daytona, auth_git_server, source_repo):
    """Even with the sandbox's network on, omoi clones on the host (the token only in git's environment)
    and uploads the tree: no request to Daytona carries the token, and the daemon clones nothing."""
    provider = daytona_provider(fake_daytona, network=True)
    url = f"http://x-access-token:{TOKEN}@127.0.0.1:{auth_git_server.port}/repo.git"
    sb = await provider.create(repo_url=url, ref="feature", label="net")
    fsb = fake_daytona.sandboxes[sb.id]
    try:
        assert fsb.clones == [] and sb.base_sha == source_repo.feature
        assert (await sb.download("feature.txt")) == b"feature\n"
        config = (await sb.download(".git/config")).decode()
        assert TOKEN not in config and "extraheader" not in config.lower()
        b64 = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
        for rec in fake_daytona.requests:
            seen = repr((rec.headers, rec.json, rec.query))
            assert TOKEN not in seen and b64 not in seen, rec.path
    finally:
        await sb.destroy()
    assert fsb.deleted


async def test_daytona_failed_clone_deletes_sandbox(fake_daytona, source_repo):
    provider = daytona_provider(fake_daytona)
    with pytest.raises(SandboxError):
        await provider.create(repo_url=str(source_repo.path), ref="no-such-ref", label="x")
    # the clone failed on the host: no sandbox was needed... or it was deleted
    assert all(s.deleted for s in fake_daytona.sandboxes.values())


async def test_daytona_not_configured():
    provider = DaytonaSandboxProvider(SimpleNamespace(daytona_api_key=None))
    with pytest.raises(SandboxError, match="not configured"):
        await provider.create(repo_url="/tmp/x", ref="main", label="x")


@needs_bwrap
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
