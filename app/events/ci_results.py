"""check_suite and check_run completions of other apps (CI) on the branches of omoi's pull requests.

Nothing is decided here: the spec whose branch it is gets an `omoi.ci_result` job for the head
commit (app/execution/ci_fix.py), which reads the checks itself and fixes, waits or marks the pull
request ready. omoi's own check suites and runs (its App id) are left alone.
"""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router
from sqlalchemy import select

from app import jobs
from app.db.models import Spec
from app.db.session import session_scope
from app.events.context import EventContext

router = Router()


def _queue(ctx: EventContext, repo: dict, suite: dict, app: dict) -> None:
    if ctx.settings.github_app_id and str(app.get("id")) == str(ctx.settings.github_app_id):
        return  # our own check runs completing
    branch, head = suite.get("head_branch"), suite.get("head_sha")
    numbers = [p.get("number") for p in suite.get("pull_requests") or [] if p.get("number")]
    if not head or not (branch or numbers):
        return
    with session_scope(ctx.settings.database_url) as s:
        spec = s.scalars(select(Spec).where(Spec.repo_full_name == repo["full_name"], Spec.pr_number.is_not(None),
                                            (Spec.branch == branch) if branch else Spec.pr_number.in_(numbers))
                         .order_by(Spec.id.desc())).first()
        spec_id = spec.id if spec else None
    if spec_id is None:
        return  # not one of omoi's pull requests
    jobs.ci_result(spec_id=spec_id, head_sha=head)
    ctx.log.info("ci_result_queued", spec_id=spec_id, head=head[:12], app=app.get("slug"))


@router.register("check_suite", action="completed")
async def on_suite(event: sansio.Event, ctx: EventContext) -> None:
    suite = event.data["check_suite"]
    _queue(ctx, event.data["repository"], suite, suite.get("app") or {})


@router.register("check_run", action="completed")
async def on_run(event: sansio.Event, ctx: EventContext) -> None:
    run = event.data["check_run"]
    suite = {**(run.get("check_suite") or {}), "head_sha": run.get("head_sha")}
    suite.setdefault("pull_requests", run.get("pull_requests") or [])
    _queue(ctx, event.data["repository"], suite, run.get("app") or {})
