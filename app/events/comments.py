"""issue_comment events: slash commands on issues and pull requests."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from app.db import claims

from app.github import repo_config
from app.commands.actions import run
from app.commands.grammar import parse_commands
from app.events.context import EventContext, refuse_once
from app.events.records import delivery_received_at
from app.github import comments
from app.github.permissions import check_sender
from app.text.rendering import render
from app.text import markers

router = Router()


@router.register("issue_comment", action="created")
@router.register("issue_comment", action="edited")
async def on_comment(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    comment, issue, repo, sender = data["comment"], data["issue"], data["repository"], data["sender"]
    if comments.is_ours(comment, ctx.settings):
        return  # never react to our own replies
    commands = parse_commands(comment.get("body"), bot_names=(ctx.settings.app_name,))
    if not commands:
        return
    key = f"comment:{comment['id']}"
    seen = claims.status(key)
    if seen == "done" or (data.get("action") == "edited" and seen is not None):
        return  # an edit after the commands ran does not run them again
    claims.claim(key, "comment")
    full_name, number = repo["full_name"], issue["number"]
    gh = await ctx.gh()
    decision = await check_sender(gh, ctx.settings, full_name, sender)
    if not decision.allowed:
        await refuse_once(ctx, gh, full_name, number, sender, "comment")  # at most one notice per issue
        claims.finish(key)
        return
    await comments.add_reaction(gh, full_name, comment_id=comment["id"], content="eyes")
    repo_cfg = await repo_config.load_and_report(gh, ctx.settings, full_name, number)
    sections = []
    received = delivery_received_at(ctx.settings, ctx.delivery_id)  # pins approvals to what existed then
    for i, cmd in enumerate(commands):
        outcome = await run(cmd, gh=gh, settings=ctx.settings, full_name=full_name, issue=issue,
                            repository=repo, installation_id=ctx.installation_id, user=sender.get("login", ""),
                            request_key=f"{key}:{i}", repo_cfg=repo_cfg, written_at=received)
        sections.append(render(outcome.template, **outcome.context).strip())
        ctx.log.info("command_done", verb=cmd.verb, outcome=outcome.template)
    body = render("replies/reply.md.j2", comment_id=comment["id"], sections=sections)
    await comments.upsert(gh, ctx.settings, full_name, number, markers.REPLY.prefix(to=comment['id']), body)
    claims.finish(key)

