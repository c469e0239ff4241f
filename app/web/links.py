"""Signed, expiring links to the read-only status pages.

A link is `<public_url><path>?exp=<unix seconds>&sig=<hex>` where
`sig = HMAC-SHA256(key, "<path>\\n<exp>")` and `key` is derived from the webhook secret, so
no new secret has to be configured and rotating the webhook secret revokes every link.
Links are valid for 7 days; anything unsigned, tampered with, expired or dated further
ahead than that is refused (the web process answers 403).

`spec_status_url(settings, "owner/repo", 12)` is what a spec check run's `details_url` uses;
`run_status_url` what the `omoi / implement` check run's uses (the same page, at its run).
"""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Mapping
from urllib.parse import quote, urlencode

from app.config import Settings

LINK_TTL_SECONDS = 7 * 24 * 3600
CLOCK_SKEW_SECONDS = 300
_KEY_CONTEXT = b"omoi status links v1"


class StatusLinksUnavailable(RuntimeError):
    """No webhook secret is configured, so no key to sign links with."""


def _key(settings: Settings) -> bytes:
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise StatusLinksUnavailable("OMOI_WEBHOOK_SECRET is not set")
    # A derived key: a status signature can never double as a webhook signature.
    return hmac.new(settings.webhook_secret.get_secret_value().encode(), _KEY_CONTEXT, hashlib.sha256).digest()


def signature(settings: Settings, path: str, exp: int) -> str:
    return hmac.new(_key(settings), f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()


def sign_path(settings: Settings, path: str, *, now: float | None = None, ttl: int = LINK_TTL_SECONDS) -> str:
    """`path?exp=...&sig=...` (relative), valid for `ttl` seconds (at most 7 days)."""
    exp = int((time.time() if now is None else now) + min(ttl, LINK_TTL_SECONDS))
    return f"{path}?{urlencode({'exp': exp, 'sig': signature(settings, path, exp)})}"


def verify(settings: Settings, path: str, query: Mapping[str, str], *, now: float | None = None) -> bool:
    """True only for a correctly signed link to exactly `path` that has not expired."""
    exp_text, sig = query.get("exp", ""), query.get("sig", "")
    if not exp_text.isdigit() or not sig or len(exp_text) > 12:
        return False
    exp = int(exp_text)
    now = time.time() if now is None else now
    if exp < now or exp > now + LINK_TTL_SECONDS + CLOCK_SKEW_SECONDS:
        return False
    try:
        expected = signature(settings, path, exp)
    except StatusLinksUnavailable:
        return False
    return hmac.compare_digest(expected, sig.lower())


def spec_status_path(repo_full_name: str, issue_number: int) -> str:
    owner, repo = repo_full_name.split("/", 1)
    return f"/status/{quote(owner, safe='')}/{quote(repo, safe='')}/{int(issue_number)}"


def installation_status_path(installation_id: int) -> str:
    return f"/status/installations/{int(installation_id)}"


def spec_status_url(settings: Settings, repo_full_name: str, issue_number: int, *, now: float | None = None) -> str:
    """Absolute signed link to one spec's status page (e.g. a check run's `details_url`)."""
    return settings.resolved_public_url() + sign_path(settings, spec_status_path(repo_full_name, issue_number), now=now)


def installation_status_url(settings: Settings, installation_id: int, *, now: float | None = None) -> str:
    """Absolute signed link to the page listing an installation's specs."""
    return settings.resolved_public_url() + sign_path(settings, installation_status_path(installation_id), now=now)


RUN_LINK_STEP_SECONDS = 24 * 3600
RUN_ANCHOR = "#run"


def run_status_url(settings: Settings, repo_full_name: str, issue_number: int, *, now: float | None = None) -> str | None:
    """Absolute signed link to the run on a spec's status page, for the implement check run's `details_url`;
    None when no webhook secret is configured (no key to sign with).

    The expiry is counted from the start of the current UTC day, so the link stays the same all day
    (valid 6 to 7 days): a check run body that is only re-sent when it changes does not change every second.
    """
    now = time.time() if now is None else now
    try:
        return settings.resolved_public_url() + sign_path(
            settings, spec_status_path(repo_full_name, issue_number),
            now=now - now % RUN_LINK_STEP_SECONDS) + RUN_ANCHOR
    except StatusLinksUnavailable:
        return None
