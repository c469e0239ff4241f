"""An independent check that a task meets its acceptance criteria, after its verify commands passed.

A validate-mode agent session (app/agent/session.py: Read, Glob, Grep, and Bash limited to read-only git
commands here) runs in the task's sandbox, bounded in turns, dollars and time. It gets the task, its
criteria, the diff and the verify output as data, and answers through the `report_validation` tool
(an in-process MCP tool). A failed or missing verdict is an attempt failure whose reasons reach the next
attempt (app/execution/attempt_feedback.py). The diff omoi commits was taken before the session, so
nothing the validator does can change it. Enabled by the `task_validate` setting or `.github/omoi.yml`
`validation`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from app.config import Settings
from app.execution import attempt_feedback
from app.text.rendering import render, render_line

TEXTS = "execution/validation_texts.j2"
READ_ONLY_COMMANDS = ["git diff", "git status", "git log", "git show"]
DIFF_CHARS, OUTPUT_CHARS = 20_000, 2_000


class CriterionCheck(BaseModel):
    criterion: str = Field(max_length=40)
    met: bool
    explanation: str = Field("", max_length=1000)


class Verdict(BaseModel):
    verdict: Literal["pass", "fail"]
    reasons: list[CriterionCheck] = Field(default_factory=list, max_length=30)
    summary: str = Field("", max_length=2000)


@dataclass
class Outcome:
    ok: bool
    feedback: str = ""  # the validator's reasons, for the next attempt
    cost_usd: float = 0.0


def verdict_tool(sink: list[Verdict]):
    """The `report_validation` tool for one session; the first valid verdict counts."""
    from claude_agent_sdk import tool  # why: the SDK only in the worker that runs a session

    @tool("report_validation", render_line(TEXTS, part="tool"), Verdict.model_json_schema())
    async def report_validation(args: dict) -> dict:
        try:
            verdict = Verdict.model_validate(args)
        except ValidationError as exc:
            return {"content": [{"type": "text", "text": render_line(TEXTS, part="invalid", error=exc)}], "is_error": True}
        if not sink:
            sink.append(verdict)
        return {"content": [{"type": "text", "text": render_line(TEXTS, part="recorded")}]}

    return report_validation


def prompt(settings: Settings, ctx: dict, workdir: str, patch: str, evidence: list[dict]) -> str:
    def data(text, limit, keep_head=False):
        return attempt_feedback.as_data(text, limit, settings, keep_head=keep_head)
    outputs = [{"command": data(e.get("command"), 300), "exit_code": e.get("exit_code"),
                "tail": data(e.get("tail"), OUTPUT_CHARS)} for e in evidence]
    task = ctx["task"]
    return render("execution/validate_prompt.md.j2", workdir=workdir, task_id=task["id"],
                  title=data(task["title"], 300), description=data(task["description"], 4000),
                  criteria=[{"id": c.id, "text": data(c.text, 1000), "verification": data(c.verification, 500)}
                            for c in ctx["criteria"]],
                  diff=data(patch, DIFF_CHARS, keep_head=True), outputs=outputs)


async def check(runner, sandbox, settings: Settings, ctx: dict, patch: str, evidence: list[dict], *,
                budget_usd: float, on_cost=None) -> Outcome:
    """Run the validate session; `runner` is the task runner's agent runner."""
    sink: list[Verdict] = []
    result = await runner(
        mode="validate", prompt=prompt(settings, ctx, sandbox.agent_cwd, patch, evidence), sandbox=sandbox,
        settings=settings, max_turns=settings.task_validate_max_turns,
        max_budget_usd=min(settings.task_validate_budget_usd, budget_usd), timeout_s=min(settings.agent_timeout_seconds, 900),
        allowed_commands=READ_ONLY_COMMANDS, on_cost=on_cost, extra_tools=[verdict_tool(sink)])
    if not sink:  # no verdict is no validation: the change is not accepted unchecked
        return Outcome(False, render_line(TEXTS, part="no_verdict", text=result.text or ""), result.cost_usd)
    verdict = sink[0]
    failed = [r for r in verdict.reasons if not r.met]
    ok = verdict.verdict == "pass" and not failed
    feedback = "" if ok else render(TEXTS, part="feedback", verdict=verdict, failed=failed or verdict.reasons).strip()
    return Outcome(ok, feedback, result.cost_usd)
