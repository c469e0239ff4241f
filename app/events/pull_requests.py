"""pull_request events on omoi's pull requests: merged (the spec is complete), closed unmerged (the run
ends, its work stays on the branch), reopened (the run continues). Pull requests omoi did not open are
left alone (app/commands/lifecycle.py spec_of_pull_request)."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from app.commands import lifecycle
from app.events.context import EventContext

router = Router()


def _omoi_spec(event: sansio.Event, ctx: EventContext) -> tuple[dict, int | None]:
    """The pull request, and the spec whose run opened it (None: not one of omoi's)."""
    pr = event.data["pull_request"]
    return pr, lifecycle.spec_of_pull_request(ctx.settings, event.data["repository"]["full_name"], pr)


@router.register("pull_request", action="closed")
async def on_closed(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    pr, spec_id = _omoi_spec(event, ctx)
    if spec_id is None:
        return
    gh = await ctx.gh()
    user = data["sender"].get("login", "")
    if pr.get("merged"):
        await lifecycle.complete(gh, ctx.settings, spec_id, (pr.get("merged_by") or {}).get("login") or user)
    else:
        await lifecycle.pull_request_closed(gh, ctx.settings, spec_id, user)
    ctx.log.info("pull_request_closed", pr=pr["number"], merged=bool(pr.get("merged")), spec_id=spec_id)


@router.register("pull_request", action="reopened")
async def on_reopened(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    _, spec_id = _omoi_spec(event, ctx)
    if spec_id is None:
        return
    await lifecycle.pull_request_reopened(await ctx.gh(), ctx.settings, spec_id, data["sender"].get("login", ""),
                                          f"pr:{ctx.delivery_id}")
