"""Branches and files written through the REST API (no clone needed for a few Markdown files); omoi's
records (app/github/cache.py) spare the reads before the writes."""
from __future__ import annotations

import base64
import hashlib
import re

import gidgethub

from app.github import cache, repo_vars


def branch_name(issue_number: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-") or "change"
    return f"omoi/issue-{issue_number}-{slug}"


def _db(gh) -> str | None:
    settings = getattr(gh, "settings", None)  # omoi's client carries its settings (app/github/client.py)
    return getattr(settings, "database_url", None)


async def ensure_branch(gh, full_name: str, branch: str, from_sha: str) -> None:
    """The branch exists: known from omoi's records, or created (a 422 says it already existed)."""
    db, key = _db(gh), cache.branch_key(full_name, branch)
    if db and cache.get(db, key):
        return
    try:
        created = await gh.post("/repos/{owner}/{repo}/git/refs", url_vars=repo_vars(full_name),
                                data={"ref": f"refs/heads/{branch}", "sha": from_sha})
    except gidgethub.BadRequest as exc:
        if exc.status_code != 422:  # "Reference already exists": created earlier or by a retry
            raise
    else:
        if db and (sha := ((created or {}).get("object") or {}).get("sha")):
            cache.remember_head(db, full_name, branch, sha)
    if db:
        cache.put(db, key, {"exists": True})


def branch_known(gh, full_name: str, branch: str) -> bool:
    """omoi created or saw the branch (its records): no need to read a ref to create it from."""
    db = _db(gh)
    return bool(db and cache.get(db, cache.branch_key(full_name, branch)))


def forget_branch(gh, full_name: str, branch: str) -> None:
    if db := _db(gh):
        cache.forget_branch(db, full_name, branch)


async def put_file(gh, full_name: str, branch: str, path: str, content: str, message: str) -> bool:
    """Create or update one file on a branch; False when it already had this content. What omoi wrote
    last (blob sha, digest) is in its records, so the usual write is one PUT with nothing read first."""
    db, key = _db(gh), cache.file_key(full_name, branch, path)
    digest = hashlib.sha256(content.encode()).hexdigest()[:32]
    record = cache.get(db, key) if db else None
    if isinstance(record, dict) and record.get("digest") == digest:
        return False
    data = {"message": message, "content": base64.b64encode(content.encode()).decode(), "branch": branch}
    if isinstance(record, dict) and record.get("sha"):
        data["sha"] = record["sha"]
    try:
        written = await _put(gh, full_name, path, data)
    except gidgethub.BadRequest as exc:
        if exc.status_code == 404:  # the branch is gone (someone deleted it): create it again next time
            forget_branch(gh, full_name, branch)
            raise
        if exc.status_code not in (409, 422):  # 422: it exists and needs its sha; 409: someone changed it
            raise
        written = await _read_then_put(gh, full_name, branch, path, content, data)
    if db and written is not None:
        cache.put(db, key, {"sha": written, "digest": digest})
    return written is not None


async def _put(gh, full_name: str, path: str, data: dict) -> str | None:
    answer = await gh.put("/repos/{owner}/{repo}/contents/{path}", url_vars={**repo_vars(full_name), "path": path},
                          data=data) or {}
    db, commit = _db(gh), (answer.get("commit") or {}).get("sha")
    if db and commit:  # the branch's new head: the run's check run goes there without reading the ref
        cache.remember_head(db, full_name, data["branch"], commit)
    return (answer.get("content") or {}).get("sha") or ""


async def _read_then_put(gh, full_name: str, branch: str, path: str, content: str, data: dict) -> str | None:
    """The file's current sha read first; None when it already had this content."""
    data = {k: v for k, v in data.items() if k != "sha"}
    try:
        current = await gh.getitem("/repos/{owner}/{repo}/contents/{path}{?ref}",
                                   url_vars={**repo_vars(full_name), "path": path, "ref": branch})
        if isinstance(current, dict):
            data["sha"] = current.get("sha")
            if base64.b64decode(current.get("content", "")).decode("utf-8", "replace") == content:
                return None
    except gidgethub.BadRequest as exc:
        if exc.status_code != 404:
            raise
    return await _put(gh, full_name, path, data)
