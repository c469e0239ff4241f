"""push events: a push to a default branch invalidates what omoi cached about the repository (its
metadata and `.github/omoi.yml`, app/github/cache.py); a push to any branch whose head omoi recorded
moves that record along, so a person's push is where omoi's next check run goes."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from app.events.context import EventContext
from app.github import cache

router = Router()
_HEADS = "refs/heads/"


@router.register("push")
async def on_push(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    repo = data.get("repository") or {}
    full_name, ref = repo.get("full_name"), data.get("ref") or ""
    if not full_name or not ref.startswith(_HEADS):
        return
    branch = ref[len(_HEADS):]
    if branch == repo.get("default_branch"):
        cache.forget_repository(ctx.settings.database_url, full_name)
        ctx.log.info("repository_cache_cleared", repo=full_name, reason="push")
    before, after = data.get("before"), data.get("after")
    if data.get("deleted"):  # the branch is gone: omoi creates it again before it writes there
        cache.forget_branch(ctx.settings.database_url, full_name, branch)
    elif before and after:
        cache.advance_head(ctx.settings.database_url, full_name, branch, before, after)
