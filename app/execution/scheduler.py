"""Which tasks of a running spec may start now, and claiming them.

`schedule` finds the ready tasks (all dependencies done, backoff over) and claims as many as the
limits allow: per spec (`max_parallel_tasks_per_spec`, or the repo's `concurrency.per_spec`), per
installation, and never two tasks whose file write-sets overlap. A claim is one
`UPDATE ... WHERE status='pending'` (rowcount 1 wins) that leaves a lease token; the token travels
with the Celery message and the worker adopts it (app/execution/leases.py). Scheduling is serialised
per installation with a database lock; a caller that finds it held leaves a mark for its spec and
returns at once (tasks finishing together do not queue on the lock, polling it with writes), and the
holder schedules every marked spec again once it released the lock. When every task is done the run
has succeeded; when pending tasks can never start it has failed; a reached spend limit pauses it
(`paused_budget`).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import load_only

from app.config import Settings
from app.db.locks import clear, owner_id, release, try_acquire
from app.db.models import IssueLock, Spec, SpecTask
from app.db.session import session_scope
from app.execution import budgets as spend
from app.execution.leases import update
from app.execution.task_ids import task_number
from app.observability.logs import get_logger
from app.text.rendering import reason, stored
from app.timeutil import as_utc, utc_now

log = get_logger("omoi.orchestrator")
LOCK_SECONDS = 30
MARK_SECONDS = 120  # a mark left for a holder that died is dropped; the health sweep schedules every run anyway


class Dispatcher(Protocol):
    def run_task(self, spec_id: int, task_id: str, token: str) -> None: ...
    def schedule(self, spec_id: int, delay: float) -> None: ...


class CeleryDispatcher:
    def run_task(self, spec_id: int, task_id: str, token: str) -> None:
        from app import jobs  # lazy: Celery is loaded only when dispatching through it (benchmarks use threads)

        jobs.run_task(spec_id=spec_id, task_id=task_id, lease_token=token)

    def schedule(self, spec_id: int, delay: float) -> None:
        from app import jobs  # lazy: Celery is loaded only when dispatching through it (benchmarks use threads)

        jobs.schedule(spec_id=spec_id, countdown=max(delay, 0.0))


# Replaced only by benchmarks/dag_run.py (threads instead of Celery); everything else uses Celery.
dispatcher: Dispatcher = CeleryDispatcher()


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


def schedule(settings: Settings, spec_id: int, per_spec: int, budgets=None) -> Scheduled:
    """Claim the tasks that may start now, at most `per_spec` of this spec running at once (the
    repository's effective `concurrency.per_spec`); finish the run when every task is done. With the
    repo's `budgets`, a reached spend limit pauses the run (`paused_budget`) instead of claiming more."""
    with session_scope(settings.database_url) as s:
        found = s.execute(select(Spec.installation_id).where(Spec.id == spec_id)).first()
    if found is None:
        return Scheduled()
    installation = found[0]
    key, mark, owner = f"schedule:installation:{installation}", _mark(installation, spec_id), owner_id()
    out, claimed = Scheduled(state="deferred"), []
    for _ in range(5):
        if not try_acquire(key, owner, LOCK_SECONDS):
            try_acquire(mark, owner, MARK_SECONDS)  # the holder schedules this spec again after it released
            if not try_acquire(key, owner, LOCK_SECONDS):  # (unless it released before the mark was there)
                log.info("schedule_deferred_busy", spec_id=spec_id)
                break
        clear(mark)
        try:
            out = _schedule_locked(settings, spec_id, installation, max(1, per_spec), budgets)
        finally:
            release(key, owner)
        claimed += out.claimed
        if not _marked_again(installation, spec_id):
            break
    else:  # marked again in every round: the next round is a message, so no mark is left without a scheduler
        if clear(mark):
            dispatcher.schedule(spec_id, 0.0)
    out.claimed = claimed  # every task this call claimed and dispatched, whatever the round
    return out


def _marks(installation: int | None) -> str:
    return f"schedule-wanted:installation:{installation}:spec:"


def _mark(installation: int | None, spec_id: int) -> str:
    return f"{_marks(installation)}{spec_id}"


def _marked_again(installation: int | None, spec_id: int) -> bool:
    """After releasing the lock: the specs whose schedulers found it held. Each mark is taken by whoever
    deletes it; another spec is scheduled through the dispatcher (with its own repository's settings).
    True when this spec was marked: the caller schedules it again in place."""
    with session_scope() as s:
        keys = s.scalars(select(IssueLock.key).where(IssueLock.key.like(_marks(installation) + "%"))).all()
    again = False
    for key in keys:
        other = int(key.rsplit(":", 1)[1])
        if other == spec_id:
            again = True
        elif clear(key):
            dispatcher.schedule(other, 0.0)
    return again


# What scheduling reads of each task (not its evidence, transcript or prompt: JSON it would only decode).
_SCHEDULING = load_only(SpecTask.id, SpecTask.task_id, SpecTask.status, SpecTask.depends_on, SpecTask.files,
                        SpecTask.commit_sha, SpecTask.not_before, SpecTask.lease_expires_at)


def _schedule_locked(settings: Settings, spec_id: int, installation: int | None, per_spec: int,
                     budgets=None) -> Scheduled:
    now = utc_now()
    out = Scheduled()
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        out.state = spec.run_state
        if spec.run_state != "running":
            return out
        tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id).options(_SCHEDULING)).all()
        if tasks and all(t.status == "done" for t in tasks):
            spec.run_state, spec.run_finished_at = "succeeded", now
            out.state = "succeeded"
            log.info("run_succeeded", spec_id=spec_id)
            return out
        running = [t for t in tasks if t.status == "running"]
        busy_in_installation = s.scalar(
            select(func.count()).select_from(SpecTask).join(Spec, Spec.id == SpecTask.spec_id)
            .where(Spec.installation_id == installation, SpecTask.status == "running")) or 0
        room = min(per_spec - len(running),
                   settings.max_parallel_tasks_per_installation - busy_in_installation)
        # A running task whose commit is recorded landed clean (app/execution/integration.py): its
        # change is on the branch as it was checked, so its dependants and its files are free.
        landed = {t.task_id for t in running if t.commit_sha}
        done = {t.task_id for t in tasks if t.status == "done"} | landed
        working = [t for t in running if t.task_id not in landed]
        busy_files = {f for t in working for f in t.files}
        exclusive = any(not t.files for t in working)  # a task without a declared write set runs alone
        heights = _heights(tasks)
        pending = [t for t in tasks if t.status == "pending" and set(t.depends_on) <= done]
        waits = [(as_utc(t.not_before) - now).total_seconds() for t in pending
                 if t.not_before and as_utc(t.not_before) > now]
        ready = sorted((t for t in pending if not (t.not_before and as_utc(t.not_before) > now)),
                       key=lambda t: (-heights[t.task_id], task_number(t.task_id)))
        if ready and budgets is not None:
            hit = spend.status(s, settings, spec, budgets).hit()
            if hit is not None:  # a checkpoint: running tasks finish, nothing new starts
                spec.run_state, spec.budget_stop = "paused_budget", hit
                spec.run_error, spec.run_error_params = stored(reason(
                    "run/budget_reached", limit=hit["limit"], spent_usd=hit["spent_usd"], limit_usd=hit["limit_usd"]))
                out.state = "paused_budget"
                log.warning("run_paused_budget", spec_id=spec_id, **hit)
                return out
        queued_lease = timedelta(seconds=settings.task_lease_seconds * 5)  # waiting for a free worker
        for t in ready:
            if room <= 0 or exclusive:
                break
            files = set(t.files)
            if (not files and (working or out.claimed)) or files & busy_files:
                continue
            token = uuid.uuid4().hex
            won = s.execute(update(SpecTask).where(
                SpecTask.id == t.id, SpecTask.status == "pending",
                or_(SpecTask.lease_expires_at.is_(None), SpecTask.lease_expires_at < now),
            ).values(status="running", lease_owner=token, lease_expires_at=now + queued_lease, heartbeat_at=None,
                     not_before=None, commit_sha=None)).rowcount  # commit_sha: set again when this attempt lands
            if won == 1:
                out.claimed.append((t.task_id, token))
                busy_files |= files
                exclusive = exclusive or not files
                room -= 1
        if waits:
            out.retry_in = max(0.1, min(waits))
        stopped = sorted((t.task_id for t in tasks if t.status == "stopped"), key=task_number)
        if not running and not out.claimed and not waits and stopped:  # what is left waits on a person
            spec.run_state = "paused"
            spec.run_error, spec.run_error_params = stored(reason("run/waiting_on_stopped", tasks=stopped))
            out.state = "paused"
        elif not running and not out.claimed and not waits and any(t.status == "pending" for t in tasks):
            stuck = sorted((t.task_id for t in tasks if t.status == "pending"), key=task_number)
            spec.run_state, spec.run_finished_at = "failed", now
            spec.run_error, spec.run_error_params = stored(reason("run/tasks_blocked", tasks=stuck))
            out.state = "failed"
    for task_id, token in out.claimed:
        log.info("task_claimed", spec_id=spec_id, task=task_id)
        dispatcher.run_task(spec_id, task_id, token)
    if out.retry_in is not None:
        dispatcher.schedule(spec_id, out.retry_in)
    return out
