"""app/sandbox's DaytonaSandboxProvider through the real daytona SDK against tests/fakes/daytona: the
lifecycle with the sandbox's network blocked, the code cloned on the host and uploaded (the token
never sent to Daytona), and clean-up when a clone fails."""
from __future__ import annotations

import base64
import time
from types import SimpleNamespace

import pytest

from app.sandbox import SandboxError, make_sandbox
from app.sandbox.daytona import DaytonaSandboxProvider
from tests.support.gitrepos import TOKEN


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
