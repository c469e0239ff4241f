"""installation and installation_repositories: which accounts and repositories omoi serves. Either
empties what omoi cached of the installation's repositories (permissions or access changed)."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router

from app.db.session import session_scope
from app.events.context import EventContext
from app.events.records import upsert_installation, upsert_repository
from app.github import cache

router = Router()

_STATE = {
    "created": {"deleted": False, "suspended": False},
    "deleted": {"deleted": True},
    "suspend": {"suspended": True},
    "unsuspend": {"suspended": False},
    "new_permissions_accepted": {},
}


@router.register("installation")
async def on_installation(event: sansio.Event, ctx: EventContext) -> None:
    action = event.data.get("action")
    changes = _STATE.get(action)
    if changes is None:
        return
    inst = event.data["installation"]
    cache.forget_installation(ctx.settings.database_url, inst["id"])
    with session_scope(ctx.settings.database_url) as s:
        upsert_installation(s, inst, **changes)
        s.flush()
        for repo in event.data.get("repositories") or []:
            upsert_repository(s, repo, inst["id"], removed=(action == "deleted"))
    ctx.log.info("installation_changed", action=action, account=(inst.get("account") or {}).get("login"))


@router.register("installation_repositories")
async def on_installation_repositories(event: sansio.Event, ctx: EventContext) -> None:
    inst = event.data["installation"]
    cache.forget_installation(ctx.settings.database_url, inst["id"])
    with session_scope(ctx.settings.database_url) as s:
        upsert_installation(s, inst)
        s.flush()
        for repo in event.data.get("repositories_added") or []:
            upsert_repository(s, repo, inst["id"])
        for repo in event.data.get("repositories_removed") or []:
            upsert_repository(s, repo, inst["id"], removed=True)
