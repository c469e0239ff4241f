"""After a task's last failed attempt: what went wrong, written on the task.

`settle` runs in the worker right after each attempt, while its lease still lives: it records the
attempt (app/execution/attempt_feedback.py) and, when this was the last attempt of a failing task,
asks the model once (if an agent ran at all) for a diagnosis over the recorded attempts (the failure, the verify output, the
agents' own accounts, the diff stats, the validator's reasons) - a structured_output() call, no tools,
bounded tokens, its cost recorded against the spec. The diagnosis is stored on the attempt and shown
in the tracking comment (app/execution/run_report.py). Nothing here ever fails the attempt.
"""
from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field
from sqlalchemy import select

from app.config import Settings
from app.db.attempt_models import TaskAttempt
from app.db.models import SpecTask
from app.db.session import session_scope
from app.execution import attempt_feedback
from app.execution.leases import Attempt, Lease
from app.observability.logs import get_logger
from app.text.rendering import explain, render

log = get_logger("omoi.diagnosis")
MAX_ATTEMPTS_SHOWN = 4
DIAGNOSIS_CHARS = 1500


class TaskDiagnosis(BaseModel):
    """What went wrong with a task whose every attempt failed, for the person who retries it."""

    cause: str = Field(description="the most likely root cause, in one or two sentences", max_length=800)
    evidence: str = Field(description="the output or fact that shows it", max_length=800)
    next_step: str = Field(description="what a person (or the next attempt) should change", max_length=800)


def final(settings: Settings, lease: Lease, result: Attempt) -> bool:
    """Whether this failed attempt is the task's last (the orchestrator will mark it failed)."""
    return (not result.ok and not result.lost and not result.budget_stop
            and (not result.retryable or lease.attempt >= settings.task_max_attempts))


def settle(settings: Settings, lease: Lease, result: Attempt, notes: attempt_feedback.Notes) -> None:
    try:
        row_id = attempt_feedback.record(settings, lease, result, notes)
        if row_id is None or not settings.task_diagnosis or not final(settings, lease, result):
            return
        text = asyncio.run(_diagnose(settings, lease))
        if text:
            with session_scope(settings.database_url) as s:
                s.get(TaskAttempt, row_id).diagnosis = text
            log.info("task_diagnosed", spec_id=lease.spec_id, task=lease.task_id)
    except Exception:  # noqa: BLE001 - feedback and diagnosis are help, never a reason to fail
        log.exception("task_settle_failed", spec_id=lease.spec_id, task=lease.task_id)


async def _diagnose(settings: Settings, lease: Lease) -> str | None:
    from app.llm.structured import structured_output  # why: the model client only where a diagnosis is made

    with session_scope(settings.database_url) as s:
        task = s.get(SpecTask, lease.row_id)
        rows = s.scalars(select(TaskAttempt).where(TaskAttempt.spec_id == lease.spec_id,
                                                   TaskAttempt.task_id == lease.task_id)
                         .order_by(TaskAttempt.seq.desc()).limit(MAX_ATTEMPTS_SHOWN)).all()
        attempts = [{"seq": r.seq, "why": attempt_feedback.as_data(explain(r.error, r.error_params), 600, settings),
                     **{k: attempt_feedback.as_data((r.feedback or {}).get(k), 1500, settings)
                        for k in ("verify", "account", "diffstat", "validation")}} for r in reversed(rows)]
        view = {"title": attempt_feedback.as_data(task.title, 300, settings),
                "description": attempt_feedback.as_data(task.description, 2000, settings),
                "verify": [attempt_feedback.as_data(v, 300, settings) for v in task.verify or []]}
    if not any(a[k] for a in attempts for k in ("verify", "account", "diffstat", "validation")):
        return None  # no agent ran (no sandbox, a crash before it): nothing for a model to diagnose
    prompt = render("prompts/diagnosis.j2", task=view, attempts=attempts).strip()
    try:
        out = await structured_output(prompt, TaskDiagnosis, purpose="task_diagnosis", spec_id=lease.spec_id,
                                      model=settings.model_reviewer, max_tokens=1024)
    except Exception as exc:  # noqa: BLE001 - no model, or no usable answer: the task error stays as it is
        log.warning("task_diagnosis_failed", spec_id=lease.spec_id, task=lease.task_id, error=type(exc).__name__)
        return None
    return render("execution/diagnosis.md.j2", d=out).strip()[:DIAGNOSIS_CHARS]
