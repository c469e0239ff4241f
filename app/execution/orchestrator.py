"""The run of an approved spec, from start to finish: the route approve -> run -> pull request.

The database is the source of truth; every step here is a short transaction.

- `start_run` (Celery, after `/omoi approve` of the tasks, `/omoi implement`, `/omoi retry`):
  `prepare_run` turns the approved tasks document into `spec_tasks` rows and marks the run running
  (or merges a newer approved revision into a run that already started), the branch is made sure
  of, then `advance` (whose publish opens the draft pull request once the first tasks are claimed).
- `advance` (Celery `omoi.schedule`, and after every attempt): claim what may start now
  (app/execution/scheduler.py), then show the new state on GitHub (app/execution/run_report.py: check
  run, tracking comment, pull request) and post proposed spec revisions (app/execution/discovery.py).
- `finish_attempt` records a task's outcome: done, retry later (backoff) or failed, which fails the run.
- `request_retry`, `cancel_run`, `end_run`, `resume_after_budget`, `fail_run`: the run's other state changes.
- `recover` (Celery beat, and at worker start) re-queues tasks whose lease ran out because their
  worker died, and nudges every running spec.

One attempt of one task is app/execution/task_runner.py; its lease is app/execution/leases.py.
"""
from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from app.config import Settings, get_settings
from app.db.models import Spec, SpecStage, SpecTask
from app.db.session import session_scope
from app.execution import discovery, run_report, scheduler
from app.execution.leases import Attempt, Lease, update
from app.execution.task_ids import task_number
from app.github import repo_config
from app.github.client import installation_client
from app.observability.logs import get_logger
from app.planning.schemas import Tasks
from app.text.rendering import Reason, reason, stored
from app.timeutil import utc_now

log = get_logger("omoi.orchestrator")
RUN_TERMINAL = ("succeeded", "failed", "cancelled")


# --- the route: start, advance ------------------------------------------------------------


def start_run(spec_id: int) -> str:
    """Celery entry point for `/omoi approve` (tasks), `/omoi implement` and `/omoi retry`."""
    settings = get_settings()
    outcome = prepare_run(settings, spec_id)
    if outcome == "not-approved":
        return outcome
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        installation = spec.installation_id

    async def setup() -> None:
        async with installation_client(settings, installation) as gh:
            # The tasks need the branch; the draft pull request is opened by the publish right after they
            # were claimed (`advance`), so no task waits for it (a content-creating POST may wait its turn).
            await run_report.ensure_branch_and_pr(gh, settings, spec_id, pr=False)

    asyncio.run(setup())
    advance(settings, spec_id)
    return outcome


def advance(settings: Settings, spec_id: int) -> scheduler.Scheduled:
    """Schedule what can run now, then show the new state on GitHub."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        installation, full_name = spec.installation_id, spec.repo_full_name

    async def go() -> scheduler.Scheduled:
        async with installation_client(settings, installation) as gh:
            cfg = await repo_config.load_effective(gh, settings, full_name)
            scheduled = scheduler.schedule(settings, spec_id, cfg.per_spec, cfg.budgets)
            await run_report.publish(gh, settings, spec_id)
            await discovery.post_proposals(gh, settings, spec_id)
            return scheduled

    return asyncio.run(go())


# --- starting, cancelling, retrying -------------------------------------------------------


def _approved_tasks(s, spec_id: int) -> Tasks | None:
    row = s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id, SpecStage.stage == "tasks",
                                            SpecStage.status == "approved")
                    .order_by(SpecStage.revision.desc()).limit(1)).first()
    return Tasks.model_validate(row.document) if row else None


def prepare_run(settings: Settings, spec_id: int) -> str:
    """Create the task rows and mark the run running (first start), or merge a newer approved tasks
    revision into a run that already started (`merge_revision`). Returns what happened:
    started | merged | running | succeeded | paused_budget | failed | cancelled | not-approved."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.state != "approved":
            return "not-approved"
        doc = _approved_tasks(s, spec_id)
        if spec.run_state is not None:
            added = merge_revision(s, settings, spec, doc) if doc is not None else []
            if not added:
                return spec.run_state
            if spec.run_state == "succeeded":  # new work re-opens a finished run (same branch and PR)
                spec.run_state, spec.run_finished_at = "running", None
            spec.run_resumed_at = utc_now()
            log.info("run_revision_merged", spec_id=spec_id, added=added, state=spec.run_state)
            return "merged"
        if doc is None:
            return "not-approved"
        for t in doc.tasks:
            s.add(SpecTask(spec_id=spec_id, task_id=t.id, title=t.title, description=t.description,
                           covers=list(t.covers), depends_on=list(t.depends_on),
                           files=[f.path for f in t.files], verify=list(t.verify)))
        spec.run_state, spec.run_error, spec.run_error_params = "running", None, None
        spec.run_started_at, spec.run_finished_at = utc_now(), None
    log.info("run_started", spec_id=spec_id)
    return "started"


def merge_revision(s, settings: Settings, spec: Spec, doc: Tasks) -> list[str]:
    """Add the tasks of an approved revision that the started run does not have yet (e.g. after an
    approved discovery proposal). A revision task is the same as an existing row when their titles
    are similar; the others get fresh ids after the highest (a revision's own ids restart at T1 and
    would collide with tasks added by discoveries), and their dependencies are mapped to the run's
    ids. A matched task that never started (pending, no attempt) takes the revision's description,
    files, verify commands and dependencies; one that started or finished is left as it is, and no
    task is removed. Idempotent: merging the same revision twice changes nothing."""
    rows = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec.id)).all()
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for t in doc.tasks:
        same = next((r for r in rows if r.task_id not in taken and
                     (r.title == t.title or discovery.similar(r.title, t.title, settings.discovery_similarity))), None)
        if same is not None:
            ids[t.id] = same.task_id
            taken.add(same.task_id)
    number = max((task_number(r.task_id) for r in rows), default=0)
    new = [t for t in doc.tasks if t.id not in ids]
    for t in new:
        number += 1
        ids[t.id] = f"T{number}"
    for t in new:
        s.add(SpecTask(spec_id=spec.id, task_id=ids[t.id], title=t.title, description=t.description,
                       covers=list(t.covers), depends_on=[ids[d] for d in t.depends_on if d in ids],
                       files=[f.path for f in t.files], verify=list(t.verify), origin="revision"))
    by_id = {r.task_id: r for r in rows}
    for t in doc.tasks:
        row = by_id.get(ids[t.id])
        if row is None or row.status != "pending" or row.attempts or row.origin == "discovery":
            continue
        row.description, row.covers, row.verify = t.description, list(t.covers), list(t.verify)
        row.files = [f.path for f in t.files]
        row.depends_on = [ids[d] for d in t.depends_on if d in ids and ids[d] != row.task_id]
    s.flush()
    return [ids[t.id] for t in new]


def request_retry(settings: Settings, spec_id: int, task_id: str | None = None) -> tuple[str, list[str]]:
    """Put failed/cancelled tasks back to pending and the run back to running.

    Returns (outcome, task ids reset): outcome is retrying | running | succeeded | no-run | unknown-task
    | not-failed."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.run_state is None:
            return "no-run", []
        if spec.run_state in ("running", "succeeded", "paused"):  # paused: `/omoi resume` (or retry a task)
            return spec.run_state, []
        tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id)).all()
        if task_id:
            named = [t for t in tasks if t.task_id.upper() == task_id.upper()]
            if not named:
                return "unknown-task", []
            if named[0].status not in ("failed", "cancelled", "stopped"):
                return "not-failed", [named[0].task_id]
        reset = []
        for t in tasks:
            if t.status in ("failed", "cancelled", "running", "stopped"):
                t.status, t.attempts, t.error, t.error_params, t.not_before = "pending", 0, None, None, None
                t.lease_owner, t.lease_expires_at, t.heartbeat_at = None, None, None
                reset.append(t.task_id)
        spec.run_state, spec.run_error, spec.run_error_params, spec.run_finished_at = "running", None, None, None
        spec.run_resumed_at = utc_now()
    log.info("run_retry", spec_id=spec_id, tasks=reset)
    return "retrying", sorted(reset, key=task_number)


def cancel_run(settings: Settings, spec_id: int, user: str) -> str:
    """Stop the run: pending and running tasks become cancelled (running workers notice at their
    next heartbeat and stop without pushing). Returns cancelled | not-running."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.run_state not in ("running", "paused_budget", "paused"):
            return "not-running"
        spec.run_state, spec.run_finished_at = "cancelled", utc_now()
        spec.run_error, spec.run_error_params = stored(reason("run/cancelled", user=user))
        s.execute(update(SpecTask).where(SpecTask.spec_id == spec_id, SpecTask.status.in_(("pending", "running", "stopped")))
                  .values(status="cancelled", lease_owner=None, lease_expires_at=None, finished_at=utc_now()))
    log.info("run_cancelled", spec_id=spec_id, user=user)
    return "cancelled"


def end_run(settings: Settings, spec_id: int, state: str, why: Reason | None) -> str | None:
    """End the run as `state` (cancelled: the issue was closed, its label removed or the plan rejected;
    merged | closed: its pull request was merged or closed unmerged). Pending and running tasks become
    cancelled, so running workers lose their lease at the next heartbeat and stop without pushing.
    Returns the run state before (None: there was no run). Safe to call twice; a merged run stays merged."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.run_state is None:
            return None
        before = spec.run_state
        if before == "merged" or (before == state and state != "cancelled"):
            return before
        s.execute(update(SpecTask).where(SpecTask.spec_id == spec_id, SpecTask.status.in_(("pending", "running", "stopped")))
                  .values(status="cancelled", lease_owner=None, lease_expires_at=None, finished_at=utc_now()))
        if before in ("running", "paused_budget", "paused") or spec.run_finished_at is None:
            spec.run_finished_at = utc_now()
        spec.run_state = state
        if why is not None and before in ("running", "paused_budget", "paused"):
            spec.run_error, spec.run_error_params = stored(why)
    log.info("run_ended", spec_id=spec_id, state=state, before=before)
    return before


def resume_after_budget(settings: Settings, spec_id: int) -> bool:
    """Back to running after `/omoi budget` raised the limit (True if the run was paused)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.run_state != "paused_budget":
            return False
        spec.run_state, spec.budget_stop, spec.run_finished_at = "running", None, None
        spec.run_error, spec.run_error_params = None, None
        spec.run_resumed_at = utc_now()
    log.info("run_resumed_budget", spec_id=spec_id)
    return True


def fail_run(settings: Settings, spec_id: int, why: Reason) -> None:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.run_state == "running":
            spec.run_state, spec.run_finished_at = "failed", utc_now()
            spec.run_error, spec.run_error_params = stored(why)
    log.warning("run_failed", spec_id=spec_id, reason=why.to_json())



# --- recording an attempt -----------------------------------------------------------------


def finish_attempt(settings: Settings, lease: Lease, result: Attempt) -> str:
    """Record the attempt; returns done | retry | failed | lost."""
    now = utc_now()
    with session_scope(settings.database_url) as s:
        row = s.get(SpecTask, lease.row_id)
        if row is None or row.lease_owner != lease.owner or row.status != "running":
            return "lost"
        row.cost_usd = Decimal(row.cost_usd or 0) + Decimal(str(round(result.cost_usd, 6)))
        row.duration_s = (row.duration_s or 0.0) + result.duration_s
        row.evidence = result.evidence or row.evidence
        row.lease_owner, row.lease_expires_at = None, None
        if result.discoveries:
            discovery.record(s, settings, lease.spec_id, row.task_id, result.discoveries)
        row.error, row.error_params = stored(result.reason)
        if result.budget_stop:
            row.status, row.attempts = "pending", max(0, row.attempts - 1)
            outcome = "budget"
        elif result.ok:
            row.status, row.commit_sha, row.finished_at = "done", result.commit_sha, now
            row.error, row.error_params = None, None
            outcome = "done"
        elif result.retryable and row.attempts < settings.task_max_attempts:
            backoff = settings.task_retry_backoff_seconds * 2 ** max(0, row.attempts - 1)
            row.status, row.not_before = "pending", now + timedelta(seconds=backoff)
            outcome = "retry"
        else:
            row.status, row.finished_at = "failed", now
            outcome = "failed"
        attempts, task_id = row.attempts, row.task_id
    log.info("task_attempt_finished", spec_id=lease.spec_id, task=task_id, outcome=outcome, attempt=attempts,
             reason=result.reason.to_json() if result.reason else None)
    if outcome == "failed":
        fail_run(settings, lease.spec_id, reason("run/task_failed", task=task_id, cause=result.reason,
                                                 attempts=attempts if result.retryable else None))
    return outcome


def record_lost_attempt(settings: Settings, lease: Lease, result: Attempt) -> None:
    """An attempt stopped from outside (cancel, guardian, conductor): whoever took the lease decided
    the task's status, but the session's cost and time were spent and count against the budgets."""
    if not result.cost_usd and not result.duration_s:
        return
    with session_scope(settings.database_url) as s:
        s.execute(update(SpecTask).where(SpecTask.id == lease.row_id).values(
            cost_usd=func.coalesce(SpecTask.cost_usd, 0) + Decimal(str(round(result.cost_usd, 6))),
            duration_s=func.coalesce(SpecTask.duration_s, 0.0) + result.duration_s))
    log.info("task_attempt_lost", spec_id=lease.spec_id, task=lease.task_id, attempt=lease.attempt,
             cost_usd=round(result.cost_usd, 6))


# --- recovery -----------------------------------------------------------------------------


def recover(settings: Settings | None = None) -> list[int]:
    """Re-queue tasks whose worker died (lease expired); returns the specs with a running run."""
    settings = settings or get_settings()
    now = utc_now()
    failed: list[tuple[int, str, int]] = []
    with session_scope(settings.database_url) as s:
        expired = s.scalars(select(SpecTask).where(SpecTask.status == "running",
                                                   SpecTask.lease_expires_at < now)).all()
        for t in expired:
            give_up = t.attempts >= settings.task_max_attempts
            why = (reason("task/worker_lost", attempt=t.attempts) if give_up else
                   reason("task/worker_lost_requeued"))
            values = {"status": "failed" if give_up else "pending", "error": why.code, "error_params": why.json_params(),
                      **({"finished_at": now} if give_up else {})}
            won = s.execute(update(SpecTask).where(
                SpecTask.id == t.id, SpecTask.status == "running", SpecTask.lease_owner == t.lease_owner,
                SpecTask.lease_expires_at < now,
            ).values(lease_owner=None, lease_expires_at=None, heartbeat_at=None, **values)).rowcount
            if won == 1:
                log.warning("task_lease_expired", spec_id=t.spec_id, task=t.task_id, gave_up=give_up)
                if give_up:
                    failed.append((t.spec_id, t.task_id, t.attempts))
        running = list(s.scalars(select(Spec.id).where(Spec.run_state == "running")).all())
    for spec_id, task_id, attempts in failed:
        fail_run(settings, spec_id, reason("run/task_failed", task=task_id, attempts=attempts,
                                           cause=reason("task/worker_lost", attempt=None)))
    return running
