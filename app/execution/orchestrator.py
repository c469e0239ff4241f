"""The task DAG of an approved spec: which tasks may run now, who runs them, and when the run ends.

The database is the source of truth; every step here is a short transaction.

- `prepare_run` turns the approved tasks document into `spec_tasks` rows and marks the run running.
- `schedule` finds the ready tasks (all dependencies done, backoff over) and claims as many as the
  limits allow: per spec (`max_parallel_tasks_per_spec`, or the repo's `concurrency.per_spec`), per
  installation, and never two tasks whose file write-sets overlap. A claim is one
  `UPDATE ... WHERE status='pending'` (rowcount 1 wins) that leaves a lease token; the token travels
  with the Celery message and the worker adopts it (`adopt`), then keeps the lease alive with a
  heartbeat. Scheduling is serialised per installation with a database lock.
- `finish_attempt` records a task's outcome: done, retry later (backoff) or failed, which stops the run.
- `recover` (Celery beat, and at worker start) re-queues tasks whose lease ran out because their
  worker died, and nudges every running spec.

Publishing to GitHub (check run, tracking comment, pull request) is app/execution/run_report.py; one task's
work is app/execution/task_runner.py.
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy import func, or_, select, update

from app.config import Settings, get_settings
from app.db.models import Spec, SpecStage, SpecTask
from app.db.session import session_scope
from app.db.locks import owner_id, release, try_acquire
from app.observability.logs import get_logger
from app.planning.schemas import Tasks
from app.timeutil import as_utc, utc_now

log = get_logger("omoi.orchestrator")
RUN_TERMINAL = ("succeeded", "failed", "cancelled")


class Dispatcher(Protocol):
    def run_task(self, spec_id: int, task_id: str, token: str) -> None: ...
    def schedule(self, spec_id: int, delay: float) -> None: ...


class CeleryDispatcher:
    def run_task(self, spec_id: int, task_id: str, token: str) -> None:
        from app.jobs import enqueue

        enqueue("omoi.run_task", spec_id, task_id, token)

    def schedule(self, spec_id: int, delay: float) -> None:
        from app.jobs import enqueue

        enqueue("omoi.schedule", spec_id, countdown=max(delay, 0.0))


# Replaced only by benchmarks/dag_run.py (threads instead of Celery); everything else uses Celery.
dispatcher: Dispatcher = CeleryDispatcher()


def _update(model):
    # Compare-and-set UPDATEs: the database decides; never evaluate the WHERE against loaded objects.
    return update(model).execution_options(synchronize_session=False)


def task_number(task_id: str) -> int:
    m = re.search(r"\d+", task_id)
    return int(m.group()) if m else 0


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
        spec.run_state, spec.run_error = "running", None
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
    from app.execution.discovery import similar

    rows = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec.id)).all()
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for t in doc.tasks:
        same = next((r for r in rows if r.task_id not in taken and
                     (r.title == t.title or similar(r.title, t.title, settings.discovery_similarity))), None)
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
        if spec.run_state in ("running", "succeeded"):
            return spec.run_state, []
        tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id)).all()
        if task_id:
            named = [t for t in tasks if t.task_id.upper() == task_id.upper()]
            if not named:
                return "unknown-task", []
            if named[0].status not in ("failed", "cancelled"):
                return "not-failed", [named[0].task_id]
        reset = []
        for t in tasks:
            if t.status in ("failed", "cancelled", "running"):
                t.status, t.attempts, t.error, t.not_before = "pending", 0, None, None
                t.lease_owner, t.lease_expires_at, t.heartbeat_at = None, None, None
                reset.append(t.task_id)
        spec.run_state, spec.run_error, spec.run_finished_at = "running", None, None
        spec.run_resumed_at = utc_now()
    log.info("run_retry", spec_id=spec_id, tasks=reset)
    return "retrying", sorted(reset, key=task_number)


def cancel_run(settings: Settings, spec_id: int, user: str) -> str:
    """Stop the run: pending and running tasks become cancelled (running workers notice at their
    next heartbeat and stop without pushing). Returns cancelled | not-running."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.run_state not in ("running", "paused_budget"):
            return "not-running"
        spec.run_state, spec.run_finished_at = "cancelled", utc_now()
        spec.run_error = f"cancelled by @{user}"
        s.execute(_update(SpecTask).where(SpecTask.spec_id == spec_id, SpecTask.status.in_(("pending", "running")))
                  .values(status="cancelled", lease_owner=None, lease_expires_at=None, finished_at=utc_now()))
    log.info("run_cancelled", spec_id=spec_id, user=user)
    return "cancelled"


def resume_after_budget(settings: Settings, spec_id: int) -> bool:
    """Back to running after `/omoi budget` raised the limit (True if the run was paused)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.run_state != "paused_budget":
            return False
        spec.run_state, spec.run_error, spec.budget_stop, spec.run_finished_at = "running", None, None, None
        spec.run_resumed_at = utc_now()
    log.info("run_resumed_budget", spec_id=spec_id)
    return True


def fail_run(settings: Settings, spec_id: int, reason: str) -> None:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.run_state == "running":
            spec.run_state, spec.run_error, spec.run_finished_at = "failed", reason, utc_now()
    log.warning("run_failed", spec_id=spec_id, reason=reason)


# --- scheduling ---------------------------------------------------------------------------


@dataclass
class Scheduled:
    claimed: list[tuple[str, str]] = field(default_factory=list)  # (task id, lease token)
    retry_in: float | None = None   # when a backed-off task becomes ready
    state: str | None = None        # the run state afterwards


def _heights(tasks: list[SpecTask]) -> dict[str, int]:
    """Length of the longest chain of dependants from each task: the critical path goes first."""
    children: dict[str, list[str]] = {t.task_id: [] for t in tasks}
    for t in tasks:
        for d in t.depends_on:
            children.setdefault(d, []).append(t.task_id)
    memo: dict[str, int] = {}

    def height(tid: str, seen: frozenset = frozenset()) -> int:
        if tid not in memo:
            memo[tid] = 1 + max((height(c, seen | {tid}) for c in children.get(tid, []) if c not in seen), default=0)
        return memo[tid]

    return {t.task_id: height(t.task_id) for t in tasks}


def per_spec_limit(settings: Settings, repo_per_spec: int | None) -> int:
    return max(1, repo_per_spec or settings.max_parallel_tasks_per_spec)


def schedule(settings: Settings, spec_id: int, repo_per_spec: int | None = None, budgets=None) -> Scheduled:
    """Claim the tasks that may start now; finish the run when every task is done. With the repo's
    `budgets`, a reached spend limit pauses the run (`paused_budget`) instead of claiming more."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None:
            return Scheduled()
        installation = spec.installation_id
    key = f"schedule:installation:{installation}"
    owner = owner_id()
    deadline = time.monotonic() + 10
    while not try_acquire(key, owner, 30):
        if time.monotonic() > deadline:
            return Scheduled(retry_in=1.0, state="running")
        time.sleep(0.02)
    try:
        return _schedule_locked(settings, spec_id, installation, repo_per_spec, budgets)
    finally:
        release(key, owner)


def _schedule_locked(settings: Settings, spec_id: int, installation: int | None,
                     repo_per_spec: int | None, budgets=None) -> Scheduled:
    now = utc_now()
    out = Scheduled()
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        out.state = spec.run_state
        if spec.run_state != "running":
            return out
        tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id)).all()
        if tasks and all(t.status == "done" for t in tasks):
            spec.run_state, spec.run_finished_at = "succeeded", now
            out.state = "succeeded"
            log.info("run_succeeded", spec_id=spec_id)
            return out
        running = [t for t in tasks if t.status == "running"]
        busy_in_installation = s.scalar(
            select(func.count()).select_from(SpecTask).join(Spec, Spec.id == SpecTask.spec_id)
            .where(Spec.installation_id == installation, SpecTask.status == "running")) or 0
        room = min(per_spec_limit(settings, repo_per_spec) - len(running),
                   settings.max_parallel_tasks_per_installation - busy_in_installation)
        done = {t.task_id for t in tasks if t.status == "done"}
        busy_files = {f for t in running for f in t.files}
        exclusive = any(not t.files for t in running)  # a task without a declared write set runs alone
        heights = _heights(tasks)
        pending = [t for t in tasks if t.status == "pending" and set(t.depends_on) <= done]
        waits = [(as_utc(t.not_before) - now).total_seconds() for t in pending
                 if t.not_before and as_utc(t.not_before) > now]
        ready = sorted((t for t in pending if not (t.not_before and as_utc(t.not_before) > now)),
                       key=lambda t: (-heights[t.task_id], task_number(t.task_id)))
        if ready and budgets is not None:
            from app.execution import budgets as spend

            hit = spend.status(s, settings, spec, budgets).hit()
            if hit is not None:  # a checkpoint: running tasks finish, nothing new starts
                spec.run_state, spec.budget_stop = "paused_budget", hit
                spec.run_error = f"the {hit['label']} was reached: ${hit['spent_usd']} of ${hit['limit_usd']}"
                out.state = "paused_budget"
                log.warning("run_paused_budget", spec_id=spec_id, **hit)
                return out
        queued_lease = timedelta(seconds=settings.task_lease_seconds * 5)  # waiting for a free worker
        for t in ready:
            if room <= 0 or exclusive:
                break
            files = set(t.files)
            if (not files and (running or out.claimed)) or files & busy_files:
                continue
            token = uuid.uuid4().hex
            won = s.execute(_update(SpecTask).where(
                SpecTask.id == t.id, SpecTask.status == "pending",
                or_(SpecTask.lease_expires_at.is_(None), SpecTask.lease_expires_at < now),
            ).values(status="running", lease_owner=token, lease_expires_at=now + queued_lease, heartbeat_at=None,
                     not_before=None)).rowcount
            if won == 1:
                out.claimed.append((t.task_id, token))
                busy_files |= files
                exclusive = exclusive or not files
                room -= 1
        if waits:
            out.retry_in = max(0.1, min(waits))
        if not running and not out.claimed and not waits and any(t.status == "pending" for t in tasks):
            stuck = sorted((t.task_id for t in tasks if t.status == "pending"), key=task_number)
            spec.run_state, spec.run_finished_at = "failed", now
            spec.run_error = f"tasks {', '.join(stuck)} cannot start: a task they depend on did not finish"
            out.state = "failed"
    for task_id, token in out.claimed:
        log.info("task_claimed", spec_id=spec_id, task=task_id)
        dispatcher.run_task(spec_id, task_id, token)
    if out.retry_in is not None:
        dispatcher.schedule(spec_id, out.retry_in)
    return out


# --- one attempt of one task --------------------------------------------------------------


@dataclass
class Lease:
    spec_id: int
    task_id: str
    row_id: int
    owner: str
    attempt: int


def adopt(settings: Settings, spec_id: int, task_id: str, token: str) -> Lease | None:
    """Take over the claim made by `schedule` (None: not ours any more, e.g. a redelivered message)."""
    mine = f"{token}@{owner_id()}"
    now = utc_now()
    with session_scope(settings.database_url) as s:
        row = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id, SpecTask.task_id == task_id)).first()
        if row is None:
            return None
        won = s.execute(_update(SpecTask).where(
            SpecTask.id == row.id, SpecTask.status == "running", SpecTask.lease_owner == token,
        ).values(lease_owner=mine, heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.task_lease_seconds),
                 attempts=SpecTask.attempts + 1, started_at=now, error=None,
                 trajectory=[], trajectory_at=None)).rowcount  # the guardian judges this attempt only
        if won != 1:
            return None
        attempt = s.scalar(select(SpecTask.attempts).where(SpecTask.id == row.id))
    return Lease(spec_id, task_id, row.id, mine, attempt)


def heartbeat(settings: Settings, lease: Lease) -> bool:
    """Extend the lease; False when it is lost (cancelled, taken over, or the run stopped)."""
    now = utc_now()
    with session_scope(settings.database_url) as s:
        kept = s.execute(_update(SpecTask).where(
            SpecTask.id == lease.row_id, SpecTask.lease_owner == lease.owner, SpecTask.status == "running",
        ).values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.task_lease_seconds))).rowcount
        state = s.scalar(select(Spec.run_state).where(Spec.id == lease.spec_id))
    # A failed run, or one paused at a budget limit, lets running tasks finish.
    return kept == 1 and state in ("running", "failed", "paused_budget")


@dataclass
class Attempt:
    """What one attempt produced."""

    ok: bool
    reason: str | None = None
    retryable: bool = True
    commit_sha: str | None = None
    evidence: list[dict] = field(default_factory=list)
    cost_usd: float = 0.0
    duration_s: float = 0.0
    lost: bool = False  # the lease was lost mid-way: record nothing
    budget_stop: bool = False  # not started: a spend limit was reached (the attempt is not counted)
    discoveries: list = field(default_factory=list)  # app.execution.discovery.Finding reported by the agent
    notes: str | None = None  # an exploration task's report


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
            from app.execution import discovery

            discovery.record(s, settings, lease.spec_id, row.task_id, result.discoveries)
        if result.budget_stop:
            row.status, row.error, row.attempts = "pending", result.reason, max(0, row.attempts - 1)
            outcome = "budget"
        elif result.ok:
            row.status, row.commit_sha, row.error, row.finished_at = "done", result.commit_sha, None, now
            outcome = "done"
        elif result.retryable and row.attempts < settings.task_max_attempts:
            backoff = settings.task_retry_backoff_seconds * 2 ** max(0, row.attempts - 1)
            row.status, row.error, row.not_before = "pending", result.reason, now + timedelta(seconds=backoff)
            outcome = "retry"
        else:
            row.status, row.error, row.finished_at = "failed", result.reason, now
            outcome = "failed"
        attempts, task_id = row.attempts, row.task_id
    log.info("task_attempt_finished", spec_id=lease.spec_id, task=task_id, outcome=outcome, attempt=attempts,
             reason=result.reason)
    if outcome == "failed":
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if result.retryable else ""
        fail_run(settings, lease.spec_id, f"task {task_id} failed{tries}: {result.reason}")
    return outcome


def record_lost_attempt(settings: Settings, lease: Lease, result: Attempt) -> None:
    """An attempt stopped from outside (cancel, guardian, conductor): whoever took the lease decided
    the task's status, but the session's cost and time were spent and count against the budgets."""
    if not result.cost_usd and not result.duration_s:
        return
    with session_scope(settings.database_url) as s:
        s.execute(_update(SpecTask).where(SpecTask.id == lease.row_id).values(
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
            values = ({"status": "failed", "finished_at": now, "error": "its worker stopped responding "
                       f"(lease expired) on attempt {t.attempts}"} if give_up else
                      {"status": "pending", "error": "its worker stopped responding; re-queued"})
            won = s.execute(_update(SpecTask).where(
                SpecTask.id == t.id, SpecTask.status == "running", SpecTask.lease_owner == t.lease_owner,
                SpecTask.lease_expires_at < now,
            ).values(lease_owner=None, lease_expires_at=None, heartbeat_at=None, **values)).rowcount
            if won == 1:
                log.warning("task_lease_expired", spec_id=t.spec_id, task=t.task_id, gave_up=give_up)
                if give_up:
                    failed.append((t.spec_id, t.task_id, t.attempts))
        running = list(s.scalars(select(Spec.id).where(Spec.run_state == "running")).all())
    for spec_id, task_id, attempts in failed:
        fail_run(settings, spec_id, f"task {task_id} failed after {attempts} attempts: its worker stopped "
                                    "responding (lease expired)")
    return running
