"""REST: reactions on issues and on issue comments."""

from __future__ import annotations

from typing import Any

from ...webhooks import node_id
from ..common import DOCS, REACTIONS, now_iso
from ..routing import ApiError, Reply, RequestContext, _require_body_field, route


def _add_reaction(ctx: RequestContext, reactions: list[dict[str, Any]], docs: str) -> Reply:
    content = _require_body_field(ctx, "content", str, docs)
    if content not in REACTIONS:
        raise ApiError(422, f"Invalid request.\n\n{content!r} is not a member of enum.", docs=docs)
    login = ctx.state.bot_login  # installation tokens act as the App's bot user
    for r in reactions:
        if r["user"]["login"] == login and r["content"] == content:
            return Reply(200, r)  # GitHub answers 200 with the existing reaction
    rid = ctx.state.next_id()
    reaction = {"id": rid, "node_id": node_id("Reaction", rid), "user": ctx.state.bot_user(),
                "content": content, "created_at": now_iso()}
    reactions.append(reaction)
    return Reply(201, reaction)


def _filter_reactions(ctx: RequestContext, reactions: list[dict[str, Any]]) -> Reply:
    content = ctx.query.get("content")
    return ctx.paginate([r for r in reactions if content is None or r["content"] == content])


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/reactions")
def list_issue_reactions(ctx: RequestContext) -> Reply:
    return _filter_reactions(ctx, ctx.issue().reactions)


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions")
def create_issue_reaction(ctx: RequestContext) -> Reply:
    return _add_reaction(ctx, ctx.issue().reactions, f"{DOCS}/reactions/reactions#create-reaction-for-an-issue")


def _comment_reactions(ctx: RequestContext) -> list[dict[str, Any]]:
    assert ctx.repo is not None
    return ctx.repo.comment_reactions[ctx.comment()["id"]]


@route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
def list_comment_reactions(ctx: RequestContext) -> Reply:
    return _filter_reactions(ctx, _comment_reactions(ctx))


@route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
def create_comment_reaction(ctx: RequestContext) -> Reply:
    reactions = _comment_reactions(ctx)
    reply = _add_reaction(ctx, reactions, f"{DOCS}/reactions/reactions#create-reaction-for-an-issue-comment")
    ctx.comment()["reactions"] = ctx.state.reaction_rollup(f"{ctx.comment()['url']}/reactions", reactions)
    return reply
