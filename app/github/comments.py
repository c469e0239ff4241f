"""Bot comments that are found again by their hidden marker and edited, never duplicated.

omoi's own records come first (app/github/cache.py, one row per marker: the comment's id and a digest of
the body last sent): a known comment is edited without being read, left alone when the body is the
same, and a marker omoi never posted is posted without listing the issue's comments. The listing is
left for what the records cannot tell: a post whose answer was lost, a comment someone deleted.
"""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import aiohttp
import gidgethub

from app.config import Settings
from app.github import cache, repo_vars
from app.github.client import single_attempt
from app.observability.logs import get_logger
from app.text.rendering import GITHUB_BODY_LIMIT

log = get_logger("omoi.github.comments")


@dataclass(frozen=True)
class Upserted:
    comment_id: int
    action: str  # created | updated | unchanged
    html_url: str = ""



def is_ours(comment: dict, settings: Settings) -> bool:
    via = comment.get("performed_via_github_app") or {}
    if via and settings.github_app_id and str(via.get("id")) == str(settings.github_app_id):
        return True
    user = comment.get("user") or {}
    return user.get("type") == "Bot" and user.get("login", "").lower() == f"{settings.app_name}[bot]".lower()


async def find_marked(gh, settings: Settings, repo_full_name: str, issue_number: int, marker_prefix: str) -> dict | None:
    async for comment in gh.getiter(
        "/repos/{owner}/{repo}/issues/{issue_number}/comments{?per_page}",
        url_vars={**repo_vars(repo_full_name), "issue_number": issue_number, "per_page": 100},
    ):
        if marker_prefix in (comment.get("body") or "") and is_ours(comment, settings):
            return comment
    return None


async def _edit(gh, repo_full_name: str, comment_id: int, body: str) -> Upserted:
    updated = await gh.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}",
                             url_vars={**repo_vars(repo_full_name), "comment_id": comment_id}, data={"body": body})
    return Upserted(updated["id"], "updated", updated.get("html_url", ""))


def _body_digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _remember(settings: Settings, key: str, done: Upserted, body: str) -> Upserted:
    cache.put(settings.database_url, key, {"id": done.comment_id, "digest": _body_digest(body), "url": done.html_url})
    return done


async def upsert(
    gh,
    settings: Settings,
    repo_full_name: str,
    issue_number: int,
    marker_prefix: str,
    body: str,
    known_id: int | None = None,
    body_changed: bool = False,
) -> Upserted:
    """Create the comment carrying `marker_prefix`, or edit it in place if it already exists (see the
    module's docstring for how omoi's records spare the reads)."""
    if len(body) > GITHUB_BODY_LIMIT:
        raise ValueError(f"comment body of {len(body)} characters exceeds GitHub's limit")
    key = cache.comment_key(repo_full_name, issue_number, marker_prefix)
    record = cache.get(settings.database_url, key)
    if isinstance(record, dict) and record.get("id") and record["id"] == (known_id or record["id"]):
        if record.get("digest") == _body_digest(body):
            return Upserted(record["id"], "unchanged", record.get("url", ""))
        known_id, body_changed = record["id"], True
    elif record == {"posting": True}:
        body_changed = False  # a post whose answer was lost: the listing below finds it or posts again
    elif record is None and not known_id:
        cache.put(settings.database_url, key, {"posting": True})
        return _remember(settings, key, await _post(gh, settings, repo_full_name, issue_number, marker_prefix, body),
                         body)
    done = await _upsert(gh, settings, repo_full_name, issue_number, marker_prefix, body, known_id, body_changed)
    return _remember(settings, key, done, body)


async def _upsert(
    gh,
    settings: Settings,
    repo_full_name: str,
    issue_number: int,
    marker_prefix: str,
    body: str,
    known_id: int | None = None,
    body_changed: bool = False,
) -> Upserted:
    """`body_changed`: the caller knows `known_id`'s body differs from `body` (it keeps what it sent), so
    the comment is edited without reading it first; a 404 (deleted by someone) falls back to finding
    or recreating it."""
    existing = None
    if known_id and body_changed:
        try:
            return await _edit(gh, repo_full_name, known_id, body)
        except gidgethub.BadRequest as exc:
            if exc.status_code != 404:
                raise
            known_id = None
    if known_id:
        try:
            existing = await gh.getitem(
                "/repos/{owner}/{repo}/issues/comments/{comment_id}",
                url_vars={**repo_vars(repo_full_name), "comment_id": known_id},
            )
        except gidgethub.BadRequest as exc:
            if exc.status_code != 404:  # deleted by someone: find or recreate it
                raise
    if existing is None:
        existing = await find_marked(gh, settings, repo_full_name, issue_number, marker_prefix)
    if existing is not None:
        if existing.get("body") == body:
            return Upserted(existing["id"], "unchanged", existing.get("html_url", ""))
        return await _edit(gh, repo_full_name, existing["id"], body)
    return await _post(gh, settings, repo_full_name, issue_number, marker_prefix, body)


async def _post(gh, settings: Settings, repo_full_name: str, issue_number: int, marker_prefix: str,
                body: str) -> Upserted:
    url_vars = {**repo_vars(repo_full_name), "issue_number": issue_number}
    try:
        with single_attempt():
            created = await gh.post("/repos/{owner}/{repo}/issues/{issue_number}/comments", url_vars=url_vars,
                                    data={"body": body})
    except (gidgethub.GitHubBroken, aiohttp.ClientError, asyncio.TimeoutError) as exc:
        # The answer was lost, not necessarily the comment: GitHub may have created it. Look for its
        # marker before posting again, so a 502 after the fact never doubles a comment.
        log.warning("comment_post_answer_lost", repo=repo_full_name, issue=issue_number, error=exc.__class__.__name__)
        found = await find_marked(gh, settings, repo_full_name, issue_number, marker_prefix)
        if found is not None:
            return Upserted(found["id"], "created", found.get("html_url", ""))
        created = await gh.post("/repos/{owner}/{repo}/issues/{issue_number}/comments", url_vars=url_vars,
                                data={"body": body})
    return Upserted(created["id"], "created", created.get("html_url", ""))


async def add_reaction(gh, repo_full_name: str, issue_number: int | None = None, comment_id: int | None = None, content: str = "eyes") -> None:
    """GitHub answers 200 for a reaction that already exists, so this is idempotent."""
    if comment_id is not None:
        url = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"
        url_vars = {**repo_vars(repo_full_name), "comment_id": comment_id}
    else:
        url = "/repos/{owner}/{repo}/issues/{issue_number}/reactions"
        url_vars = {**repo_vars(repo_full_name), "issue_number": issue_number}
    await gh.post(url, url_vars=url_vars, data={"content": content})
