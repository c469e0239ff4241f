"""Branches and files written through the REST API (no clone needed for a few Markdown files)."""
from __future__ import annotations

import base64
import re

import gidgethub

from app.github import repo_vars



def branch_name(issue_number: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].strip("-") or "change"
    return f"omoi/issue-{issue_number}-{slug}"


async def ensure_branch(gh, full_name: str, branch: str, from_sha: str) -> None:
    try:
        await gh.getitem("/repos/{owner}/{repo}/git/ref/{ref}", url_vars={**repo_vars(full_name), "ref": f"heads/{branch}"})
        return
    except gidgethub.BadRequest as exc:
        if exc.status_code != 404:
            raise
    try:
        await gh.post("/repos/{owner}/{repo}/git/refs", url_vars=repo_vars(full_name),
                      data={"ref": f"refs/heads/{branch}", "sha": from_sha})
    except gidgethub.BadRequest as exc:
        if exc.status_code != 422:  # created meanwhile by a retry: fine
            raise


async def put_file(gh, full_name: str, branch: str, path: str, content: str, message: str) -> bool:
    """Create or update one file on a branch; False when it already had this content."""
    sha = None
    try:
        current = await gh.getitem("/repos/{owner}/{repo}/contents/{path}{?ref}",
                                   url_vars={**repo_vars(full_name), "path": path, "ref": branch})
        if isinstance(current, dict):
            sha = current.get("sha")
            if base64.b64decode(current.get("content", "")).decode("utf-8", "replace") == content:
                return False
    except gidgethub.BadRequest as exc:
        if exc.status_code != 404:
            raise
    data = {"message": message, "content": base64.b64encode(content.encode()).decode(), "branch": branch}
    if sha:
        data["sha"] = sha
    await gh.put("/repos/{owner}/{repo}/contents/{path}", url_vars={**repo_vars(full_name), "path": path}, data=data)
    return True
