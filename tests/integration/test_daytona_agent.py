"""The agent on Daytona: the real Claude Code CLI runs INSIDE the Daytona stand-in's sandbox (its own
root: the sandbox's paths do not exist on this host), driven through the session-command transport,
reaching the model only through the web process's model proxy with a database-backed session."""
from __future__ import annotations

import os

import pytest
from aiohttp import web

from app.execution import discovery

from app.agent import model_proxy
from app.agent.session import run_agent
from app.config import Settings
from app.db.migrate import upgrade
from app.db.models import ModelSession
from app.db.session import session_scope
from app.sandbox.daytona import DaytonaSandboxProvider
from tests.fakes.anthropic import Reply, tool_results

REAL_KEY = "sk-ant-daytona-test-real-key-0123456789"


@pytest.fixture
async def world(fake_daytona, fake_anthropic, tmp_path, aiohttp_server):
    """omoi's web process's model proxy (a real aiohttp server on the public URL) and settings that
    select Daytona."""
    fake_anthropic.api_key = REAL_KEY
    db = f"sqlite:///{tmp_path}/omoi.db"
    upgrade(db)
    base = Settings(anthropic_api_key=REAL_KEY, anthropic_base_url=fake_anthropic.url, database_url=db,
                    llm_max_retries=0, model_planner="claude-sonnet-4-5")
    app = web.Application()
    model_proxy.add_routes(app, base)
    server = await aiohttp_server(app)
    settings = base.model_copy(update={
        "public_url": str(server.make_url("")).rstrip("/"), "sandbox_provider": "daytona",
        "daytona_api_url": fake_daytona.api_url, "daytona_api_key": "dtn-key"})
    return settings


async def test_agent_runs_inside_the_daytona_sandbox_through_the_proxy(world, fake_daytona, fake_anthropic, repo):
    settings = world
    provider = DaytonaSandboxProvider(settings)
    sb = await provider.create(repo_url=str(repo), ref="main", label="spec-1/T1")
    fsb = fake_daytona.sandboxes[sb.id]
    reported: list = []
    try:
        assert not os.path.exists(sb.workdir), "the sandbox's work dir must not exist on the host"
        # Closed but for omoi's public URL (the model proxy).
        assert fsb.create_params.get("networkAllowList") == "127.0.0.1/32"

        def script(req):
            done = len(tool_results(req))
            if done == 0:
                return Reply.tool("Write", {"file_path": f"{sb.agent_cwd}/test_greet.py",
                                            "content": "from hello import greet\nassert greet() == 'hi'\nprint('ok')\n"})
            if done == 1:
                return Reply.tool("Bash", {"command": "python3 test_greet.py && env && pwd", "description": "run"})
            if done == 2:
                return Reply.tool("mcp__omoi__report_discovery", {
                    "kind": "bug", "title": "greet ignores names", "description": "found while testing"})
            return Reply.text("Added and ran test_greet.py.")

        fake_anthropic.script = script
        result = await run_agent(mode="implement", prompt="Add a test for greet().", sandbox=sb, settings=settings,
                                 max_turns=8, max_budget_usd=5.0, timeout_s=120,
                                 extra_tools=[discovery.report_tool(reported)])
        assert result.ok, (result.error, result.transcript)
        out = [t for t in result.transcript if t["type"] == "tool_result"]
        assert "ok" in out[1]["content"] and sb.workdir in out[1]["content"]
        assert REAL_KEY not in out[1]["content"] and "ANTHROPIC_API_KEY=omoi-session-" in out[1]["content"]
        assert [f.title for f in reported] == ["greet ignores names"]  # in-process MCP tool through the transport
        # The file is in the sandbox, not on the host.
        assert (await sb.download("test_greet.py")).startswith(b"from hello import greet")
        assert not os.path.exists(os.path.join(sb.workdir, "test_greet.py"))
        assert "b/test_greet.py" in await sb.diff()
    finally:
        await sb.destroy()
    # The model saw only the real key, added by the proxy; the session's usage is in the database, closed.
    assert fake_anthropic.message_requests() and all(r.headers["x-api-key"] == REAL_KEY for r in fake_anthropic.requests)
    with session_scope(settings.database_url) as s:
        [row] = s.query(ModelSession).all()
        assert row.closed_at is not None and row.calls >= 4 and row.cost_usd > 0
    # Nothing omoi sent to Daytona carried a credential.
    for rec in fake_daytona.requests:
        seen = repr((rec.headers, rec.json, rec.query))
        assert REAL_KEY not in seen and "ghs_" not in seen


async def test_daytona_sandbox_creation_is_retried_on_429_and_503(world, fake_daytona, repo):
    settings = world.model_copy(update={"daytona_create_backoff_seconds": 0.05})
    fake_daytona.fail_next_creates(2, status=429)
    fake_daytona.fail_next_creates(1, status=503)
    sb = await DaytonaSandboxProvider(settings).create(repo_url=str(repo), ref="main", label="retry")
    try:
        creates = [r for r in fake_daytona.requests if r.method == "POST" and r.path == "/api/sandbox"]
        assert [r.status for r in creates] == [429, 429, 503, 200] or len(creates) == 4
    finally:
        await sb.destroy()


async def test_reaper_deletes_only_omoi_sandboxes_no_task_owns(world, fake_daytona, repo):
    provider = DaytonaSandboxProvider(world)
    live = await provider.create(repo_url=str(repo), ref="main", label="spec-1/T1")
    orphan = await provider.create(repo_url=str(repo), ref="main", label="spec-1/T2")
    try:
        deleted = await provider.reap({"spec-1-T1"}, min_age_s=0)
        assert deleted == [orphan.id]
        assert fake_daytona.sandboxes[orphan.id].deleted and not fake_daytona.sandboxes[live.id].deleted
    finally:
        await live.destroy()
        await orphan.destroy()


async def test_hostile_probes_in_a_daytona_sandbox_find_nothing_of_omoi(world, fake_daytona, fake_anthropic, repo,
                                                                         tmp_path):
    """A scripted hostile model in the Daytona sandbox looks for omoi's secrets where they are on the worker
    host (its .env, key file, database, data dir, environment): none of it exists in the sandbox, and the
    only model credential there is the session token, which dies with the session."""
    settings = world
    decoy = f"decoy-{os.getpid()}-{id(tmp_path)}"
    host = tmp_path / "omoi-host"
    host.mkdir()
    for name in (".env", "key.pem", "omoi.db"):
        (host / name).write_text(f"OMOI_WEBHOOK_SECRET={decoy}\n")
    probes = [f"cat {host}/.env {host}/key.pem {host}/omoi.db", f"ls -la {host} {tmp_path}",
              "env", "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -v '^$' | sort -u",
              # (the [T] keeps the pattern from matching the command itself, kept in the CLI's transcript)
              f"grep -rs 'OMOI_WEBHOOK_SECRE[T]={decoy}' /home /tmp /etc /opt /run /var /root 2>/dev/null | head -3",
              "ls /home/daytona /tmp"]
    sb = await DaytonaSandboxProvider(settings).create(repo_url=str(repo), ref="main", label="hostile")
    try:
        def script(req):
            done = len(tool_results(req))
            if done < len(probes):
                return Reply.tool("Bash", {"command": probes[done] + " || true", "description": "probe"})
            return Reply.text("done")

        fake_anthropic.script = script
        result = await run_agent(mode="implement", prompt="Probe.", sandbox=sb, settings=settings, max_turns=12,
                                 max_budget_usd=5.0, timeout_s=120)
        assert result.ok, result.error
        outputs = [t["content"] for t in result.transcript if t["type"] == "tool_result"]
        assert len(outputs) == len(probes)
        seen = "\n".join(outputs)
        assert decoy not in seen and REAL_KEY not in seen and "dtn-key" not in seen
        assert "No such file" in outputs[0] and "No such file" in outputs[1]
        token = next(line.split("=", 1)[1] for line in outputs[2].splitlines() if line.startswith("ANTHROPIC_API_KEY="))
    finally:
        await sb.destroy()
    # The token is refused once the session ended.
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.post(settings.resolved_public_url() + "/model-proxy/v1/messages", headers={"x-api-key": token},
                             json={"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 401
