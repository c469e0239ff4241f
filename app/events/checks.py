"""check_run events: the Cancel and Retry buttons of the `omoi / implement` check run."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router
from sqlalchemy import or_, select

from app.execution import orchestrator
from app.db.models import Spec
from app.db.session import session_scope
from app.events.context import EventContext, refuse_once
from app.github import comments
from app.text import markers
from app.text.rendering import render
from app.github.permissions import check_sender
from app import jobs
from app.execution.run_report import CHECK_NAME

router = Router()


@router.register("check_run", action="requested_action")
async def on_requested_action(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    check, repo, sender = data["check_run"], data["repository"], data["sender"]
    identifier = (data.get("requested_action") or {}).get("identifier")
    app_id = (check.get("app") or {}).get("id")
    if check.get("name") != CHECK_NAME or identifier not in ("cancel", "retry"):
        return
    if ctx.settings.github_app_id and str(app_id) != str(ctx.settings.github_app_id):
        return  # another app's check run with the same name
    branch = (check.get("check_suite") or {}).get("head_branch")
    with session_scope(ctx.settings.database_url) as s:
        spec = s.scalars(select(Spec).where(
            Spec.repo_full_name == repo["full_name"],
            or_(Spec.implement_check_run_id == check["id"], Spec.branch == branch if branch else False),
        )).first()
        spec_id, issue_number = (spec.id, spec.issue_number) if spec else (None, None)
    if spec_id is None:
        ctx.log.info("check_action_unknown_run", check_run=check["id"])
        return
    gh = await ctx.gh()
    decision = await check_sender(gh, ctx.settings, repo["full_name"], sender)
    if not decision.allowed:
        await refuse_once(ctx, gh, repo["full_name"], issue_number, sender, "button")
        return
    user = sender.get("login", "")
    if identifier == "cancel":
        outcome = orchestrator.cancel_run(ctx.settings, spec_id, user)
        jobs.schedule(spec_id=spec_id)  # re-render the check run and the tracking comment
    else:
        outcome, _ = orchestrator.request_retry(ctx.settings, spec_id)
        if outcome == "retrying":
            jobs.start_run(spec_id=spec_id, request_key=f"check:{ctx.delivery_id}")
    if outcome not in ("cancelled", "retrying"):  # the press changed nothing: say why, on the issue
        await comments.upsert(gh, ctx.settings, repo["full_name"], issue_number,
                              markers.NOTICE.prefix(spec=spec_id, what="button"),
                              render("replies/button_noop.md.j2", spec_id=spec_id, what="button",
                                     issue_number=issue_number, action=identifier, state=outcome, user=user))
    ctx.log.info("check_action", action=identifier, user=user, outcome=outcome)
