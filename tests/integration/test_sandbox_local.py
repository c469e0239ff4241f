"""app/sandbox's LocalSandbox on real temp git repositories (under bubblewrap where it works, and
without it): the lifecycle, refs, the environment inside, time-outs, output caps, paths that try to
leave the work dir, and the clone token (used, never stored); the provider factory and URL helpers.
The jail itself: test_sandbox_jail.py; Daytona: test_sandbox_daytona.py.
"""
from __future__ import annotations

import base64
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.sandbox import ExecResult, SandboxError, make_sandbox
from app.sandbox.base import safe_relpath, split_repo_url
from app.sandbox.daytona import DaytonaSandboxProvider
from app.sandbox.local import LocalSandboxProvider, bwrap_available
from tests.support.gitrepos import TOKEN, files_containing, git, sandboxes_left

HAVE_BWRAP = bwrap_available()


@pytest.fixture
async def local_provider(tmp_path):
    return LocalSandboxProvider(base_dir=tmp_path / "sandboxes")


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


# --------------------------------------------------------------------------------------------
# token handling: a dumb-HTTP git server that insists on Basic auth (tests/support/gitrepos.py)


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
        assert files_containing(Path(sb.root), TOKEN) == []
        assert files_containing(Path(sb.root), b64) == []
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
