"""Scripted coding-agent models: the model's side of each Claude Code session, played by the
Anthropic stand-in (set as its `script`) and chosen from the task id, sandbox and attempt that
omoi's prompt names.

Agent writes each task's file (optionally blocking in a slow Bash call first); Script adds what
supervision and discovery need (findings, reports, a looping or drifting agent, the guardian's
verdicts); Sessions plays a list of steps per session of a task.
"""
from __future__ import annotations

import json
import re
import time

from tests.fakes.anthropic import Reply, forced_tool, request_text, tool_results

GUIDANCE = "Stop listing the directory; write hello.py now."
REDIRECT = "Leave the docs alone: your task is hello.py."


class Agent:
    """The model's side of each CLI session, chosen from the task id and paths in the prompt."""

    def __init__(self, fake, writes: dict[str, tuple[str, str]]):
        self.writes = writes  # task id -> (path, content)
        self.slow: dict[str, float] = {}  # task id -> seconds the first Bash call blocks before finishing, once
        self.seen: set[str] = set()
        # Claude Code cuts a bare `sleep` short; `timeout N tail -f /dev/null` really blocks N seconds.
        self.slow_command = "timeout {seconds} tail -f /dev/null || true"
        fake.script = self

    def __call__(self, req):
        text = request_text(req)
        m, wd = re.search(r"omoi-task: (T\d+)", text), re.search(r"omoi-sandbox: (\S+)", text)
        if not m or not wd:
            return None
        tid, results = m.group(1), tool_results(req)
        if not results:
            path, content = self.writes[tid]
            workdir = re.search(r"Working directory: (\S+)", text).group(1)  # /workspace, or Daytona's
            return Reply.tool("Write", {"file_path": f"{workdir}/{path}", "content": content})
        if len(results) == 1 and tid in self.slow and tid not in self.seen:
            self.seen.add(tid)
            return Reply.tool("Bash", {"command": self.slow_command.format(seconds=self.slow[tid]),
                                       "description": "think"})
        return Reply.text(f"{tid} is done.")


class Script:
    """The model's side: task sessions by task id, the guardian's judgement, a tasks-stage revision."""

    def __init__(self, fake):
        self.writes: dict[str, tuple[str, str]] = {}
        self.findings: dict[str, list[dict]] = {}  # task id -> written to .omoi-discoveries.json
        self.reported: dict[str, list[dict]] = {}  # task id -> sent through the report_discovery tool
        self.loop_until_guided: set[str] = set()
        self.drift_until_redirected: set[str] = set()
        self.verdicts = ["looping"]  # the guardian's answers in turn; the last one repeats
        self.prompts: dict[str, list[str]] = {}
        self.redirected: dict[str, str] = {}  # task id -> the redirect text the session received
        fake.script = self

    def verdict(self) -> dict:
        verdict = self.verdicts.pop(0) if len(self.verdicts) > 1 else self.verdicts[0]
        return {"verdict": verdict, "reason": {"looping": "it runs `ls` again and again",
                                               "drifting": "it explores docs instead of writing hello.py"}.get(
                    verdict, "fine"), "guidance": REDIRECT if verdict == "drifting" else GUIDANCE}

    def __call__(self, req):
        if forced_tool(req) == "emit_guardian_verdict":
            return Reply.tool("emit_guardian_verdict", self.verdict())
        text = request_text(req)
        m, wd = re.search(r"omoi-task: (T\d+)", text), re.search(r"omoi-sandbox: (\S+)", text)
        if not m or not wd or forced_tool(req):
            return None
        tid, done = m.group(1), len(tool_results(req))
        if not done:
            self.prompts.setdefault(tid, []).append(text)
        if tid in self.loop_until_guided and "omoi-guidance:" not in text:
            return Reply.tool("Bash", {"command": "sleep 1; ls", "description": "look around"})
        if tid in self.drift_until_redirected:
            got = re.search(r"omoi-redirect:[^\n]*", text)
            if not got:
                return Reply.tool("Bash", {"command": "sleep 1; ls", "description": "read the docs"})
            self.redirected.setdefault(tid, got.group(0))
            done = len(tool_results(req)) - _first_after_redirect(req)  # steps taken since it arrived
        steps = []
        if tid in self.writes:
            path, content = self.writes[tid]
            steps.append(Reply.tool("Write", {"file_path": f"/workspace/{path}", "content": content}))
        if tid in self.findings:
            steps.append(Reply.tool("Write", {"file_path": "/workspace/.omoi-discoveries.json",
                                              "content": json.dumps(self.findings[tid])}))
        steps += [Reply.tool("mcp__omoi__report_discovery", f) for f in self.reported.get(tid, [])]
        return steps[done] if done < len(steps) else Reply.text(f"{tid} is done.")


def _first_after_redirect(req) -> int:
    """How many tool results came before (and with) the one that carried the redirect."""
    for i, message in enumerate(m for m in req["messages"] if m["role"] == "user"):
        if "omoi-redirect:" in json.dumps(message):
            return i  # user message 0 is the prompt; message i holds tool result i
    return 0


def wait_step(seconds: float) -> dict:
    """A Sessions step: block in Bash for `seconds` (Claude Code cuts a bare `sleep` short; this
    really blocks)."""
    return {"tool": "Bash", "command": f"timeout {seconds} tail -f /dev/null || true"}


def write_step(path: str, content: str) -> dict:
    """A Sessions step: write `path` in the work dir."""
    return {"tool": "Write", "path": path, "content": content}


class Sessions:
    """The model's side: for each task a list of sessions (steps, then a final message); a task's
    n-th session (by its sandbox work dir, unique per attempt) plays sessions[min(n, last)]."""

    def __init__(self, fake, plans: dict[str, list[list[dict]]]):
        self.plans = plans
        self.workdirs: dict[str, list[str]] = {}
        self.seen: list[tuple[str, int, int, float]] = []  # (task, session, tool results so far, when)
        fake.script = self

    def __call__(self, req):
        if forced_tool(req) == "emit_guardian_verdict":
            return Reply.tool("emit_guardian_verdict", {"verdict": "on_track", "reason": "it works on its task"})
        text = request_text(req)
        m, wd = re.search(r"omoi-task: (T\d+)", text), re.search(r"omoi-sandbox: (\S+)", text)
        if not m or not wd or forced_tool(req):
            return None
        tid, workdir, done = m.group(1), wd.group(1), len(tool_results(req))
        sessions = self.workdirs.setdefault(tid, [])
        if workdir not in sessions:
            sessions.append(workdir)
        n = sessions.index(workdir)
        self.seen.append((tid, n, done, time.monotonic()))
        steps = self.plans[tid][min(n, len(self.plans[tid]) - 1)]
        if done >= len(steps):
            return Reply.text(f"{tid} is done.")
        step = steps[done]
        if step["tool"] == "Write":
            return Reply.tool("Write", {"file_path": f"/workspace/{step['path']}", "content": step["content"]})
        return Reply.tool("Bash", {"command": step["command"], "description": "wait for it"})
