"""The run verbs: `/omoi implement`, `/omoi retry [task]`, `/omoi cancel`. The state changes now,
the work is queued."""
from __future__ import annotations

from app import jobs
from app.commands.grammar import Command
from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.execution import orchestrator
from app.planning.flow import Outcome

VERBS = {"implement", "retry", "cancel"}


def run(verb: str, cmd: Command, settings: Settings, spec_id: int, user: str, request_key: str) -> Outcome:
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
