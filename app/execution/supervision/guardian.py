"""The guardian (Celery beat, every `guardian_interval_seconds`): is each running task on track?

Each running task's recent trajectory (the agent's messages, flushed to `spec_tasks.trajectory` by
the lease's heartbeat, app/execution/leases.py) is judged by the model through `structured_output`
against its task and the approved criteria: on_track, drifting, stuck or looping. Anything but
on_track is an intervention. The first drifting/stuck verdict of an attempt redirects it: the
guidance is sent into the running session (the heartbeat hands it to the agent's PostToolUse hook)
and the session goes on. A looping verdict, or another bad verdict after a redirect, stops the
attempt (its lease is taken away, so the worker cancels the session and pushes nothing) and retries
it with the guidance in the next prompt, or, on the last attempt, stops and reports it (the run fails).
"""
from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select

from app.config import Settings, get_settings
from app.db.models import Intervention, Spec, SpecStage, SpecTask
from app.db.session import session_scope
from app.execution.leases import update
from app.execution.orchestrator import fail_run
from app.llm.structured import structured_output
from app.observability.logs import get_logger
from app.planning.schemas import Requirements
from app.text.rendering import reason, render, render_line
from app.timeutil import utc_now

log = get_logger("omoi.monitoring")
LOOP_REPEATS = 4  # this many identical tool calls in a row is a loop, whatever the model says
_judged: dict[tuple[int, int], int] = {}  # (task row, attempt) -> trajectory length last judged


class GuardianVerdict(BaseModel):
    """Your judgement of one coding agent's recent trajectory against the task it was given."""

    verdict: Literal["on_track", "drifting", "stuck", "looping"] = Field(
        description="on_track: making progress on its task; drifting: working on something else; "
                    "stuck: not making progress (errors, waiting); looping: repeating the same actions")
    reason: str = Field(description="One or two sentences: what in the trajectory shows it", max_length=600)
    guidance: str = Field("", description="If not on_track: what the agent should do differently on its next "
                                          "attempt, as a direct instruction", max_length=1000)


def _call_key(entry: dict) -> str:
    return f"{entry.get('name')}:{entry.get('input')}"


def repeats(trajectory: list[dict]) -> int:
    """How many times the last tool call was made identically in a row."""
    calls = [_call_key(e) for e in trajectory if e.get("type") == "tool_use"]
    if not calls:
        return 0
    n = 1
    while n < len(calls) and calls[-1 - n] == calls[-1]:
        n += 1
    return n


def _trajectory_view(trajectory: list[dict], limit: int = 25) -> list[dict]:
    """The last `limit` entries, each field as short text, for templates/prompts/guardian.j2."""
    return [{"type": e.get("type"), "name": str(e.get("name")), "input": str(e.get("input"))[:300],
             "is_error": bool(e.get("is_error")), "content": str(e.get("content"))[:300],
             "role": str(e.get("role")), "text": str(e.get("text"))[:400]} for e in trajectory[-limit:]]


def _criteria(s, spec_id: int, covers: list[str]) -> list[str]:
    row = s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id, SpecStage.stage == "requirements",
                                            SpecStage.status == "approved")
                    .order_by(SpecStage.revision.desc()).limit(1)).first()
    if row is None:
        return []
    by_id = Requirements.model_validate(row.document).criteria()
    return [f"{c}: {by_id[c][1].text}" for c in covers if c in by_id]


async def _judge(settings: Settings, spec_id: int, task: dict) -> GuardianVerdict:
    prompt = render("prompts/guardian.j2", task=task).strip()
    return await structured_output(prompt, GuardianVerdict, purpose="guardian", spec_id=spec_id,
                                   model=settings.model_reviewer, max_tokens=1024)


def guardian(settings: Settings | None = None) -> list[dict]:
    """Judge every running task with a fresh trajectory; intervene when it is not on track."""
    settings = settings or get_settings()
    todo = []
    with session_scope(settings.database_url) as s:
        rows = s.scalars(select(SpecTask).join(Spec, Spec.id == SpecTask.spec_id).where(
            SpecTask.status == "running", SpecTask.lease_owner.is_not(None), Spec.run_state == "running")).all()
        for t in rows:
            traj = list(t.trajectory or [])
            tool_calls = sum(1 for e in traj if e.get("type") == "tool_use")
            if tool_calls < settings.guardian_min_tool_calls or _judged.get((t.id, t.attempts)) == len(traj):
                continue
            redirected = s.scalar(select(Intervention.id).where(
                Intervention.spec_id == t.spec_id, Intervention.task_id == t.task_id,
                Intervention.attempt == t.attempts, Intervention.action == "redirect",
                Intervention.source == "guardian").limit(1)) is not None  # a person's message is not the guardian's
            todo.append({"row": t.id, "spec_id": t.spec_id, "id": t.task_id, "title": t.title, "redirected": redirected,
                         "description": t.description, "attempt": t.attempts, "owner": t.lease_owner,
                         "criteria": _criteria(s, t.spec_id, list(t.covers or [])),
                         "trajectory": _trajectory_view(traj), "repeats": repeats(traj), "length": len(traj)})
    done = []
    for task in todo:
        _judged[(task["row"], task["attempt"])] = task["length"]
        try:
            verdict = asyncio.run(_judge(settings, task["spec_id"], task))
        except Exception as exc:  # noqa: BLE001 - no judgement: fall back to the deterministic loop check
            log.warning("guardian_judgement_failed", task=task["id"], error=exc.__class__.__name__)
            if task["repeats"] < LOOP_REPEATS:
                continue
            # the model's words are text, so this stand-in for them is put into words now
            verdict = GuardianVerdict(verdict="looping",
                                      reason=str(reason("supervision/repeated_call", repeats=task["repeats"])),
                                      guidance=render_line("prompts/guardian_messages.j2", kind="loop"))
        log.info("guardian_verdict", spec_id=task["spec_id"], task=task["id"], verdict=verdict.verdict)
        if verdict.verdict == "on_track":
            continue
        action = intervene(settings, task, verdict)
        if action:
            done.append({"task": task["id"], "verdict": verdict.verdict, "action": action})
    return done


def intervene(settings: Settings, task: dict, verdict: GuardianVerdict) -> str | None:
    """Redirect the running session once (drifting/stuck), else stop the attempt (take its lease) and
    retry with guidance, or stop and report on the last one."""
    if verdict.verdict in ("drifting", "stuck") and not task.get("redirected") and settings.guardian_redirect:
        message = verdict.guidance or render_line("prompts/guardian_messages.j2", kind="redirect",
                                                  verdict=verdict.verdict, reason=verdict.reason)
        with session_scope(settings.database_url) as s:
            s.add(Intervention(spec_id=task["spec_id"], task_id=task["id"], attempt=task["attempt"],
                               source="guardian", verdict=verdict.verdict, action="redirect",
                               reason=verdict.reason[:600], guidance=message))
        log.warning("guardian_redirected", spec_id=task["spec_id"], task=task["id"], verdict=verdict.verdict)
        return "redirect"
    retry = task["attempt"] < settings.task_max_attempts
    guidance = verdict.guidance or render_line("prompts/guardian_messages.j2", kind="retry",
                                               verdict=verdict.verdict, reason=verdict.reason)
    stopped = reason("task/guardian_stopped", verdict=verdict.verdict, reason=verdict.reason)
    error = {"error": stopped.code, "error_params": stopped.json_params()}
    values = ({"status": "pending", "guidance": guidance, "not_before": None, **error} if retry else
              {"status": "failed", "finished_at": utc_now(), **error})
    with session_scope(settings.database_url) as s:
        won = s.execute(update(SpecTask).where(
            SpecTask.id == task["row"], SpecTask.status == "running", SpecTask.lease_owner == task["owner"],
        ).values(lease_owner=None, lease_expires_at=None, heartbeat_at=None, **values)).rowcount
        if won != 1:
            return None  # it finished or moved on meanwhile
        action = "retry_with_guidance" if retry else "stop_and_report"
        s.add(Intervention(spec_id=task["spec_id"], task_id=task["id"], attempt=task["attempt"], source="guardian",
                           verdict=verdict.verdict, action=action, reason=verdict.reason[:600],
                           guidance=guidance if retry else None))
    log.warning("guardian_intervened", spec_id=task["spec_id"], task=task["id"], action=action)
    if not retry:
        fail_run(settings, task["spec_id"], reason("run/task_stopped", task=task["id"], cause=stopped))
    from app import jobs  # lazy: Celery is loaded only when the guardian intervenes

    jobs.schedule(spec_id=task["spec_id"])
    return action
