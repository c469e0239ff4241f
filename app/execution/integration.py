"""Landing verified task commits on the run's branch: the tasks that finish together push together.

A task whose change passed its checks does not push on its own (pushes to one branch serialise and
every one after the first rebases). It leaves its change in `task_integrations` (`enqueue`) and
waits (`land`). Whoever holds the branch's push lock is the integrator: it takes every waiting row
whose attempt still holds its task, commits them in order on the branch head and pushes once
(app/execution/batch_push.py), then writes each row's outcome. A waiting task that finds
the lock free becomes the next integrator, so no row waits for a process that died: a failed push
leaves the rows waiting, and the next holder of the lock pushes them. Rows of attempts that lost
their lease (cancelled, taken over, dead) are dropped, never pushed.

A task whose agent has finished announces its change (`announce`: a `preparing` row) before its diff
and verify commands run; an integrator that finds changes announced waits for them a moment
(GATHER_SECONDS) so that the tasks finishing together go in one push, not one push each.

A task that landed clean (no rebase touched its files) has its commit recorded by the integrator, and
the integrator schedules the run: its dependants start while its own worker is still settling.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

from sqlalchemy import bindparam, delete, select

from app.config import Settings
from app.db.locks import owner_id, release, try_acquire
from app.db.models import IssueLock, Spec, SpecTask, TaskIntegration
from app.db.session import connection, session_scope
from app.execution import policy
from app.execution.batch_push import Waiting, push_together
from app.execution.gitwork import Clone
from app.execution.leases import Lease, update
from app.observability.logs import get_logger
from app.text.rendering import Reason
from app.timeutil import as_utc, utc_now

log = get_logger("omoi.integration")
LOCK_TTL = 120  # a holder that died keeps the lock at most this long
POLL = 0.04  # each waiting task reads its row and the lock this often (no writes while it waits)
MAX_FAILURES = 3  # integrations this attempt tried and saw fail before it gives up (the task is retried)
HOLDS = ("running", "failed", "paused_budget", "paused")  # run states in which a running task may still land
GATHER_SECONDS = 0.3  # an integrator waits at most this long for announced changes (a push costs more)
GATHER_POLL = 0.02


@dataclass
class Landed:
    """What became of one task's waiting change."""
    sha: str | None
    rebased: bool = False
    touched: bool = False
    existing: bool = False
    refused: Reason | None = None
    failed: Reason | None = None


class _Live(NamedTuple):
    """A waiting row the integrator pushes."""
    id: int
    waiting: Waiting
    task_id: str
    lease_owner: str | None
    wip: bool


def lock_key(full_name: str, branch: str) -> str:
    return f"push:{full_name}:{branch}"


def _insert(s, lease: Lease, state: str, change: dict) -> int:
    row = TaskIntegration(spec_id=lease.spec_id, task_id=lease.task_id, lease_owner=lease.owner, state=state,
                          change=change)
    s.add(row)
    s.flush()
    return row.id


def announce(settings: Settings, lease: Lease) -> int:
    """The task's change is on its way (its diff and checks run now): integrators wait for it a moment."""
    with session_scope(settings.database_url) as s:
        return _insert(s, lease, "preparing", {})


def withdraw(settings: Settings, row_id: int) -> None:
    """The announced change will not come (its checks failed, the attempt ended)."""
    with session_scope(settings.database_url) as s:
        s.execute(delete(TaskIntegration).where(TaskIntegration.id == row_id, TaskIntegration.state == "preparing"))


def enqueue(settings: Settings, lease: Lease, *, base_sha: str, patch: str, message: str,
            paths: Sequence[str], announced: int | None = None, wip: bool = False) -> int:
    """Leave the change for the integrator (in the row `announce` made, when there is one). A `wip`
    change (work kept at a checkpoint, app/execution/checkpoint.py) is pushed like any other but
    never hands its task's dependants over: the task is not done."""
    change = {"base": base_sha, "patch": patch, "message": message, "paths": sorted(set(paths)), "wip": wip}
    with session_scope(settings.database_url) as s:
        # The row is this attempt's only while it holds its lease (SQLite may give a deleted row's id again).
        if announced is not None and s.execute(update(TaskIntegration).where(
                TaskIntegration.id == announced, TaskIntegration.state == "preparing",
                TaskIntegration.spec_id == lease.spec_id, TaskIntegration.task_id == lease.task_id,
                TaskIntegration.lease_owner == lease.owner).values(
                state="waiting", change=change)).rowcount == 1:
            return announced
        return _insert(s, lease, "waiting", change)


# One read per wait: the row's state and whether the push lock is held (built once: it runs every POLL).
_POLL = select(TaskIntegration.state, TaskIntegration.lease_owner,
               select(IssueLock.expires_at).where(IssueLock.key == bindparam("key")).scalar_subquery()
               ).where(TaskIntegration.id == bindparam("id"))


def _poll(settings: Settings, row_id: int, key: str, lease_owner: str | None) -> tuple[str | None, bool]:
    """The row's state (None: it was dropped, or is another attempt's) and whether someone holds `key`;
    a read, without writes or an ORM session: every waiting task runs it every POLL."""
    with connection(settings.database_url) as conn:
        row = conn.execute(_POLL, {"id": row_id, "key": key}).first()
    if row is None or (lease_owner is not None and row[1] != lease_owner):
        return None, False
    return row[0], row[2] is not None and as_utc(row[2]) > utc_now()


def _take(settings: Settings, row_id: int, lease_owner: str | None = None) -> Landed | None | bool:
    """The row's outcome (deleting the row), False while it waits, None when it was dropped (a row of
    that id with another attempt's lease is another row: SQLite may give a deleted row's id again)."""
    with session_scope(settings.database_url) as s:
        row = s.get(TaskIntegration, row_id)
        if row is None or (lease_owner is not None and row.lease_owner != lease_owner):
            return None
        if row.state == "waiting":
            return False
        res = row.result or {}
        why = Reason(res["reason"]["code"], res["reason"]["params"]) if res.get("reason") else None
        landed = Landed(res.get("sha"), res.get("rebased", False), res.get("touched", False), res.get("existing", False),
                        refused=why if row.state == "refused" else None, failed=why if row.state == "failed" else None)
        s.delete(row)
        return landed


def _drop(settings: Settings, row_id: int, lease_owner: str | None = None) -> None:
    mine = [TaskIntegration.lease_owner == lease_owner] if lease_owner is not None else []
    with session_scope(settings.database_url) as s:
        s.execute(delete(TaskIntegration).where(TaskIntegration.id == row_id, TaskIntegration.state == "waiting", *mine))


def integrate(settings: Settings, spec_id: int, clone: Clone, limits: policy.Limits | None,
              secrets: Sequence[str]) -> int:
    """Holding the branch's push lock: push every waiting change of the run together. Returns how many
    tasks landed clean (see below). Blocking; call it in a thread. A git failure (the network, a push
    rejected too often) raises and leaves the rows waiting for the next integrator.

    A change pushed without a rebase touching its task's files (and not found already pushed, and not
    work in progress) passed its checks as it is on the branch: its task's commit is recorded at once,
    so the scheduler may start the task's dependants before the task's own worker has recorded it."""
    gather_until = time.monotonic() + GATHER_SECONDS
    while True:
        with session_scope(settings.database_url) as s:
            rows = s.scalars(select(TaskIntegration).where(TaskIntegration.spec_id == spec_id,
                                                           TaskIntegration.state.in_(("waiting", "preparing")))
                             .order_by(TaskIntegration.id)).all()
            if not rows:
                return 0
            holders = {(t, o) for t, o in s.execute(select(SpecTask.task_id, SpecTask.lease_owner).where(
                SpecTask.spec_id == spec_id, SpecTask.status == "running"))}
            run_state = s.scalar(select(Spec.run_state).where(Spec.id == spec_id))
            stale = [r.id for r in rows if run_state not in HOLDS or (r.task_id, r.lease_owner) not in holders]
            if stale:  # their attempts lost the task: nothing of theirs is pushed
                s.execute(delete(TaskIntegration).where(TaskIntegration.id.in_(stale)))
            coming = any(r.state == "preparing" and r.id not in stale for r in rows)
            live = [_Live(r.id, Waiting(f"{spec_id}/{r.task_id}", r.change["base"], r.change["patch"],
                                        r.change["message"], list(r.change["paths"])),
                          r.task_id, r.lease_owner, bool(r.change.get("wip")))
                    for r in rows if r.id not in stale and r.state == "waiting"]
        if not coming or time.monotonic() >= gather_until:
            break
        time.sleep(GATHER_POLL)  # the changes announced are a diff and a verify away: one push for all
    if not live:
        return 0
    results = push_together(clone, [row.waiting for row in live], limits, secrets)
    clean = 0
    with session_scope(settings.database_url) as s:
        for row, res in zip(live, results):
            why = res.refused or (res.failed.map_text(lambda t: t[:760]) if res.failed else None)
            state = "refused" if res.refused else "failed" if res.failed else "pushed"
            s.execute(update(TaskIntegration).where(TaskIntegration.id == row.id).values(state=state, result={
                "sha": res.sha, "rebased": res.rebased, "touched": res.touched, "existing": res.existing,
                "reason": why.to_json() if why else None}))
            if state == "pushed" and res.sha and not res.touched and not res.existing and not row.wip:
                clean += s.execute(update(SpecTask).where(
                    SpecTask.spec_id == spec_id, SpecTask.task_id == row.task_id,
                    SpecTask.lease_owner == row.lease_owner, SpecTask.status == "running",
                ).values(commit_sha=res.sha)).rowcount
    log.info("tasks_integrated", spec_id=spec_id, tasks=[row.waiting.key for row in live],
             pushed=sum(1 for r in results if r.sha and not r.existing))
    return clean


async def land(settings: Settings, spec_id: int, row_id: int, key: str, clone: Clone,
               limits: policy.Limits | None, secrets: Sequence[str], lost: threading.Event,
               lease_owner: str | None = None, landed_clean: Callable[[], None] | None = None) -> Landed | None:
    """Wait until the change `enqueue` left in row `row_id` (for the attempt holding `lease_owner`) is
    settled, integrating whenever the branch's push lock is free. None: the attempt lost its task
    before its change was pushed. As the integrator, `landed_clean` is called (the lock released)
    when tasks landed clean: their dependants may be scheduled."""
    owner, failures = owner_id(), 0
    while True:
        state, held = await asyncio.to_thread(_poll, settings, row_id, key, lease_owner)
        if state is None:
            return None
        if state != "waiting":
            return await asyncio.to_thread(_take, settings, row_id, lease_owner) or None
        if lost.is_set():
            await asyncio.to_thread(_drop, settings, row_id, lease_owner)
            return await asyncio.to_thread(_take, settings, row_id, lease_owner) or None  # it may have landed meanwhile
        if not held and await asyncio.to_thread(try_acquire, key, owner, LOCK_TTL):
            clean = 0
            try:
                clean = await asyncio.to_thread(integrate, settings, spec_id, clone, limits, secrets)
            except Exception as exc:  # noqa: BLE001 - the rows still wait; a later integrator retries
                failures += 1
                log.warning("integration_failed", spec_id=spec_id, error=str(exc)[:300], failures=failures)
                if failures >= MAX_FAILURES:
                    await asyncio.to_thread(_drop, settings, row_id, lease_owner)
                    raise
                await asyncio.sleep(failures)
            finally:
                await asyncio.to_thread(release, key, owner)
            if clean and landed_clean is not None:
                await asyncio.to_thread(landed_clean)
            continue
        await asyncio.sleep(POLL)
