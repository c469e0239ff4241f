"""GitHub access: the client, auth, and small helpers shared by every module that calls GitHub."""
from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def repo_vars(full_name: str) -> dict:
    """`owner/name` as gidgethub url_vars."""
    owner, repo = full_name.split("/", 1)
    return {"owner": owner, "repo": repo}


def url_with_token(url: str, token: str) -> str:
    """An https clone URL carrying the installation token (sandbox providers strip it again)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"x-access-token:{token}@{parts.netloc}", parts.path, parts.query, parts.fragment))


def bot_identity(app_name: str, app_id: str | None) -> tuple[str, str]:
    """The git author GitHub attributes to the App's bot user."""
    login = f"{app_name}[bot]"
    return login, f"{app_id or 0}+{login}@users.noreply.github.com"
