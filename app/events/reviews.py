"""pull_request_review and pull_request_review_comment: review feedback on omoi's pull requests."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from app.commands.grammar import Command, parse_commands
from app.commands.grammar import VERBS, InvalidCommand
from app.db import claims
from app.events.context import EventContext, refuse_once
from app.text import markers
from app.text.rendering import render
from app.github import comments
from app.github.permissions import check_sender
from app import jobs
from app.execution.review_fix import is_omoi_pull_request

router = Router()


async def _start(ctx: EventContext, data: dict, reason: str, notes: list[dict] | None = None) -> bool:
    """Queue a review round if this is omoi's PR and the sender may drive omoi."""
    pr, repo, sender = data["pull_request"], data["repository"], data["sender"]
    if not is_omoi_pull_request(pr):
        return False
    gh = await ctx.gh()
    decision = await check_sender(gh, ctx.settings, repo["full_name"], sender)
    if not decision.allowed:
        await refuse_once(ctx, gh, repo["full_name"], pr["number"], sender, "review")
        return False
    jobs.address_review(installation_id=ctx.installation_id, full_name=repo["full_name"], number=pr["number"],
                        round_key=f"review-{ctx.delivery_id}", notes=notes)
    ctx.log.info("review_queued", pr=pr["number"], reason=reason)
    return True


@router.register("pull_request_review", action="submitted")
async def on_review(event: sansio.Event, ctx: EventContext) -> None:
    review = event.data.get("review") or {}
    body = review.get("body") or ""
    asked = any(isinstance(c, Command) and c.verb == "address-review"
                for c in parse_commands(body, bot_names=(ctx.settings.app_name,)))
    if review.get("state", "").lower() == "changes_requested" or asked:  # the review's body is feedback too
        notes = [{"author": event.data["sender"].get("login", ""), "body": body, "source": "review"}] if body.strip() else None
        await _start(ctx, event.data, "/omoi fix in a review" if asked else "changes requested", notes)
    where = "not-ours" if asked and not is_omoi_pull_request(event.data["pull_request"]) else "review"
    await _answer_others(ctx, event.data, parse_commands(body, bot_names=(ctx.settings.app_name,)),
                         key=f"review:{review.get('id')}", where=where)


@router.register("pull_request_review_comment", action="created")
async def on_review_comment(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    if comments.is_ours(data["comment"], ctx.settings):
        return
    cmds = parse_commands(data["comment"].get("body"), bot_names=(ctx.settings.app_name,))
    if any(isinstance(c, Command) and c.verb == "address-review" for c in cmds):
        if not is_omoi_pull_request(data["pull_request"]):
            await _answer_others(ctx, data, cmds, key=f"review-comment:{data['comment']['id']}", where="not-ours")
            return
        if await _start(ctx, data, "/omoi fix"):
            owner, repo = data["repository"]["full_name"].split("/", 1)
            await (await ctx.gh()).post("/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
                                        url_vars={"owner": owner, "repo": repo, "comment_id": data["comment"]["id"]},
                                        data={"content": "eyes"})
    await _answer_others(ctx, data, cmds, key=f"review-comment:{data['comment']['id']}", where="review comment")


def _line(cmd, where: str) -> str:
    if where == "not-ours":
        return render("review/not_ours.md.j2").strip()
    if isinstance(cmd, InvalidCommand):
        return render("replies/invalid.md.j2", raw=cmd.raw, error=cmd.error, verbs=VERBS).strip()
    if cmd.verb == "help":
        return render("replies/help.md.j2", verbs=VERBS).strip()
    return render("replies/not_in_review.md.j2", verb=cmd.verb, where=where).strip()


async def _answer_others(ctx: EventContext, data: dict, cmds: list, *, key: str, where: str) -> None:
    """Every command in a review or a review comment other than `/omoi fix` gets a one-line answer (issue
    16): in the thread for a review comment, on the pull request for a review's body. Once per comment
    (a claim), and only for people who may drive omoi (the others get the one refusal notice)."""
    others = [c for c in cmds if where == "not-ours" or not (isinstance(c, Command) and c.verb == "address-review")]
    if not others or claims.status(key) is not None:
        return
    pr, repo, sender = data["pull_request"], data["repository"], data["sender"]
    gh = await ctx.gh()
    if not (await check_sender(gh, ctx.settings, repo["full_name"], sender)).allowed:
        await refuse_once(ctx, gh, repo["full_name"], pr["number"], sender, "review")
        return
    if not claims.claim(key, "review-command"):
        return
    sections = list(dict.fromkeys(_line(c, where) for c in others))
    owner, name = repo["full_name"].split("/", 1)
    if "comment" in data and where != "review":  # answer in the review thread
        await gh.post("/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
                      url_vars={"owner": owner, "repo": name, "pull_number": pr["number"],
                                "comment_id": data["comment"]["id"]},
                      data={"body": render("replies/reply.md.j2", comment_id=data["comment"]["id"], sections=sections)})
    else:
        review_id = (data.get("review") or {}).get("id")
        await comments.upsert(gh, ctx.settings, repo["full_name"], pr["number"],
                              markers.REPLY.prefix(to=f"review-{review_id}"),
                              render("replies/reply.md.j2", comment_id=f"review-{review_id}", sections=sections))
    claims.finish(key)
    ctx.log.info("review_commands_answered", pr=pr["number"], where=where, count=len(sections))
