"""What omoi knows of GitHub without asking again, kept in the database (web and workers are separate
processes and share nothing else): one table, `github_cache`, of keys and JSON values.

- `GET /repos/{owner}/{repo}` and `.github/omoi.yml` per installation (`resource_key`), served by the
  client (app/github/client.py) until a push to the default branch or an installation event empties
  them (app/events/pushes.py, installation.py); an expiry is the safety net for a missed event;
- omoi's own comments by marker (app/github/comments.py): their ids and what was last sent;
- the head omoi pushed to a branch (app/execution/gitwork.py), so a publish need not read the ref;
- the branches omoi created and the blob sha of each file it wrote (app/github/repo_files.py), so a
  spec file is written with one PUT and nothing read first;
- installation tokens, encrypted (app/github/auth.py), and people's permissions for as long as the
  deployment's permission_cache_seconds (app/github/permissions.py), shared by every process.

A failure of this table never fails a GitHub operation: a miss only costs the read it would save.
"""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Callable
from urllib.parse import urlsplit

from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from app.config import get_settings
from app.db.models import GitHubCache
from app.db.session import connection, session_scope
from app.observability.logs import get_logger
from app.timeutil import as_utc, utc_now

log = get_logger("omoi.github.cache")
RESOURCE_SECONDS = 3600  # metadata and config: a missed webhook is forgotten within the hour
# GETs the client answers from the table: the repository itself and its omoi configuration.
_RESOURCES = re.compile(r"/repos/[^/?]+/[^/?]+(/contents/\.github/omoi\.yml)?")


_GET = select(GitHubCache.value, GitHubCache.expires_at).where(GitHubCache.key == bindparam("key"))


def get(database_url: str, key: str):
    try:
        with connection(database_url) as conn:  # a read before most GitHub calls: no ORM session
            row = conn.execute(_GET, {"key": key}).first()
        if row is None or (row[1] is not None and as_utc(row[1]) <= utc_now()):
            return None
        return row[0]
    except SQLAlchemyError as exc:
        log.warning("github_cache_unavailable", error=exc.__class__.__name__)
        return None


def put(database_url: str, key: str, value, seconds: float | None = None) -> None:
    expires = utc_now() + timedelta(seconds=seconds) if seconds else None
    for _ in range(2):  # two writers inserting the same key at once: the second one updates
        try:
            with session_scope(database_url) as s:
                row = s.get(GitHubCache, key)
                if row is None:
                    s.add(GitHubCache(key=key, value=value, expires_at=expires))
                else:
                    row.value, row.expires_at = value, expires
            return
        except IntegrityError:
            continue
        except SQLAlchemyError as exc:
            log.warning("github_cache_unavailable", error=exc.__class__.__name__)
            return


def _literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def drop(database_url: str, *keys: str, prefixes: tuple[str, ...] = ()) -> None:
    conditions = [GitHubCache.key.in_(keys)] if keys else []
    conditions += [GitHubCache.key.like(_literal(p) + "%", escape="\\") for p in prefixes]
    if not conditions:
        return
    with session_scope(database_url) as s:
        s.execute(delete(GitHubCache).where(or_(*conditions)))


# --- repository metadata and configuration (served by the client) -----------------------------


def resource_key(installation_id: int, path: str) -> str | None:
    """The key of a GET the client may answer from the table (`path` without the API's base), or None."""
    if _RESOURCES.fullmatch(path) is None:
        return None
    return f"res:{path.lower()}@{installation_id}"


def forget_repository(database_url: str, full_name: str) -> None:
    """A push to the default branch (a new config) or an installation change: read them again."""
    base = f"res:/repos/{full_name.lower()}"
    drop(database_url, prefixes=(f"{base}@", f"{base}/contents/.github/omoi.yml@"))


def forget_installation(database_url: str, installation_id: int) -> None:
    with session_scope(database_url) as s:
        s.execute(delete(GitHubCache).where(GitHubCache.key.like(f"res:%@{int(installation_id)}")))


# --- omoi's own comments ------------------------------------------------------------------------


def comment_key(full_name: str, issue_number: int, marker_prefix: str) -> str:
    return f"comment:{full_name.lower()}#{issue_number}:{marker_prefix}"[:512]


# --- heads omoi pushed, files omoi wrote --------------------------------------------------------


def head_key(full_name: str, branch: str) -> str:
    return f"head:{full_name.lower()}:{branch}"


def pushed_head(database_url: str, full_name: str, branch: str) -> str | None:
    value = get(database_url, head_key(full_name, branch))
    return value.get("sha") if isinstance(value, dict) else None


def remember_head(database_url: str, full_name: str, branch: str, sha: str,
                  descends: Callable[[str], bool] | None = None) -> None:
    """omoi pushed `sha` to `branch`. Pushes are never forced, so a newer push descends from an older
    one: `descends(old)` (is `old` an ancestor of `sha`?) keeps a slower writer from putting back an
    older head than another process recorded meanwhile."""
    old = pushed_head(database_url, full_name, branch)
    if old and old != sha and descends is not None and not descends(old):
        return
    put(database_url, head_key(full_name, branch), {"sha": sha})


def remember_push(clone_url: str, branch: str, sha: str, descends: Callable[[str], bool]) -> None:
    """`remember_head` for a push from omoi's own clone (app/execution/gitwork.py), which knows its URL."""
    path = urlsplit(clone_url).path.strip("/")
    full_name = path[:-4] if path.endswith(".git") else path
    try:  # the clone carries no settings: this process's own
        remember_head(get_settings().database_url, full_name, branch, sha, descends)
    except Exception as exc:  # noqa: BLE001 - a missing record costs one read of the ref later, nothing more
        log.warning("pushed_head_not_recorded", error=exc.__class__.__name__)


def advance_head(database_url: str, full_name: str, branch: str, before: str, after: str) -> None:
    """A push event: someone (omoi or a person) moved `branch` from `before` to `after`; the recorded
    head follows if it was `before` (an older event never moves it back)."""
    if pushed_head(database_url, full_name, branch) == before:
        put(database_url, head_key(full_name, branch), {"sha": after})


def branch_key(full_name: str, branch: str) -> str:
    return f"branch:{full_name.lower()}:{branch}"


def forget_branch(database_url: str, full_name: str, branch: str) -> None:
    drop(database_url, head_key(full_name, branch), branch_key(full_name, branch),
         prefixes=(f"file:{full_name.lower()}:{branch}:",))


def file_key(full_name: str, branch: str, path: str) -> str:
    return f"file:{full_name.lower()}:{branch}:{path}"[:512]
