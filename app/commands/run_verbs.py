"""The run verbs: `/omoi implement`, `/omoi retry [task]`, `/omoi cancel`, and steering a run:
`/omoi pause`, `/omoi resume`, `/omoi stop T3`, `/omoi tell T3 <message>`. The state changes now,
the work is queued."""
from __future__ import annotations

from app import jobs
from app.commands.grammar import Command
from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.execution import orchestrator, steering
from app.planning.flow import Outcome

VERBS = {"implement", "retry", "cancel", "pause", "resume", "stop", "tell"}
STEERING = "replies/steering.md.j2"


def steer(verb: str, cmd: Command, settings: Settings, spec_id: int, user: str) -> Outcome | None:
    """pause, resume, stop, tell and retrying one task (app/execution/steering.py); None: not steering."""
    task = (cmd.args.get("task") or "").upper() or None
    if verb == "pause":
        outcome = steering.pause_run(settings, spec_id, user)
    elif verb == "resume":
        outcome = steering.resume_run(settings, spec_id, user)
    elif verb == "stop":
        outcome, task = steering.stop_task(settings, spec_id, task, user)
    elif verb == "tell":
        outcome, task = steering.tell_task(settings, spec_id, task, user, cmd.args.get("text") or "")
    elif verb == "retry" and task:
        retried = steering.retry_task(settings, spec_id, task)
        if retried is None:
            return None
        outcome, task = retried
    else:
        return None
    if outcome in ("paused", "resumed", "stopped", "retrying"):
        jobs.schedule(spec_id=spec_id)  # the tracking comment and check run show it; resumed work is claimed
    return Outcome(STEERING, {"verb": verb, "outcome": outcome, "task": task, "user": user})


def run(verb: str, cmd: Command, settings: Settings, spec_id: int, user: str, request_key: str) -> Outcome:
    steered = steer(verb, cmd, settings, spec_id, user)
    if steered is not None:
        return steered
    if verb == "cancel":
        state = orchestrator.cancel_run(settings, spec_id, user)
        if state != "cancelled":
            return Outcome("execution/reply_run_state.md.j2", {"state": state, "task": None})
        jobs.schedule(spec_id=spec_id)
        return Outcome("execution/reply_cancelled.md.j2")
    task = (cmd.args.get("task") or "").upper() or None
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        approved, run_state, state = spec.state == "approved", spec.run_state, spec.state
    if state in ("stopped", "complete") or run_state in ("merged", "closed"):
        # the run ended with the issue or the pull request: reopening it (or `/omoi plan`) continues
        return Outcome("execution/reply_run_state.md.j2", {"state": run_state if state == "approved" else state,
                                                           "task": task})
    if not approved:
        return Outcome("execution/reply_run_state.md.j2", {"state": "stale" if state == "stale" else "not-approved",
                                                           "task": task})
    if run_state is None and verb == "implement":
        jobs.start_run(spec_id=spec_id, request_key=f"{request_key}:implement")
        return Outcome("execution/reply_run_started.md.j2", {"tasks": []})
    state, reset = orchestrator.request_retry(settings, spec_id, task if verb == "retry" else None)
    if state != "retrying":
        return Outcome("execution/reply_run_state.md.j2", {"state": state, "task": task})
    jobs.start_run(spec_id=spec_id, request_key=f"{request_key}:{verb}")
    return Outcome("execution/reply_retrying.md.j2", {"tasks": reset})
