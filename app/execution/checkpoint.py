"""Budgets and pauses that never lose work: a session that reaches a limit, or whose run was paused,
stops at a checkpoint and what it changed goes to the branch as a work-in-progress commit.

- `session_cap`: the most the next session may spend, `Status.remaining()` (app/execution/budgets.py):
  tasks running together cannot spend past the spec's limit, because each one's cap is what was left
  when it started, never more than the per-task limit.
- `stop_of`: whether an attempt that came back from the agent ends at a checkpoint: the run was paused
  (the heartbeat saw it and the agent's hook ended the session after its tool call), or the session
  reached its dollar or minute cap. Such a stop pauses the run (`paused_budget` for a limit) instead
  of failing it.
- `keep`: the session's diff is committed by omoi's host clone and pushed with the other waiting
  changes (app/execution/integration.py: never a force-push, no credential in the sandbox). The commit
  has no `Omoi-Task` trailer (it is not the task's commit) but an `Omoi-WIP` one; the task goes back to
  pending without counting the attempt, and its next attempt starts from the branch head, i.e. from
  the work-in-progress commit.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

from app.agent.session import AgentResult
from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.execution import budgets, integration, policy
from app.execution.gitwork import GitError
from app.execution.leases import Attempt, Lease
from app.observability.logs import get_logger
from app.text.rendering import reason, render, stored
from app.timeutil import utc_now

log = get_logger("omoi.checkpoint")


@dataclass
class Stop:
    kind: str                  # paused | task | task_minutes | spec
    hit: dict | None = None    # for `specs.budget_stop` (None: paused by a person)


WIP_TRAILER = "Omoi-WIP"  # templates/execution/wip_commit.txt.j2


def wip_commit(clone, task_key: str) -> str | None:
    """The newest work-in-progress commit of `task_key` on the clone's HEAD (blocking: call it in a thread).
    When the next attempt changes nothing more, that commit holds the task's whole change."""
    return clone.find_trailer(WIP_TRAILER, task_key, "HEAD")


async def until_checkpoint(session, beat):
    """Run the agent `session` until it ends or reaches a checkpoint: once the agent's hook handed it the
    `Checkpoint` (right after a tool call finished, app/agent/hooks.py), the session is ended here, so
    nothing more runs in the sandbox while its change is taken. The CLI is not relied on to stop."""
    task = asyncio.ensure_future(session)
    while not task.done():
        if beat.checkpointed:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - ended on purpose
                pass
            return AgentResult(ok=False, cost_usd=beat.spent_usd, error=reason("task/checkpoint", kind="paused", sha=None),
                               subtype="checkpoint")
        await asyncio.wait({task}, timeout=0.1)
    return task.result()


def session_cap(status: budgets.Status) -> float:
    """The next session's `max_budget_usd`: what is left under every limit, at most the task limit."""
    return float(max(status.remaining(), Decimal("0.01")))


def stop_of(result, paused: bool, cap_usd: float, status: budgets.Status) -> Stop | None:
    """Why the attempt stops at a checkpoint, or None (it goes on as usual)."""
    code = getattr(result.error, "code", None) if result is not None else None
    if result is not None and result.subtype == "error_max_budget_usd":
        spec_bound = status.spec_limit - status.spec_spent <= status.task_usd
        kind = "spec" if spec_bound else "task"
        limit = status.spec_limit if spec_bound else status.task_usd
        spent = status.spec_spent + Decimal(str(result.cost_usd or 0)) if spec_bound else Decimal(str(cap_usd))
        return Stop(kind, {"limit": kind, "spent_usd": f"{spent:.2f}", "limit_usd": f"{limit:.2f}",
                           "spec_spent_usd": f"{status.spec_spent + Decimal(str(result.cost_usd or 0)):.2f}"})
    if code == "agent/timed_out":
        seconds = float(result.error.params.get("seconds") or status.task_minutes * 60)  # the session's time limit
        return Stop("task_minutes", {"limit": "task_minutes", "minutes": f"{seconds / 60:g}",
                                     "spent_usd": f"{Decimal(str(result.cost_usd or 0)):.2f}",
                                     "limit_usd": f"{status.task_usd:.2f}", "spec_spent_usd": f"{status.spec_spent:.2f}"})
    if paused:
        return Stop("paused")
    return None


def pause_for(settings: Settings, spec_id: int, stop: Stop) -> None:
    """A limit reached inside a session pauses the run (a person's pause already did)."""
    if stop.hit is None:
        return
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.run_state in ("running", "paused"):
            spec.run_state, spec.budget_stop = "paused_budget", stop.hit
            spec.run_error, spec.run_error_params = stored(reason("run/budget_reached", limit=stop.hit["limit"],
                                                                  spent_usd=stop.hit["spent_usd"],
                                                                  limit_usd=stop.hit["limit_usd"]))
    log.warning("run_paused_budget", spec_id=spec_id, at="session", **stop.hit)


async def keep(settings: Settings, lease: Lease, sandbox, clone, ctx: dict, cfg, token: str, stop: Stop,
               cost: float, lost) -> Attempt:
    """Push the session's change as a work-in-progress commit, then pause the run (for a limit); the
    attempt is not counted."""
    try:
        return await _keep(settings, lease, sandbox, clone, ctx, cfg, token, stop, cost, lost)
    finally:
        pause_for(settings, lease.spec_id, stop)


async def _keep(settings: Settings, lease: Lease, sandbox, clone, ctx: dict, cfg, token: str, stop: Stop,
                cost: float, lost) -> Attempt:
    why = reason("task/checkpoint", kind=stop.kind, sha=None)
    patch = "" if ctx["task"]["kind"] == "explore" else await sandbox.diff()  # an exploration changes nothing
    if not patch.strip():
        return Attempt(ok=False, budget_stop=True, reason=why, cost_usd=cost)
    message = render("execution/wip_commit.txt.j2", kind=stop.kind, at=utc_now().strftime("%Y-%m-%d %H:%M UTC"), **ctx)
    try:
        paths = set(ctx["files"]) | await asyncio.to_thread(clone.patch_paths, patch)
    except GitError:
        paths = set(ctx["files"])
    row = await asyncio.to_thread(integration.enqueue, settings, lease, base_sha=sandbox.base_sha, patch=patch,
                                  message=message, paths=paths, wip=True)
    landed = await integration.land(settings, lease.spec_id, row, integration.lock_key(ctx["full_name"], ctx["branch"]),
                                    clone, policy.Limits.for_repo(cfg),
                                    policy.secrets_from_settings(settings, extra=[token]), lost, lease.owner)
    if landed is None or landed.refused or landed.failed or not landed.sha:
        log.warning("checkpoint_not_pushed", spec_id=lease.spec_id, task=lease.task_id,
                    why=(landed.refused or landed.failed).to_json() if landed and (landed.refused or landed.failed) else None)
        return Attempt(ok=False, budget_stop=True, reason=why, cost_usd=cost)
    log.info("checkpoint_pushed", spec_id=lease.spec_id, task=lease.task_id, commit=landed.sha, kind=stop.kind)
    return Attempt(ok=False, budget_stop=True, reason=reason("task/checkpoint", kind=stop.kind, sha=landed.sha),
                   cost_usd=cost)
