"""How a spec ends or comes back without a slash command (issue 16).

- its pull request is merged: the spec is `complete`, the run `merged`; one closing summary (cost, time,
  tasks) and the `omoi:done` label on the issue;
- its pull request is closed unmerged: the run ends (`closed`), the work stays on the branch; reopening
  the pull request continues it;
- its issue is closed or its trigger label removed: the spec is `stopped` (the state it was in is kept),
  planning output still being written is dropped and running tasks lose their lease;
- its issue is reopened or relabelled, or `/omoi plan`: a stopped spec resumes where it stopped.

Each ending leaves one notice on the issue (markers.NOTICE, edited in place on a redelivery or a second
ending of the same kind), so nothing is announced twice.
"""
from __future__ import annotations

from sqlalchemy import select

from app import jobs
from app.config import Settings
from app.db.models import Spec, SpecStage, SpecTask
from app.db.session import session_scope
from app.execution import budgets, orchestrator
from app.github import comments, repo_vars
from app.observability.logs import get_logger
from app.planning import flow, questions, quick
from app.planning.schemas import STAGES
from app.text import markers
from app.text.rendering import reason, render
from app.timeutil import as_utc, utc_now

log = get_logger("omoi.lifecycle")
DONE_LABEL = "omoi:done"
ENDED = ("stopped", "complete", "rejected")  # nothing left to stop
LIVE_RUN = ("running", "paused_budget", "paused")
RESUMABLE = ("stopped", "failed")  # `/omoi plan`, a reopen or a relabel continues where it stopped or failed


def spec_of_pull_request(settings: Settings, full_name: str, pr: dict) -> int | None:
    """The spec whose pull request this is, only if omoi opened it: the number recorded for the spec,
    or the spec's branch on a pull request omoi's App user opened (before the number was recorded)."""
    with session_scope(settings.database_url) as s:
        found = s.scalars(select(Spec.id).where(Spec.repo_full_name == full_name,
                                                Spec.pr_number == pr["number"])).first()
        head = (pr.get("head") or {}).get("ref")
        if found is None and head and comments.is_ours(pr, settings):
            found = s.scalars(select(Spec.id).where(Spec.repo_full_name == full_name, Spec.branch == head)).first()
        return found


def spec_of_issue(settings: Settings, full_name: str, number: int) -> int | None:
    with session_scope(settings.database_url) as s:
        spec = flow.find_spec(s, full_name, number)
        return spec.id if spec else None


async def _notice(gh, settings: Settings, spec_id: int, what: str, template: str, **context) -> None:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        full_name, number = spec.repo_full_name, spec.issue_number
    body = render(template, spec_id=spec_id, what=what, issue_number=number, **context)
    await comments.upsert(gh, settings, full_name, number, markers.NOTICE.prefix(spec=spec_id, what=what), body)


def _duration(seconds: float) -> str:
    minutes, hours = int(seconds // 60), int(seconds // 3600)
    if hours:
        return f"{hours}h {minutes % 60:02d}m"
    return f"{minutes}m {int(seconds) % 60:02d}s" if minutes else f"{int(seconds)}s"


def summary(settings: Settings, spec_id: int) -> dict:
    """The closing summary's numbers: tasks done/total, what the spec cost (planning and agents, as the
    budgets count it), and how long it took from the first label or `/omoi plan` to the merge."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        tasks = s.scalars(select(SpecTask.status).where(SpecTask.spec_id == spec_id)).all()
        end = as_utc(spec.completed_at or utc_now())
        return {"done": sum(1 for t in tasks if t == "done"), "total": len(tasks), "pr_number": spec.pr_number,
                "cost": f"${budgets.spec_spent(s, spec_id):.2f}", "branch": spec.branch or "",
                "took": _duration(max(0.0, (end - as_utc(spec.created_at)).total_seconds()))}


async def complete(gh, settings: Settings, spec_id: int, user: str) -> None:
    """The pull request was merged. Safe to call twice: the notice and the label are found again."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.state != "complete":
            spec.state, spec.stopped_from, spec.completed_at = "complete", None, utc_now()
        full_name, number = spec.repo_full_name, spec.issue_number
    orchestrator.end_run(settings, spec_id, "merged", reason("run/stopped", why="merged", user=user))
    jobs.schedule(spec_id=spec_id)  # the tracking comment and the check run say so
    await flow.publish(gh, settings, spec_id, [])  # the spec check run
    await gh.post("/repos/{owner}/{repo}/issues/{issue_number}/labels",
                  url_vars={**repo_vars(full_name), "issue_number": number}, data={"labels": [DONE_LABEL]})
    await _notice(gh, settings, spec_id, "complete", "replies/ended_complete.md.j2", user=user,
                  **summary(settings, spec_id))
    log.info("spec_complete", spec_id=spec_id, user=user)


async def pull_request_closed(gh, settings: Settings, spec_id: int, user: str) -> None:
    """Closed without merging: the run ends, its commits stay on the branch."""
    orchestrator.end_run(settings, spec_id, "closed", reason("run/stopped", why="pr_closed", user=user))
    jobs.schedule(spec_id=spec_id)
    await _notice(gh, settings, spec_id, "closed", "replies/ended_pr_closed.md.j2", user=user, reopened=False,
                  **summary(settings, spec_id))
    log.info("run_closed", spec_id=spec_id, user=user)


async def pull_request_reopened(gh, settings: Settings, spec_id: int, user: str, request_key: str) -> None:
    """Reopened after a close: the run continues where it ended."""
    with session_scope(settings.database_url) as s:
        if s.get(Spec, spec_id).run_state != "closed":
            return
    outcome, _ = orchestrator.request_retry(settings, spec_id)
    if outcome == "retrying":
        jobs.start_run(spec_id=spec_id, request_key=f"{request_key}:reopened")
    await _notice(gh, settings, spec_id, "closed", "replies/ended_pr_closed.md.j2", user=user, reopened=True,
                  **summary(settings, spec_id))


async def stop(gh, settings: Settings, spec_id: int, why: str, user: str) -> bool:
    """The issue was closed or its trigger label removed: stop planning and the run (`why` is
    issue_closed | label_removed). False when there was nothing to stop."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.state in ENDED:
            return False
        before, run_state = spec.state, spec.run_state
        spec.stopped_from, spec.state = before, "stopped"
    if run_state in LIVE_RUN:
        orchestrator.end_run(settings, spec_id, "cancelled", reason("run/stopped", why=why, user=user))
        jobs.schedule(spec_id=spec_id)
    await flow.publish(gh, settings, spec_id, [])
    await _notice(gh, settings, spec_id, "stopped", "replies/stopped.md.j2", why=why, user=user,
                  had_run=run_state in LIVE_RUN, resumed=False)
    log.info("spec_stopped", spec_id=spec_id, why=why, before=before, run=run_state)
    return True


def _position(s, spec: Spec) -> tuple[str | None, str]:
    """Where planning stands from its stages: (the stage to write now, or None; the spec's state)."""
    for stage in STAGES:
        row = s.scalars(select(SpecStage).where(SpecStage.spec_id == spec.id, SpecStage.stage == stage)
                        .order_by(SpecStage.revision.desc()).limit(1)).first()
        if row is None or row.status not in ("waiting", "blocked", "approved"):
            return stage, "planning"
        if row.status != "approved":
            return None, stage if row.status == "waiting" else "blocked"
    stale = s.scalars(select(SpecStage.id).where(SpecStage.spec_id == spec.id, SpecStage.status == "approved",
                                                 SpecStage.stale_reason.is_not(None))).first()
    return None, "stale" if stale and spec.run_state is None else "approved"


async def resume(gh, settings: Settings, spec_id: int, user: str, request_key: str) -> str:
    """A stopped (or failed) spec goes back to where it was: the stage being written is written again, a stage
    waiting for people waits again, a run stopped with the spec continues. Returns the new state."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.state not in RESUMABLE:
            return spec.state
        todo, state = _position(s, spec)
        if quick.is_quick(spec.planning):  # the quick plan is written and approved as a whole
            todo, state = (quick.STAGE if todo else None), ("quick" if state in STAGES else state)
        elif todo == STAGES[0] and spec.stopped_from == questions.STATE:
            todo, state = None, questions.STATE  # the clarifying questions wait for answers again
        spec.state, spec.stopped_from, spec.last_error, spec.last_error_params = state, None, None, None
        rerun = spec.run_state == "cancelled" and spec.run_error == "run/stopped"
        start = state == "approved" and (rerun or spec.run_state is None)
    if todo:
        jobs.run_stage(spec_id=spec_id, stage=todo, request_key=f"{request_key}:resume")
    if start and rerun:
        start = orchestrator.request_retry(settings, spec_id)[0] == "retrying"
    if start:
        jobs.start_run(spec_id=spec_id, request_key=f"{request_key}:resume")
    await flow.publish(gh, settings, spec_id, [])
    await _notice(gh, settings, spec_id, "stopped", "replies/stopped.md.j2", why="", user=user, had_run=start,
                  resumed=True)
    log.info("spec_resumed", spec_id=spec_id, state=state, stage=todo, run=start)
    return state


def status_view(settings: Settings, spec_id: int) -> dict:
    """`/omoi status`: the spec's stages and state (flow.status_view) and its run, if any."""
    view = flow.status_view(settings, spec_id)
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        tasks = s.scalars(select(SpecTask.status).where(SpecTask.spec_id == spec_id)).all()
        view.update(run_state=spec.run_state, pr_number=spec.pr_number, stopped_from=spec.stopped_from,
                    done=sum(1 for t in tasks if t == "done"), total=len(tasks),
                    running=sum(1 for t in tasks if t == "running"), failed=sum(1 for t in tasks if t == "failed"))
    return view


async def merged_by(gh, settings: Settings, spec_id: int) -> str | None:
    """Who merged the spec's pull request, if it is merged (None: not merged, or no pull request)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        full_name, number = spec.repo_full_name, spec.pr_number
    if not number:
        return None
    pr = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                          url_vars={**repo_vars(full_name), "pull_number": number})
    return ((pr.get("merged_by") or {}).get("login") or "") if pr.get("merged") else None


async def edited(gh, settings: Settings, spec_id: int, stale: list[tuple[str, int]], waits: bool) -> None:
    """The issue's body changed after approvals: show the stages as stale, and one notice."""
    await flow.publish(gh, settings, spec_id, [stage for stage, _ in stale])
    await _notice(gh, settings, spec_id, "edited", "replies/issue_edited.md.j2", stale=stale, waits=waits)
