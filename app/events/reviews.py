"""pull_request_review and pull_request_review_comment: review feedback on omoi's pull requests."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from app.commands.grammar import Command, parse_commands
from app.events.context import EventContext
from app.github import comments
from app.github.permissions import check_sender
from app import jobs
from app.execution.review_fix import is_omoi_pull_request

router = Router()


async def _start(ctx: EventContext, data: dict, reason: str) -> bool:
    """Queue a review round if this is omoi's PR and the sender may drive omoi."""
    pr, repo, sender = data["pull_request"], data["repository"], data["sender"]
    if not is_omoi_pull_request(pr):
        return False
    gh = await ctx.gh()
    decision = await check_sender(gh, ctx.settings, repo["full_name"], sender)
    if not decision.allowed:
        ctx.log.info("review_refused", sender=sender.get("login"), permission=decision.permission)
        return False
    jobs.address_review(installation_id=ctx.installation_id, full_name=repo["full_name"], number=pr["number"],
                        round_key=f"review-{ctx.delivery_id}")
    ctx.log.info("review_queued", pr=pr["number"], reason=reason)
    return True


@router.register("pull_request_review", action="submitted")
async def on_review(event: sansio.Event, ctx: EventContext) -> None:
    if (event.data.get("review") or {}).get("state", "").lower() == "changes_requested":
        await _start(ctx, event.data, "changes requested")


@router.register("pull_request_review_comment", action="created")
async def on_review_comment(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    if comments.is_ours(data["comment"], ctx.settings):
        return
    cmds = parse_commands(data["comment"].get("body"), bot_names=(ctx.settings.app_name,))
    if any(isinstance(c, Command) and c.verb == "address-review" for c in cmds):
        if await _start(ctx, data, "/omoi fix"):
            owner, repo = data["repository"]["full_name"].split("/", 1)
            await (await ctx.gh()).post("/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
                                        url_vars={"owner": owner, "repo": repo, "comment_id": data["comment"]["id"]},
                                        data={"content": "eyes"})
