"""Which issue or pull request a delivery is about: events on one are handled in arrival order."""
from __future__ import annotations


def issue_key(payload: dict) -> str | None:
    """"owner/repo#number", or None for events not about one issue or PR (installations...)."""
    repo = payload.get("repository")
    target = payload.get("issue") or payload.get("pull_request")
    if not isinstance(repo, dict) or not isinstance(target, dict):
        return None
    name, number = repo.get("full_name"), target.get("number")
    if isinstance(name, str) and isinstance(number, int) and not isinstance(number, bool):
        return f"{name}#{number}"[:300]
    return None
