"""CI iteration: checks of other apps failing on omoi's pull request start a bounded fix.

The `omoi.ci_result` job (app/events/ci_results.py queues it when a check suite or check run of
another app completes on a spec's branch; app/execution/ci_checks.py when a finished run's head is
already failing) looks at the pull request's current head:
- passing (app/execution/ci_checks.py): a finished run's draft becomes ready for review;
- failing, and nothing still running: one CI round for that head commit - the fix agent
  (app/execution/fix_session.py, the review fixes' machinery) gets the failing checks' output and
  annotations as feedback, the verify commands run, and the fix is pushed on the PR branch. The
  round's cost counts in the spec's budget. At most `ci.max_fix_rounds` rounds per spec
  (`ci_max_fix_rounds`), and none once the budget is used up; then omoi stops and says so.
Every round is a line of one comment on the pull request (`<!-- omoi:ci spec=N -->`): which check
failed, that a fix is running, and how it ended. The database (`ci_rounds`) is the source of truth.
"""
from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app import jobs
from app.config import Settings, get_settings
from app.db.locks import issue_lock
from app.db.models import CIRound, Spec
from app.db.session import session_scope
from app.execution import ci_checks, fix_session, run_report
from app.github import comments, repo_config, repo_vars
from app.github.client import installation_client
from app.observability.logs import get_logger
from app.text import markers
from app.text.rendering import Reason, explain, reason, render, stored
from app.timeutil import utc_now

log = get_logger("omoi.ci_fix")


def run_job(spec_id: int, head_sha: str) -> str:
    """Celery entry: one CI decision at a time per pull request (the review fixes' lock)."""
    settings = get_settings()
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or not spec.pr_number:
            return "no-pull-request"
        installation, full_name, number = spec.installation_id, spec.repo_full_name, spec.pr_number

    async def go() -> str:
        async with installation_client(settings, installation) as gh:
            return await handle(gh, settings, spec_id, full_name, number, head_sha)

    with issue_lock(f"{full_name}#{number}", settings.issue_lock_seconds):
        outcome = asyncio.run(go())
    log.info("ci_result", spec_id=spec_id, head=head_sha[:12], outcome=outcome)
    return outcome


async def handle(gh, settings: Settings, spec_id: int, full_name: str, number: int, head_sha: str) -> str:
    pr = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                          url_vars={**repo_vars(full_name), "pull_number": number})
    if pr.get("state") != "open":
        return "closed"
    if pr["head"]["sha"] != head_sha:
        return "stale"  # a newer commit is on the branch: its own checks decide
    with session_scope(settings.database_url) as s:
        run_state = s.get(Spec, spec_id).run_state
    if run_state != "succeeded":
        return f"run-{run_state}"  # tasks still push (or the run failed): their CI is not ours to fix yet
    ci = (await repo_config.load(gh, settings, full_name)).config.ci
    checks = await ci_checks.read(gh, settings, full_name, head_sha,
                                  ci_checks.required_names(settings, spec_id, list(ci.required_checks)))
    if checks.state == "passing":
        if pr.get("draft"):
            await run_report._ready_for_review(gh, spec_id, pr)
        await publish(gh, settings, spec_id, full_name, number, passed=head_sha)
        return "ready"
    if checks.state != "failing":
        return checks.state
    return await _round(gh, settings, spec_id, full_name, pr, checks, ci)


async def _round(gh, settings: Settings, spec_id: int, full_name: str, pr: dict, checks, ci) -> str:
    head, number = checks.head, pr["number"]
    limit = ci.max_fix_rounds if ci.max_fix_rounds is not None else settings.ci_max_fix_rounds
    if not settings.ci_fix_enabled or limit <= 0:
        return "fixes-off"
    cfg = await repo_config.load_effective(gh, settings, full_name)
    allowance, hit = fix_session.budget_left(settings, spec_id, cfg)
    failed = checks.failing
    with session_scope(settings.database_url) as s:
        if s.scalars(select(CIRound).where(CIRound.spec_id == spec_id, CIRound.head_sha == head)).first():
            return "already"  # one round per head commit (both check_suite and check_run events come)
        done = s.scalar(select(func.count()).select_from(CIRound).where(CIRound.spec_id == spec_id,
                                                                        CIRound.round > 0)) or 0
    stop: Reason | None = None
    if done >= limit:
        stop = reason("ci/round_limit", rounds=done)
    elif hit is not None:
        stop = reason("review/budget", limit=hit["limit"], spent_usd=hit["spent_usd"], limit_usd=hit["limit_usd"])
    row_id = _add_round(settings, spec_id, head, failed, 0 if stop else done + 1, "stopped" if stop else "running", stop)
    if row_id is None:
        return "already"
    await publish(gh, settings, spec_id, full_name, number)
    if stop is not None:
        return "stopped"
    fix = await _fix(gh, settings, spec_id, full_name, pr, checks, ci, cfg, done + 1, allowance)
    fix_session.record_cost(settings, spec_id, "ci_fix", fix.agent)
    status = ("pushed" if fix.sha else "verify_failed" if fix.verify_failed else
              "failed" if fix.failure is not None else "no_change")
    why = fix.failure if not fix.sha else None
    if why is not None and fix.verify_failed:
        why = reason("ci/verify_failed", cause=why, tail=fix.tail[-600:])
    with session_scope(settings.database_url) as s:
        row = s.get(CIRound, row_id)
        row.status, row.fix_sha, row.finished_at = status, fix.sha, utc_now()
        row.cost_usd = Decimal(str(fix.cost_usd or 0))
        row.reason, row.reason_params = stored(why)
    await publish(gh, settings, spec_id, full_name, number)
    if fix.sha:
        jobs.schedule(spec_id=spec_id)  # the run's check run and tracking comment follow the new head
    return status


def _add_round(settings, spec_id, head, failed, number, status, why) -> int | None:
    code, params = stored(why)
    try:
        with session_scope(settings.database_url) as s:
            row = CIRound(spec_id=spec_id, head_sha=head, checks=failed, round=number, status=status,
                          reason=code, reason_params=params, cost_usd=Decimal(0),
                          finished_at=utc_now() if status == "stopped" else None)
            s.add(row)
            s.flush()
            return row.id
    except IntegrityError:  # another job took this head meanwhile
        return None


async def _fix(gh, settings, spec_id, full_name, pr, checks, ci, cfg, number: int, allowance: float):
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        title, issue = spec.title, spec.issue_number
    feedback = await ci_checks.feedback(gh, full_name, checks.failing)
    for f in feedback:  # CI output is data written by whatever the repository's CI ran
        f.update({k: fix_session.as_data(f[k], 6000) for k in ("title", "summary", "text")})
        for a in f["annotations"]:
            a.update({k: fix_session.as_data(a[k], 1000) for k in ("path", "title", "message")})
    verify = fix_session.verify_commands(settings, spec_id, list(ci.verify))
    prompt = render("ci/agent_prompt.j2", pr=pr, title=title, issue=issue, checks=feedback, verify=verify,
                    head=checks.head)
    key = f"ci-{spec_id}-{number}"
    message = render("ci/commit_message.j2", pr=pr, checks=feedback, key=key, round=number)
    return await fix_session.run(gh, settings, gh.oauth_token, full_name, pr, cfg, prompt=prompt, key=key,
                                 label=f"ci-{pr['number']}", message=message, verify=verify,
                                 max_budget_usd=allowance)


def view(settings: Settings, spec_id: int) -> list[dict]:
    with session_scope(settings.database_url) as s:
        rows = s.scalars(select(CIRound).where(CIRound.spec_id == spec_id).order_by(CIRound.id)).all()
        return [{"round": r.round, "head": r.head_sha, "head_short": r.head_sha[:7], "checks": list(r.checks or []),
                 "status": r.status, "fix": r.fix_sha, "fix_short": (r.fix_sha or "")[:7],
                 "reason": explain(r.reason, r.reason_params), "cost": f"{Decimal(r.cost_usd or 0):.2f}",
                 "tail": (r.reason_params or {}).get("tail", "") if r.reason == "ci/verify_failed" else ""}
                for r in rows]


async def publish(gh, settings: Settings, spec_id: int, full_name: str, number: int, passed: str | None = None) -> None:
    """The CI comment on the pull request, from the rounds in the database (none: no comment)."""
    rounds = view(settings, spec_id)
    if not rounds:
        return
    body = render("ci/comment.md.j2", spec_id=spec_id, rounds=rounds, passed=passed, passed_short=(passed or "")[:7])
    await comments.upsert(gh, settings, full_name, number, markers.CI.prefix(spec=spec_id), body)
