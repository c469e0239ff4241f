"""People steering a run (`/omoi pause|resume|stop T3|retry T3|tell T3 <message>`): each is one short
transaction on the database, which the scheduler and the running workers read.

- pause: the run's state becomes `paused`; the scheduler claims nothing new and running sessions
  checkpoint after their current tool call (app/execution/checkpoint.py): their change is pushed as a
  work-in-progress commit and the task goes back to pending, to start from it after `resume`.
- stop: the task becomes `stopped` (a running worker loses its lease at its next heartbeat and
  cancels the session); tasks that depend on it wait, the others go on.
- retry: a stopped or failed task becomes pending again (the run runs again if it was waiting on it).
- tell: the message is stored as an intervention (source "person", action "redirect") for the task's
  current attempt; the lease's heartbeat hands it to the agent's PostToolUse hook like a guardian
  redirect. Only a running task is told; otherwise nothing is stored and the reply says so.
"""
from __future__ import annotations

from sqlalchemy import select

from app.config import Settings
from app.db.models import Intervention, Spec, SpecTask
from app.db.session import session_scope
from app.execution.leases import update
from app.observability.logs import get_logger
from app.text.rendering import reason, stored
from app.text.sanitize import sanitize_untrusted
from app.timeutil import utc_now

log = get_logger("omoi.orchestrator")
MESSAGE_CHARS = 2000  # a person's message into a running session


def _task(s, spec_id: int, task_id: str) -> SpecTask | None:
    return s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id,
                                            SpecTask.task_id == (task_id or "").upper())).first()


def _run_task(s, spec_id: int, task_id: str) -> tuple[str | None, SpecTask | None]:
    """The task's row in the spec's run, or why there is none: (no-run | unknown-task, None)."""
    if s.get(Spec, spec_id).run_state is None:
        return "no-run", None
    row = _task(s, spec_id, task_id)
    return (None, row) if row is not None else ("unknown-task", None)


def pause_run(settings: Settings, spec_id: int, user: str) -> str:
    """paused | the run's state when it is not running (no-run, paused, paused_budget, ...)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.run_state != "running":
            return "already-paused" if spec.run_state == "paused" else spec.run_state or "no-run"
        spec.run_state = "paused"
        spec.run_error, spec.run_error_params = stored(reason("run/paused", user=user))
    log.info("run_paused", spec_id=spec_id, user=user)
    return "paused"


def resume_run(settings: Settings, spec_id: int, user: str) -> str:
    """resumed | the run's state when it is not paused by a person."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.run_state != "paused":
            return spec.run_state or "no-run"
        spec.run_state, spec.run_error, spec.run_error_params = "running", None, None
        spec.run_resumed_at, spec.run_finished_at = utc_now(), None
        # tasks stopped by a person stay stopped; the ones waiting only on the pause start again
    log.info("run_resumed", spec_id=spec_id, user=user)
    return "resumed"


def stop_task(settings: Settings, spec_id: int, task_id: str, user: str) -> tuple[str, str]:
    """(stopped | unknown-task | not-stoppable | no-run, the task's id)."""
    with session_scope(settings.database_url) as s:
        refused, row = _run_task(s, spec_id, task_id)
        if refused:
            return refused, task_id
        if row.status not in ("pending", "running"):
            return "not-stoppable", row.task_id
        why = reason("task/stopped_by_person", user=user)
        won = s.execute(update(SpecTask).where(SpecTask.id == row.id, SpecTask.status.in_(("pending", "running")))
                        .values(status="stopped", lease_owner=None, lease_expires_at=None, heartbeat_at=None,
                                finished_at=utc_now(), error=why.code, error_params=why.json_params())).rowcount
        if won != 1:
            return "not-stoppable", row.task_id
        tid = row.task_id
    log.info("task_stopped", spec_id=spec_id, task=tid, user=user)
    return "stopped", tid


def retry_task(settings: Settings, spec_id: int, task_id: str) -> tuple[str, str] | None:
    """A stopped task (or a failed one while the run goes on) back to pending; the run runs again if
    it waited on it. None: not such a task (the whole-run retry in app/execution/orchestrator.py decides)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        row = _task(s, spec_id, task_id) if spec.run_state is not None else None
        if row is None or not (row.status == "stopped" or (row.status == "failed" and spec.run_state in
                                                            ("running", "paused"))):
            return None
        if spec.run_state not in ("running", "paused", "paused_budget"):
            return None  # an ended or failed run: orchestrator.request_retry resets it as a whole
        row.status, row.attempts, row.error, row.error_params, row.not_before = "pending", 0, None, None, None
        row.lease_owner, row.lease_expires_at, row.heartbeat_at, row.finished_at = None, None, None, None
        if spec.run_state == "paused" and spec.run_error == "run/waiting_on_stopped":
            spec.run_state, spec.run_error, spec.run_error_params = "running", None, None
            spec.run_resumed_at = utc_now()
        tid, state = row.task_id, spec.run_state
    log.info("task_retry", spec_id=spec_id, task=tid)
    return ("retrying" if state == "running" else state), tid


def tell_task(settings: Settings, spec_id: int, task_id: str, user: str, text: str) -> tuple[str, str]:
    """(told | not-running | unknown-task | no-run, the task's id)."""
    message = sanitize_untrusted(text, MESSAGE_CHARS).strip()
    with session_scope(settings.database_url) as s:
        refused, row = _run_task(s, spec_id, task_id)
        if refused:
            return refused, task_id
        if row.status != "running" or row.lease_owner is None:
            return "not-running", row.task_id
        adopted = "@" in row.lease_owner  # a claim not adopted yet: its attempt number is one more
        s.add(Intervention(spec_id=spec_id, task_id=row.task_id, attempt=row.attempts + (0 if adopted else 1),
                           source="person",
                           verdict="message", action="redirect", reason="", reason_params={"user": user},
                           guidance=message))
        tid = row.task_id
    log.info("task_told", spec_id=spec_id, task=tid, user=user)
    return "told", tid
