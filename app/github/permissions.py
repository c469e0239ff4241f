"""Who may drive omoi: people with write, maintain or admin access; bots only when allow-listed."""
from __future__ import annotations

import time
from dataclasses import dataclass

import gidgethub

from app.config import Settings
from app.github import cache

WRITE_ROLES = {"admin", "maintain", "write"}
_cache: dict[tuple[str, str, str], tuple[float, "Decision"]] = {}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    permission: str  # GitHub's role name, or "bot"/"none" (logged; nobody is told more than that it was refused)


def _bot_app_id(sender: dict) -> int | None:
    # Apps act as "<slug>[bot]" users; the webhook carries no app id for them, so the
    # allow-list holds the bot *user* ids GitHub shows in `sender.id`.
    return sender.get("id")


async def check_sender(gh, settings: Settings, repo_full_name: str, sender: dict) -> Decision:
    login = sender.get("login", "")
    if sender.get("type") == "Bot" or login.endswith("[bot]"):
        if _bot_app_id(sender) in settings.allowed_bot_app_ids:
            return Decision(True, "bot")
        return Decision(False, "bot")
    key = (settings.github_api_url, repo_full_name.lower(), login.lower())
    hit = _cache.get(key)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    # Shared by every process for the same permission_cache_seconds (web and workers share no memory).
    shared_key = f"perm:{settings.github_api_url}:{repo_full_name.lower()}:{login.lower()}"
    shared = cache.get(settings.database_url, shared_key)
    if isinstance(shared, dict):
        decision = Decision(bool(shared["allowed"]), str(shared["permission"]))
        _cache[key] = (time.monotonic() + settings.permission_cache_seconds, decision)
        return decision
    owner, repo = repo_full_name.split("/", 1)
    try:
        data = await gh.getitem(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            url_vars={"owner": owner, "repo": repo, "username": login},
        )
        role = data.get("role_name") or data.get("permission") or "none"
        # Custom roles have their own names; GitHub maps them onto a base `permission`.
        allowed = role in WRITE_ROLES or data.get("permission") in ("admin", "write")
    except gidgethub.BadRequest as exc:
        if exc.status_code != 404:  # 404: not a collaborator at all
            raise
        role, allowed = "none", False
    decision = Decision(allowed, role)
    _cache[key] = (time.monotonic() + settings.permission_cache_seconds, decision)
    if settings.permission_cache_seconds > 0:
        cache.put(settings.database_url, shared_key, {"allowed": allowed, "permission": role},
                  settings.permission_cache_seconds)
    return decision


def clear_cache() -> None:
    _cache.clear()
