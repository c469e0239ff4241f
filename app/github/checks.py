"""Check runs: created once per purpose, then edited as the work moves on."""
from __future__ import annotations

import gidgethub

from app.github import repo_vars
from app.timeutil import utc_now

SUMMARY_LIMIT = 65_535



async def upsert_check_run(
    gh,
    full_name: str,
    *,
    check_run_id: int | None,
    name: str,
    head_sha: str,
    title: str,
    summary: str,
    conclusion: str | None = None,
    text: str | None = None,
    details_url: str | None = None,
    actions: list[dict] | None = None,
) -> int:
    """Create the check run, or update it in place; returns its id."""
    data: dict = {
        "name": name,
        "status": "completed" if conclusion else "in_progress",
        "output": {"title": title[:255], "summary": summary[:SUMMARY_LIMIT]},
    }
    if text:
        data["output"]["text"] = text[:SUMMARY_LIMIT]
    if conclusion:
        data["conclusion"] = conclusion
        data["completed_at"] = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
    if details_url:
        data["details_url"] = details_url
    if actions is not None:  # buttons; an empty list removes them
        data["actions"] = actions
    if check_run_id:
        try:
            updated = await gh.patch(
                "/repos/{owner}/{repo}/check-runs/{check_run_id}",
                url_vars={**repo_vars(full_name), "check_run_id": check_run_id},
                data=data,
            )
            return updated["id"]
        except gidgethub.BadRequest as exc:
            if exc.status_code != 404:
                raise
    created = await gh.post(
        "/repos/{owner}/{repo}/check-runs", url_vars=repo_vars(full_name), data={**data, "head_sha": head_sha}
    )
    return created["id"]
