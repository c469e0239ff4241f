"""The issue's title and body as planning last read them, kept on the spec (`specs.planning["issue"]`).

Every stage's prompt needs them; reading the issue from GitHub for each stage costs a call a stage. The
copy is dropped when GitHub says the issue was edited (app/events/issues.py), so the next stage reads
it again: an edit always reaches the next prompt.
"""
from __future__ import annotations

from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.github import repo_vars

KEY = "issue"


async def issue_of(gh, settings: Settings, spec_id: int, full_name: str, number: int) -> dict:
    """{"title", "body"} of the spec's issue: the kept copy, or GitHub's (then kept)."""
    with session_scope(settings.database_url) as s:
        kept = (s.get(Spec, spec_id).planning or {}).get(KEY)
    if kept:
        return kept
    issue = await gh.getitem("/repos/{owner}/{repo}/issues/{issue_number}",
                             url_vars={**repo_vars(full_name), "issue_number": number})
    return keep(settings, spec_id, issue)


def keep(settings: Settings, spec_id: int, issue: dict) -> dict:
    """Keep the title and body of `issue` (GitHub's issue object, from the API or a delivery)."""
    copy = {"title": issue.get("title") or "", "body": issue.get("body") or ""}
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.planning = {**(spec.planning or {}), KEY: copy}  # a new dict: the JSON column sees the change
    return copy


def forget(settings: Settings, spec_id: int) -> None:
    """The issue changed on GitHub: the next stage reads it again."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is not None and KEY in (spec.planning or {}):
            spec.planning = {k: v for k, v in spec.planning.items() if k != KEY}
