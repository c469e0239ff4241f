"""issues events: the trigger label starts omoi on an issue."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router
from app.github import repo_config
from app.db.models import Spec
from app.db.session import session_scope
from app.events.context import EventContext
from app.github import comments
from app.github.permissions import check_sender
from app import jobs
from app.text.rendering import render
from app.planning.flow import start_spec
from app.text import markers

router = Router()
ACK_MARKER = markers.ACK.prefix()


@router.register("issues", action="labeled")
async def on_labeled(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    label = (data.get("label") or {}).get("name", "").lower()
    issue, repo, sender = data["issue"], data["repository"], data["sender"]
    if issue.get("pull_request") or not label:
        return  # labels on pull requests do not start a spec
    full_name, number = repo["full_name"], issue["number"]
    gh = await ctx.gh()
    trigger = (await repo_config.load_effective(gh, ctx.settings, full_name)).trigger_label
    if label != trigger.lower():
        return
    await repo_config.load_and_report(gh, ctx.settings, full_name, number)
    decision = await check_sender(gh, ctx.settings, full_name, sender)
    if not decision.allowed:
        ctx.log.info("label_refused", sender=sender.get("login"), permission=decision.permission)
        return

    spec_id, start = start_spec(
        ctx.settings, full_name, number, repository_id=repo.get("id"), installation_id=ctx.installation_id,
        title=issue.get("title", ""), requested_by=sender.get("login", ""),
    )
    with session_scope(ctx.settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        known_comment, requested_by, state = spec.ack_comment_id, spec.requested_by, spec.state

    await comments.add_reaction(gh, full_name, issue_number=number, content="eyes")
    body = render(
        "ack.md.j2",
        requested_by=requested_by,
        label=trigger,
        issue_number=number,
        spec_id=spec_id,
    )
    result = await comments.upsert(gh, ctx.settings, full_name, number, ACK_MARKER, body, known_id=known_comment)
    with session_scope(ctx.settings.database_url) as s:
        s.get(Spec, spec_id).ack_comment_id = result.comment_id
    if start or state == "planning":  # also after a crash between recording and enqueueing
        jobs.run_stage(spec_id=spec_id, stage="requirements", request_key=f"label:{ctx.delivery_id}")
    ctx.log.info("issue_acknowledged", issue=number, comment=result.comment_id, action=result.action)
