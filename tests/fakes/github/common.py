"""Constants, timestamps and ids shared by every part of the GitHub stand-in."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time


DOCS = "https://docs.github.com/rest"
RATE_LIMIT = 5000
JWT_LEEWAY_SECONDS = 60
TOKEN_TTL_SECONDS = 3600
MAX_COMMENT_BODY = 65536
PERMISSION_LEVELS = ("admin", "maintain", "write", "triage", "read", "none")
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
DEFAULT_INSTALLATION_PERMISSIONS = {
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}


def now_iso(t: float | None = None) -> str:
    """GitHub's timestamp format: ``2024-01-01T12:00:00Z``."""
    return dt.datetime.fromtimestamp(time.time() if t is None else t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def git_blob_sha(content: bytes) -> str:
    """The SHA git itself computes for a blob, so shas look and behave like real ones."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def graphql_id(prefix: str, ident: int) -> str:
    """A new-style global node id such as ``PRRT_kwDO...`` (opaque, stable)."""
    return f"{prefix}_kwDO" + base64.urlsafe_b64encode(str(ident).encode()).decode().rstrip("=")
