"""issue_comment events: slash commands on issues and pull requests, and the answer to omoi's
clarifying questions (app/planning/questions.py)."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from app import jobs
from app.db import claims

from app.github import repo_config
from app.commands.actions import run
from app.commands.lifecycle import spec_of_issue
from app.commands.grammar import parse_commands
from app.events.context import EventContext, refuse_once
from app.events.records import delivery_received_at
from app.github import comments
from app.github.permissions import check_sender
from app.planning import questions
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
        if data.get("action") == "created" and not issue.get("pull_request"):
            await _maybe_answer(ctx, comment, repo["full_name"], issue["number"], sender)
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
        if not outcome.quiet:
            sections.append(render(outcome.template, **outcome.context).strip())
        ctx.log.info("command_done", verb=cmd.verb, outcome=outcome.template)
    if sections:  # a quiet outcome's answer is the 👀 and the edit it made (an approval: the stage comment)
        body = render("replies/reply.md.j2", comment_id=comment["id"], sections=sections)
        await comments.upsert(gh, ctx.settings, full_name, number, markers.REPLY.prefix(to=comment['id']), body)
    claims.finish(key)


async def _maybe_answer(ctx: EventContext, comment: dict, full_name: str, number: int, sender: dict) -> None:
    """A comment without commands while the spec waits for answers: from a person with write access it
    is the answer and continues planning; from anyone else it is ignored, with the one notice."""
    if sender.get("type") == "Bot":
        return  # another app's comment (CI, a linter) answers nothing
    spec_id = spec_of_issue(ctx.settings, full_name, number)
    if spec_id is None or not questions.waiting(ctx.settings, spec_id):
        return
    key = f"comment:{comment['id']}"
    if not claims.claim(key, "comment"):
        return  # a redelivery of an answer already taken
    gh = await ctx.gh()
    if not (await check_sender(gh, ctx.settings, full_name, sender)).allowed:
        await refuse_once(ctx, gh, full_name, number, sender, "comment")
    elif questions.record_answer(ctx.settings, spec_id, sender.get("login", ""), comment.get("body") or ""):
        await comments.add_reaction(gh, full_name, comment_id=comment["id"], content="eyes")
        jobs.run_stage(spec_id=spec_id, stage="requirements", request_key=f"{key}:answer")
    claims.finish(key)
