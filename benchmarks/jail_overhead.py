"""Benchmark: what the local sandbox's jail (app/sandbox/jail.py) costs per command and per agent session.

Measures, jailed and unconfined (the operator opt-out), on one clone:
- a trivial command (`true`) through `LocalSandbox.exec`, n times;
- a whole Claude Code session (the real CLI bundled in claude-agent-sdk, through omoi's model proxy)
  that writes one file and runs one command, against the Anthropic stand-in, n times.
Prints mean and median seconds of each and the difference (the jail's overhead).

    python benchmarks/jail_overhead.py [--commands 30] [--sessions 5]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _repo(base: Path) -> Path:
    repo = base / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@e", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@e"}
    (repo / "hello.py").write_text("print('hi')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    return repo


async def _measure(jailed: bool, repo: Path, base: Path, fake, commands: int, sessions: int) -> dict[str, list[float]]:
    from app.agent.session import run_agent
    from app.config import Settings
    from app.sandbox.local import LocalSandboxProvider
    from tests.fakes.anthropic import Reply, tool_results

    provider = LocalSandboxProvider(Settings(unsafe_allow_unconfined_sandbox=not jailed), base_dir=base,
                                    use_bwrap=jailed)
    settings = Settings(anthropic_api_key="bench-key", anthropic_base_url=fake.url, llm_max_retries=0,
                        model_planner="claude-sonnet-4-5", unsafe_allow_unconfined_sandbox=not jailed)
    out: dict[str, list[float]] = {"command": [], "session": [], "sandbox create": []}
    t = time.monotonic()
    sb = await provider.create(repo_url=str(repo), ref="main", label="bench")
    out["sandbox create"].append(time.monotonic() - t)
    try:
        for _ in range(commands):
            t = time.monotonic()
            res = await sb.exec("true", timeout=30)
            assert res.ok, res
            out["command"].append(time.monotonic() - t)

        def script(req):
            done = len(tool_results(req))
            if done == 0:
                return Reply.tool("Write", {"file_path": f"{sb.agent_cwd}/out.txt", "content": "x\n"})
            if done == 1:
                return Reply.tool("Bash", {"command": "cat out.txt", "description": "check"})
            return Reply.text("done")

        fake.script = script
        for _ in range(sessions):
            t = time.monotonic()
            result = await run_agent(mode="implement", prompt="Write out.txt.", sandbox=sb, settings=settings,
                                     max_turns=6, max_budget_usd=None, timeout_s=120)
            assert result.ok, result.error
            out["session"].append(time.monotonic() - t)
    finally:
        await sb.destroy()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--commands", type=int, default=30)
    ap.add_argument("--sessions", type=int, default=5)
    args = ap.parse_args()
    from app.sandbox.local import bwrap_available
    from tests.fakes.anthropic import FakeAnthropic

    if not bwrap_available():
        print("the jail cannot be built here (bubblewrap / user namespaces); nothing to compare")
        return 1
    base = Path(tempfile.mkdtemp(prefix="omoi-bench-jail-", dir="/tmp"))
    os.chmod(base, 0o711)
    repo = _repo(base)
    with FakeAnthropic() as fake:
        results = {name: asyncio.run(_measure(name == "jailed", repo, base, fake, args.commands, args.sessions))
                   for name in ("unconfined", "jailed")}
    for what in ("sandbox create", "command", "session"):
        row = []
        for name in ("unconfined", "jailed"):
            values = results[name][what]
            row.append((statistics.mean(values), statistics.median(values)))
        print(f"{what:15s} unconfined mean {row[0][0]:.3f}s median {row[0][1]:.3f}s | jailed mean {row[1][0]:.3f}s "
              f"median {row[1][1]:.3f}s | jail overhead {row[1][0] - row[0][0]:+.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
