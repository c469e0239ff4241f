"""One attempt of one task: sandbox -> agent -> diff -> policy -> verify -> omoi commits and pushes.

The agent never sees a token: the sandbox is cloned on the host (token only in git's environment),
the agent's environment is built from scratch (app/agent/session.py), and the commit is made by omoi in a
separate host clone (app/execution/gitwork.py); the tasks that finish together are pushed together
(app/execution/integration.py). A task is done only once its verify commands passed with its files as they
are in the pushed commit (re-run in a fresh sandbox when a rebase changed one of the task's files).
"""
from __future__ import annotations

import asyncio
import threading
import time
import traceback
from typing import Awaitable, Callable

from sqlalchemy import select

from app.agent.session import AgentResult, run_agent
from app.config import Settings, get_settings
from app.db.models import Spec, SpecStage, SpecTask
from app.db.session import session_scope
from app.execution import (attempt_feedback, budgets, checkpoint, diagnosis, discovery, integration, orchestrator,
                           policy, repo_guidance, scheduler, validation)
from app.execution.gitwork import Clone, GitError
from app.execution.leases import Attempt, Heartbeat, Lease, adopt
from app.github import bot_identity, repo_config, url_with_token
from app.github.client import installation_client
from app.observability.logs import get_logger, redact
from app.planning.schemas import Requirements
from app.sandbox import make_sandbox
from app.sandbox.base import SandboxFileMissing
from app.sandbox.local import SandboxUnavailable
from app.text.rendering import Reason, reason, render, render_line

log = get_logger("omoi.task_runner")
EVIDENCE_TAIL = 1500

# The agent session; benchmarks/dag_run.py swaps in a stand-in of fixed duration.
AgentRunner = Callable[..., Awaitable[AgentResult]]
agent_runner: AgentRunner = run_agent


def run_task(spec_id: int, task_id: str, token: str) -> str:
    """Celery entry point: adopt the claim, run one attempt, record it, schedule what comes next."""
    settings = get_settings()
    lease = adopt(settings, spec_id, task_id, token)
    if lease is None:
        return "not-ours"
    beat = Heartbeat(settings, lease)
    beat.start()
    started = time.monotonic()
    notes = attempt_feedback.Notes()
    result = None
    try:
        result = asyncio.run(_attempt(settings, lease, beat, notes))
    except Exception as exc:  # noqa: BLE001 - every failure is recorded and reported
        detail = redact("".join(traceback.format_exception_only(type(exc), exc)).strip())[:800]
        log.error("task_crashed", spec_id=spec_id, task=task_id, error=detail)
        result = Attempt(ok=False, reason=reason("task/crashed", detail=detail))
    finally:
        if result is not None:  # recorded for the next attempt (and diagnosed after the last) while the lease lives
            diagnosis.settle(settings, lease, result, notes)
        beat.stop()
    result.duration_s = time.monotonic() - started
    result.cost_usd = result.cost_usd or beat.spent_usd  # a session stopped before its result still cost money
    if result.lost:
        orchestrator.record_lost_attempt(settings, lease, result)
        outcome = "lost"
    else:
        outcome = orchestrator.finish_attempt(settings, lease, result)
    orchestrator.advance(settings, spec_id)
    return outcome


# --- the attempt ------------------------------------------------------------------------------


def _task_context(settings: Settings, lease: Lease) -> dict:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, lease.spec_id)
        task = s.get(SpecTask, lease.row_id)
        stages = {r.stage: r for r in s.scalars(select(SpecStage).where(
            SpecStage.spec_id == spec.id, SpecStage.status == "approved"))}
        criteria = []
        if "requirements" in stages:
            by_id = Requirements.model_validate(stages["requirements"].document).criteria()
            criteria = [by_id[c][1] for c in task.covers if c in by_id]
        design = stages["design"].document if "design" in stages else {}
        # The dependencies' commits: a host mirror that holds them all needs no fetch for this task.
        pushed = list(s.scalars(select(SpecTask.commit_sha).where(
            SpecTask.spec_id == spec.id, SpecTask.task_id.in_(task.depends_on or []), SpecTask.commit_sha.is_not(None))))
        return {
            "spec_id": spec.id, "issue_number": spec.issue_number, "title": spec.title, "branch": spec.branch,
            "full_name": spec.repo_full_name, "installation_id": spec.installation_id,
            "task": {"id": task.task_id, "title": task.title, "description": task.description,
                     "covers": list(task.covers), "verify": list(task.verify), "files": list(task.files),
                     "kind": task.kind or "implement", "origin": task.origin or "plan"},
            "guidance": task.guidance, "discoveries_file": discovery.RESULT_FILE,
            "criteria": criteria, "files": list(task.files), "verify": list(task.verify),
            "design": design.get("overview", ""), "dependency_commits": pushed,
            "last_attempt": attempt_feedback.previous(s, settings, spec.id, task.task_id),
            "seq": attempt_feedback.next_seq(s, spec.id, task.task_id), "repo_guidance": [],
        }



async def _verify(sandbox, commands: list[str], settings: Settings, rerun: bool = False) -> tuple[list[dict], Reason | None]:
    evidence, failure = [], None
    for command in commands:
        res = await sandbox.exec(command, timeout=settings.verify_timeout_seconds)
        output = (res.stdout + ("\n" + res.stderr if res.stderr else "")).strip()
        evidence.append({"command": command, "exit_code": res.exit_code, "timed_out": res.timed_out,
                         "tail": output[-EVIDENCE_TAIL:], "seconds": round(res.duration_s, 2), "rerun": rerun})
        if not res.ok:
            failure = reason("task/verify_failed", command=command, timed_out=res.timed_out, exit_code=res.exit_code,
                             output=output[-300:])
            break
    return evidence, failure


async def _watch(coro: Awaitable, lost: threading.Event):
    """Run `coro`, cancelling it when the lease is lost (the run was cancelled or taken over)."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        if lost.is_set():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            return None
        await asyncio.wait({task}, timeout=0.2)
    return task.result()


async def _attempt(settings: Settings, lease: Lease, beat: Heartbeat, notes: attempt_feedback.Notes) -> Attempt:
    ctx = _task_context(settings, lease)
    ctx["attempt"], notes.seq = lease.attempt, ctx.pop("seq")
    key = f"{lease.spec_id}/{lease.task_id}"
    async with installation_client(settings, ctx["installation_id"]) as gh:
        repo = await gh.getitem("/repos/{owner}/{repo}", url_vars=dict(zip(("owner", "repo"), ctx["full_name"].split("/", 1))))
        cfg = await repo_config.load_effective(gh, settings, ctx["full_name"])
        token = gh.oauth_token
    with session_scope(settings.database_url) as s:  # the checkpoint before every attempt
        spend = budgets.status(s, settings, s.get(Spec, lease.spec_id), cfg.budgets)
        hit, cap = spend.hit(), checkpoint.session_cap(spend)  # together the sessions stay under the spec limit
    if hit is not None:
        return Attempt(ok=False, budget_stop=True, reason=reason("task/budget_not_started", limit=hit["limit"]))
    explore = ctx["task"]["kind"] == "explore"
    provider = make_sandbox(settings)
    clone = Clone(url=repo["clone_url"], token=token, branch=ctx["branch"], author=bot_identity(settings.app_name, settings.github_app_id))
    bound = log.bind(spec_id=lease.spec_id, task=lease.task_id, attempt=lease.attempt)
    destroying = announced = None
    try:
        # With the host's mirror fresh, the sandbox and omoi's clone are copied from it side by side.
        head = await asyncio.to_thread(clone.refresh, ctx["dependency_commits"])
        cloning = asyncio.ensure_future(asyncio.to_thread(clone.clone, refreshed=head is not None))
        # the repository's CLAUDE.md & co. from its default branch in the mirror just refreshed, as data
        ctx["repo_guidance"] = await asyncio.to_thread(repo_guidance.read, settings, repo["clone_url"],
                                                       repo.get("default_branch"), token)
        head = head or await cloning
        creating = asyncio.ensure_future(provider.create(repo_url=url_with_token(repo["clone_url"], token), ref=head,
                                                         label=f"spec-{key}"))
        try:
            await cloning
            existing = await asyncio.to_thread(clone.find_task_commit, key, "HEAD")
        except BaseException:
            await _discard(creating)
            raise
        try:
            sandbox = await creating
        except SandboxUnavailable as exc:  # fail closed: nothing untrusted runs unconfined; retrying cannot help
            bound.error("task_sandbox_unavailable", error=str(exc))
            return Attempt(ok=False, retryable=False, reason=reason("task/sandbox_unavailable", detail=str(exc)))
        if existing:  # an earlier attempt pushed and then died: verify that commit, commit nothing new
            await sandbox.destroy()
            bound.info("task_commit_found", commit=existing)
            return await _verify_pushed(settings, provider, repo, token, ctx, existing, [], 0.0, key)
        try:
            setup_evidence, setup_failure = await _setup(sandbox, cfg.setup)
            if setup_failure:
                return Attempt(ok=False, reason=setup_failure, evidence=setup_evidence)
            prompt = render("execution/task_prompt.md.j2", workdir=sandbox.agent_cwd, sandbox_id=sandbox.id, **ctx)
            reported: list[discovery.Finding] = []
            result = await _watch(checkpoint.until_checkpoint(agent_runner(
                mode="explore" if explore else "implement", prompt=prompt, sandbox=sandbox,
                settings=settings, max_turns=settings.agent_max_turns, max_budget_usd=cap,
                timeout_s=min(settings.agent_timeout_seconds, cfg.budgets.task_minutes * 60),
                on_message=_observer(beat), on_cost=_cost_observer(beat), redirects=beat.next_redirect,
                extra_tools=[discovery.report_tool(reported)],
            ), beat), beat.lost)
            if result is None:
                return Attempt(ok=False, lost=True, reason=reason("task/lease_lost"))
            cost = result.cost_usd
            stop = checkpoint.stop_of(result, beat.checkpointed, cap, spend)
            if stop is not None:  # paused, or a dollar/minute cap: the work so far goes to the branch as WIP
                return await checkpoint.keep(settings, lease, sandbox, clone, ctx, cfg, token, stop, cost, beat.lost)
            if result.ok and not explore:  # an integrator about to push waits a moment for this change
                announced = await asyncio.to_thread(integration.announce, settings, lease)
            found = (reported + ([] if explore else await _read_discoveries(sandbox)))[:discovery.MAX_FINDINGS]
            notes.account, notes.base, notes.secrets = result.text or "", sandbox.base_sha, [token]
            if not result.ok:
                if not explore:  # what it did so far goes to the side ref
                    notes.patch, notes.failed = await _diff_or_nothing(sandbox), True
                why = result.error
                if result.subtype == "error_max_budget_usd":
                    why = reason("task/task_budget", usd=float(cfg.budgets.task_usd))
                return Attempt(ok=False, reason=reason("task/agent_failed", cause=why), cost_usd=cost,
                                            discoveries=found, retryable=result.subtype != "error_max_budget_usd")
            if explore:
                report = (result.text or "").strip() or render_line("execution/exploration.md.j2", part="empty")
                return Attempt(ok=True, cost_usd=cost, notes=report, discoveries=found, evidence=[{
                    "command": render_line("execution/exploration.md.j2", part="label"), "exit_code": 0, "timed_out": False,
                    "tail": report[-EVIDENCE_TAIL:], "seconds": round(result.duration_s, 2), "rerun": False}])
            patch = notes.patch = await sandbox.diff()
            if not patch.strip():
                kept = await asyncio.to_thread(checkpoint.wip_commit, clone, key)
                if kept:  # its work-in-progress commit already holds the whole change: verified as the task's
                    return await _verify_pushed(settings, provider, repo, token, ctx, kept, [], cost, key)
                return Attempt(ok=False, reason=reason("task/no_change"),
                                            cost_usd=cost, discoveries=found)
            limits = policy.Limits.for_repo(cfg)
            refusal = policy.precheck(patch, limits)  # cheap; the integrator inspects the applied change
            if refusal:
                bound.warning("task_diff_refused", reason=refusal.reason.to_json())
                return Attempt(ok=False, retryable=False, reason=reason("task/refused", cause=refusal.reason),
                                            cost_usd=cost, discoveries=found)
            evidence, failure = (await _watch(_verify(sandbox, ctx["verify"], settings), beat.lost)
                                 or ([], reason("task/lease_lost")))
            evidence = setup_evidence + evidence
            if beat.lost.is_set():
                return Attempt(ok=False, lost=True, reason=reason("task/lease_lost"), cost_usd=cost)
            if failure:  # what the agent found still counts when its change did not pass
                notes.failed = True
                return Attempt(ok=False, reason=failure, evidence=evidence, cost_usd=cost,
                                            discoveries=found)
            if cfg.validation:  # an independent check of the criteria; a failure is retried with its reasons
                checked = await _watch(validation.check(agent_runner, sandbox, settings, ctx, patch, evidence,
                                                        budget_usd=max(0.01, cap - cost),  # what the task has left
                                                        on_cost=lambda d: setattr(beat, "spent_usd", cost + d)), beat.lost)
                if checked is None:
                    return Attempt(ok=False, lost=True, reason=reason("task/lease_lost"), cost_usd=cost)
                cost += checked.cost_usd
                if not checked.ok:
                    notes.validation, notes.failed = checked.feedback, True
                    return Attempt(ok=False, reason=reason("task/validation_failed", reasons=checked.feedback[:600]),
                                   evidence=evidence, cost_usd=cost, discoveries=found)
            base = sandbox.base_sha
        finally:
            destroying = asyncio.ensure_future(sandbox.destroy())  # off the task's path; awaited at the end
        message = render("execution/commit_message.txt.j2", **ctx)
        secrets = policy.secrets_from_settings(settings, extra=[token])
        # Ask the database, not the last heartbeat: a cancel may have landed a moment ago.
        if not await asyncio.to_thread(beat.confirm):
            return Attempt(ok=False, lost=True, reason=reason("task/lease_lost"), cost_usd=cost)
        try:  # the declared files and what the change touches: a rebase that changes one re-verifies
            paths = set(ctx["files"]) | await asyncio.to_thread(clone.patch_paths, patch)
        except GitError:  # git could not read the patch: the integrator's apply will say why
            paths = set(ctx["files"])
        row = await asyncio.to_thread(integration.enqueue, settings, lease, base_sha=base, patch=patch,
                                      message=message, paths=paths, announced=announced)
        announced = None
        # The tasks that finish together are pushed together, by whichever of them holds the branch lock.
        landed = await integration.land(settings, lease.spec_id, row, integration.lock_key(ctx["full_name"], ctx["branch"]),
                                        clone, limits, secrets, beat.lost, lease.owner,
                                        landed_clean=lambda: scheduler.schedule(settings, lease.spec_id, cfg.per_spec,
                                                                                cfg.budgets))
        if landed is None:
            return Attempt(ok=False, lost=True, reason=reason("task/lease_lost"), cost_usd=cost)
        if landed.refused:
            return _refused(bound, landed.refused, cost, found)
        if landed.failed:  # it did not apply on the branch head: retried from the new head
            notes.failed = True
            return Attempt(ok=False, reason=landed.failed, evidence=evidence, cost_usd=cost, discoveries=found)
        bound.info("task_pushed", commit=landed.sha, rebased=landed.rebased, touched=landed.touched,
                   existing=landed.existing)
        # Verified again only where the rebase changed the task's own files (or an earlier attempt pushed).
        if landed.touched or landed.existing:
            done = await _verify_pushed(settings, provider, repo, token, ctx, landed.sha, evidence, cost, key)
            done.discoveries = found
            return done
        return Attempt(ok=True, commit_sha=landed.sha, evidence=evidence, cost_usd=cost,
                                    discoveries=found)
    finally:
        if announced is not None:  # the change announced will not come: no integrator waits for it
            await asyncio.to_thread(integration.withdraw, settings, announced)
        if destroying is not None:
            await destroying
        if notes.failed:  # the failed work is kept on a side ref, pushed from omoi's clone (never the sandbox)
            await asyncio.to_thread(attempt_feedback.preserve, clone, notes, lease, policy.Limits.for_repo(cfg),
                                    policy.secrets_from_settings(settings, extra=[token]))
        clone.cleanup()  # renamed aside, removed at low priority (a leftover is swept: supervision.housekeeping)


async def _setup(sandbox, setup) -> tuple[list[dict], Reason | None]:
    """The repository's setup steps (`.github/omoi.yml` `setup`), before the agent; what they create
    stays out of the diff. Returns the evidence (with the addresses the egress proxy refused, as
    Copilot's agent reports them) and a failure reason, if one failed."""
    if not setup.commands:
        return [], None
    steps = await sandbox.run_setup(list(setup.commands), allow=list(setup.allow), timeout=setup.timeout_minutes * 60)
    evidence, failure = [], None
    for step in steps:
        res = step.result
        output = (res.stdout + ("\n" + res.stderr if res.stderr else "")).strip()
        evidence.append({"command": f"setup: {step.command}", "exit_code": res.exit_code, "timed_out": res.timed_out,
                         "tail": output[-EVIDENCE_TAIL:], "seconds": round(res.duration_s, 2), "rerun": False,
                         "blocked": list(step.blocked)})
        if not res.ok:
            failure = reason("task/setup_failed", command=step.command, timed_out=res.timed_out, exit_code=res.exit_code,
                             output=output[-300:], blocked=list(step.blocked))
    # Files the setup made (dependencies, build output) are not the agent's change.
    await sandbox.exec("mkdir -p .git/info && git ls-files --others --exclude-standard -z | tr '\\0' '\\n' | sed 's|^|/|' "
                       ">> .git/info/exclude", timeout=120)
    return evidence, failure


def _observer(beat: Heartbeat):
    def seen(transcript: list[dict]) -> None:
        beat.transcript = transcript  # flushed to the task row by the heartbeat thread
    return seen


def _cost_observer(beat: Heartbeat):
    def spent(dollars: float) -> None:
        beat.spent_usd = dollars
    return spent


async def _read_discoveries(sandbox) -> list:
    """The agent's `.omoi-discoveries.json`, removed from the work tree so it is never committed."""
    try:
        raw = await sandbox.download(discovery.RESULT_FILE)
    except SandboxFileMissing:  # the normal case: nothing to read, nothing to remove (no command run)
        return []
    except Exception:  # noqa: BLE001 - unreadable: still removed
        raw = None
    await sandbox.exec(["rm", "-f", discovery.RESULT_FILE], timeout=10)
    return discovery.parse(raw) if raw is not None else []


async def _diff_or_nothing(sandbox) -> str:
    try:
        return await sandbox.diff()
    except Exception:  # noqa: BLE001 - a sandbox that cannot say leaves nothing to keep
        return ""


async def _discard(creating: asyncio.Future) -> None:
    """Destroy the sandbox being created, whatever became of it."""
    try:
        sandbox = await creating
    except Exception:  # noqa: BLE001 - nothing was made
        return
    await sandbox.destroy()


def _refused(bound, why: Reason, cost: float, found: list) -> Attempt:
    bound.warning("task_diff_refused", reason=why.to_json())
    return Attempt(ok=False, retryable=False, reason=reason("task/refused", cause=why), cost_usd=cost,
                   discoveries=found)


async def _verify_pushed(settings, provider, repo, token, ctx, sha, evidence, cost, key) -> Attempt:
    """Verify again in a fresh sandbox at the commit that is on the branch."""
    if not ctx["verify"]:
        return Attempt(ok=True, commit_sha=sha, evidence=evidence, cost_usd=cost)
    sandbox = await provider.create(repo_url=url_with_token(repo["clone_url"], token), ref=sha, label=f"verify-{key}")
    try:
        rerun, failure = await _verify(sandbox, ctx["verify"], settings, rerun=True)
    finally:
        await sandbox.destroy()
    if failure:
        return Attempt(ok=False, reason=reason("task/on_pushed_commit", sha=sha, cause=failure),
                                    evidence=evidence + rerun, cost_usd=cost)
    return Attempt(ok=True, commit_sha=sha, evidence=evidence + rerun, cost_usd=cost)
