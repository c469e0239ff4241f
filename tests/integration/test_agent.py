"""app/agent.run_agent: the real Claude Code CLI (bundled in claude-agent-sdk), jailed in a LocalSandbox,
against tests/fakes/anthropic.py through omoi's model proxy."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.agent.session import MODE_TOOLS, run_agent
from app.config import Settings
from app.sandbox.local import LocalSandboxProvider, bwrap_available
from app.text.rendering import reason
from tests.fakes.anthropic import Reply, tool_results

API_KEY = "sk-fake-test-key"


@pytest.fixture
async def sandbox(repo, tmp_path):
    if not bwrap_available():
        pytest.skip("the local sandbox cannot be built here (CI installs bubblewrap)")
    sb = await LocalSandboxProvider(base_dir=tmp_path / "sb").create(repo_url=str(repo), ref="main", label="agent")
    yield sb
    await sb.destroy()


@pytest.fixture
def settings(fake_anthropic) -> Settings:
    return Settings(anthropic_api_key=API_KEY, anthropic_base_url=fake_anthropic.url, llm_max_retries=0,
                    model_planner="claude-sonnet-4-5")


def offered(fake) -> set[str]:
    return {t["name"] for t in fake.message_requests()[0]["tools"]}


def processes_in(sandbox) -> list[int]:
    """Host processes of the sandbox's jail: its own host uid (omoi runs the tests as root), else the
    processes whose working directory is the work dir."""
    pids = []
    uid = sandbox.jail.uid if sandbox.jail is not None else None
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie has ended; only its parent's wait() is missing
            if uid is not None and os.stat(f"/proc/{pid}").st_uid == uid:
                pids.append(int(pid))
            elif os.readlink(f"/proc/{pid}/cwd") == sandbox.workdir:
                pids.append(int(pid))
        except OSError:
            pass
    return pids


async def test_implement_writes_and_runs(fake_anthropic, settings, sandbox, monkeypatch):
    # Secrets in the worker's environment must not reach the CLI or the commands it runs.
    monkeypatch.setenv("OMOI_WEBHOOK_SECRET", "whsec-should-not-leak")
    monkeypatch.setenv("OMOI_GITHUB_PRIVATE_KEY", "pem-should-not-leak")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_should_not_leak_0123456789")
    workdir = Path(sandbox.workdir)
    fake_anthropic.on_tool("Write", {"file_path": "/workspace/test_greet.py",
                                     "content": "from hello import greet\nassert greet() == 'hi'\nprint('greet ok')\n"})
    fake_anthropic.on_tool("Bash", {"command": "python3 test_greet.py && (env | grep -E '^(OMOI_|GITHUB|GH_)' || echo ENV-CLEAN) && env",
                                    "description": "run the test"})
    fake_anthropic.default_reply = Reply.text("Added test_greet.py; it passes.")

    result = await run_agent(mode="implement", prompt="Add a test for greet().", sandbox=sandbox,
                             settings=settings, max_turns=8, max_budget_usd=5.0, timeout_s=90)

    assert result.ok, (result.error, result.transcript)
    assert result.error is None and result.subtype == "success"
    assert result.text == "Added test_greet.py; it passes."
    assert (workdir / "test_greet.py").read_text().startswith("from hello import greet")
    assert result.num_turns >= 3 and result.cost_usd > 0 and result.duration_s > 0
    uses = [t for t in result.transcript if t["type"] == "tool_use"]
    assert [u["name"] for u in uses] == ["Write", "Bash"]
    results = [t for t in result.transcript if t["type"] == "tool_result"]
    assert len(results) == 2 and not any(r["is_error"] for r in results), [r["content"] for r in results]
    assert "greet ok" in results[1]["content"]
    # Nothing of omoi's environment; the only model credential in there is the proxy's session token.
    assert "ENV-CLEAN" in results[1]["content"] and API_KEY not in results[1]["content"]
    assert "ANTHROPIC_API_KEY=omoi-session-" in results[1]["content"]

    patch = await sandbox.diff()
    assert "b/test_greet.py" in patch and "+print('greet ok')" in patch
    left = {p.name for p in workdir.iterdir()}
    assert left == {".git", "hello.py", "test_greet.py"}, left

    assert offered(fake_anthropic) >= set(MODE_TOOLS["implement"])
    assert not offered(fake_anthropic) & {"WebFetch", "WebSearch"}
    assert fake_anthropic.message_requests()[0]["model"] == "claude-sonnet-4-5"
    # The CLI held only a session token; omoi's model proxy put the real key on every call.
    assert all(r.headers.get("x-api-key") == API_KEY for r in fake_anthropic.requests)
    assert fake_anthropic.unhandled == []
    assert processes_in(sandbox) == []


async def test_timeout_returns_clear_error(fake_anthropic, settings, sandbox):
    fake_anthropic.latency_s = 30
    started = time.monotonic()
    result = await run_agent(mode="explore", prompt="Look around.", sandbox=sandbox, settings=settings,
                             max_turns=3, max_budget_usd=None, timeout_s=3)
    assert not result.ok
    assert result.error == reason("agent/timed_out", seconds=3) and str(result.error) == "agent timed out after 3s"
    assert time.monotonic() - started < 20
    time.sleep(0.5)
    assert processes_in(sandbox) == [], "the CLI outlived the timeout"


async def test_stopped_session_still_reports_what_it_spent(fake_anthropic, settings, sandbox):
    """No result message (timed out mid-command): the cost comes from the messages' usage."""
    fake_anthropic.on_tool("Bash", {"command": "timeout 30 tail -f /dev/null", "description": "wait"})
    seen: list[float] = []
    result = await run_agent(mode="implement", prompt="Wait.", sandbox=sandbox, settings=settings,
                             max_turns=3, max_budget_usd=None, timeout_s=6, on_cost=seen.append)
    assert not result.ok and str(result.error) == "agent timed out after 6s"
    assert result.cost_usd > 0 and seen and seen[-1] == result.cost_usd
    assert len(seen) == 1  # one API response, counted once


async def test_cancelled_session_is_ended_at_once(fake_anthropic, settings, sandbox):
    """A supervisor stop cancels the session: its CLI and command end now, not after the SDK's
    close-grace of up to 10 s during which the session could still act."""
    import asyncio

    fake_anthropic.on_tool("Bash", {"command": "timeout 60 tail -f /dev/null", "description": "wait"})
    running = asyncio.ensure_future(run_agent(mode="implement", prompt="Wait.", sandbox=sandbox,
                                              settings=settings, max_turns=3, max_budget_usd=None, timeout_s=90))
    for _ in range(300):
        if fake_anthropic.message_requests() and processes_in(sandbox):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1)  # the command is running
    started = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert time.monotonic() - started < 4
    left = processes_in(sandbox)
    assert left == [], [(Path(f"/proc/{p}/stat").read_text(), Path(f"/proc/{p}/cmdline").read_bytes()[:200]) for p in left]


async def test_validate_cannot_write(fake_anthropic, settings, sandbox):
    target = Path(sandbox.workdir) / "planted.py"

    def script(req):
        if not tool_results(req):  # first turn: try to write although Write is not offered
            return Reply.tool("Write", {"file_path": str(target), "content": "x = 1\n"})
        return Reply.text("Could not write.")

    fake_anthropic.script = script
    result = await run_agent(mode="validate", prompt="Check the repo.", sandbox=sandbox, settings=settings,
                             max_turns=4, max_budget_usd=None, timeout_s=60)
    assert not target.exists()
    assert offered(fake_anthropic) & {"Write", "Edit"} == set()
    assert {"Read", "Glob", "Grep", "Bash"} <= offered(fake_anthropic)
    [denied] = [t for t in result.transcript if t["type"] == "tool_result"]
    assert denied["is_error"] is True
    assert await sandbox.diff() == ""


async def test_explore_is_read_only(fake_anthropic, settings, sandbox):
    fake_anthropic.on_tool("Grep", {"pattern": "greet"})
    fake_anthropic.default_reply = Reply.text("greet is in hello.py")
    result = await run_agent(mode="explore", prompt="Where is greet?", sandbox=sandbox, settings=settings,
                             max_turns=4, max_budget_usd=None, timeout_s=60)
    assert result.ok, result.error
    assert offered(fake_anthropic) == {"Read", "Glob", "Grep"}
    [res] = [t for t in result.transcript if t["type"] == "tool_result"]
    assert "hello.py" in res["content"]


async def test_bash_limited_to_allowed_commands(fake_anthropic, settings, sandbox):
    fake_anthropic.on_tool("Bash", {"command": "touch not-allowed.txt", "description": "x"})
    fake_anthropic.default_reply = Reply.text("done")
    result = await run_agent(mode="validate", prompt="Run the tests.", sandbox=sandbox, settings=settings,
                             max_turns=4, max_budget_usd=None, timeout_s=60, allowed_commands=["python3 -m pytest"])
    assert not (Path(sandbox.workdir) / "not-allowed.txt").exists()
    [res] = [t for t in result.transcript if t["type"] == "tool_result"]
    assert res["is_error"] is True
    assert [d["tool_name"] for d in result.permission_denials] == ["Bash"]


async def test_api_error_is_reported(fake_anthropic, settings, sandbox):
    fake_anthropic.fail_next(529, times=20, message="fake overloaded")
    result = await run_agent(mode="explore", prompt="Hi", sandbox=sandbox, settings=settings,
                             max_turns=2, max_budget_usd=None, timeout_s=60)
    assert not result.ok and result.error
    assert str(result.error).startswith("the agent run failed: API error status 529")
    assert API_KEY not in str(result.error)


async def test_missing_key_and_unconfined_sandbox(sandbox, repo, tmp_path):
    no_key = Settings(anthropic_api_key=None)
    result = await run_agent(mode="explore", prompt="x", sandbox=sandbox, settings=no_key, max_turns=1,
                             max_budget_usd=None, timeout_s=5)
    assert not result.ok and "API key" in str(result.error)
    # A sandbox without a jail (the operator did not opt out) never runs an agent.
    bare = await LocalSandboxProvider(base_dir=tmp_path / "bare", use_bwrap=False).create(
        repo_url=str(repo), ref="main", label="bare")
    bare.unconfined_agent_ok = False
    try:
        result = await run_agent(mode="explore", prompt="x", sandbox=bare, settings=Settings(anthropic_api_key="k"),
                                 max_turns=1, max_budget_usd=None, timeout_s=5)
    finally:
        await bare.destroy()
    assert not result.ok and "confined sandbox" in str(result.error)


@pytest.mark.parametrize("tool", ["Read", "Grep", "Write"])
async def test_host_files_outside_workdir_are_refused(fake_anthropic, settings, sandbox, tmp_path, tool):
    """The CLI runs on the host: its file tools must stay inside the work dir."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("HOST-SECRET\n")
    inputs = {
        "Read": {"file_path": str(outside / "secret.txt")},
        "Grep": {"pattern": "HOST-SECRET", "path": str(outside), "output_mode": "content"},
        "Write": {"file_path": str(outside / "planted.txt"), "content": "x\n"},
    }
    fake_anthropic.script = lambda req: Reply.tool(tool, inputs[tool]) if not tool_results(req) else Reply.text("ok")
    result = await run_agent(mode="implement", prompt="x", sandbox=sandbox, settings=settings, max_turns=3,
                             max_budget_usd=None, timeout_s=60)
    [res] = [t for t in result.transcript if t["type"] == "tool_result"]
    assert res["is_error"] is True and "HOST-SECRET" not in res["content"]
    assert [d["tool_name"] for d in result.permission_denials] == [tool]
    assert not (outside / "planted.txt").exists()


async def test_session_over_the_disk_limit_is_stopped(fake_anthropic, settings, repo, tmp_path):
    """The work dir's disk use is watched while the agent runs: over the limit, the session ends
    (nothing of it keeps running) and the result says why."""
    if not bwrap_available():
        pytest.skip("the local sandbox cannot be built here (CI installs bubblewrap)")
    small = Settings(sandbox_max_workdir_mb=5)
    sb = await LocalSandboxProvider(small, base_dir=tmp_path / "sb").create(repo_url=str(repo), ref="main", label="disk")
    try:
        fake_anthropic.on_tool("Bash", {"command": "for i in $(seq 1 60); do head -c 1000000 /dev/urandom > f$i; "
                                                   "sleep 0.2; done", "description": "fill"})
        started = time.monotonic()
        result = await run_agent(mode="implement", prompt="Fill.", sandbox=sb, settings=settings, max_turns=3,
                                 max_budget_usd=None, timeout_s=90)
        assert not result.ok and "over the sandbox limit of 5 MB" in str(result.error), result.error
        assert time.monotonic() - started < 20
        assert processes_in(sb) == []
    finally:
        await sb.destroy()
