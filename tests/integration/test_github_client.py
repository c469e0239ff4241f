"""The GitHub client against the stand-in: token cache, retries, rate limits, permissions."""
from __future__ import annotations

import time

import gidgethub
import pytest

from app.config import get_settings
from app.github import permissions
from app.github.auth import TOKENS
from app.github.client import installation_client, retry_delay

REPO = "octo/hello"


@pytest.fixture
def gh_env(github_env, fake_github):
    fake_github.add_installation(7, "octo")
    fake_github.add_repo(REPO, installation_id=7, files={"README.md": "hi\n"})
    fake_github.add_issue(REPO, 1, title="t", user="alice")
    return fake_github


async def test_installation_token_is_cached_until_near_expiry(gh_env, monkeypatch):
    settings = get_settings()
    for _ in range(3):
        async with installation_client(settings, 7) as gh:
            await gh.getitem("/repos/octo/hello/issues/1")
    assert gh_env.tokens_issued[7] == 1
    # a token inside the refresh margin is replaced before it is used
    monkeypatch.setattr(settings, "installation_token_refresh_margin_seconds", 3601)
    async with installation_client(settings, 7) as gh:
        await gh.getitem("/repos/octo/hello/issues/1")
    assert gh_env.tokens_issued[7] == 2


async def test_transient_5xx_is_retried(gh_env):
    gh_env.fail_next("GET", r"/repos/octo/hello/issues/1$", 502, times=2)
    async with installation_client(get_settings(), 7) as gh:
        issue = await gh.getitem("/repos/octo/hello/issues/1")
    assert issue["number"] == 1
    assert [c.status for c in gh_env.calls_matching("GET", r"/issues/1$")] == [502, 502, 200]


async def test_secondary_rate_limit_waits_for_retry_after(gh_env):
    gh_env.fail_next("POST", r"/issues/1/comments$", 403, headers={"retry-after": "1"},
                     body={"message": "You have exceeded a secondary rate limit"})
    async with installation_client(get_settings(), 7) as gh:
        t0 = time.monotonic()
        await gh.post("/repos/octo/hello/issues/1/comments", data={"body": "x"})
        assert time.monotonic() - t0 >= 1.0
    assert len(gh_env.issue_comments(REPO, 1)) == 1  # retried once, not duplicated


async def test_client_errors_are_not_retried(gh_env):
    async with installation_client(get_settings(), 7) as gh:
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.getitem("/repos/octo/hello/issues/999")
    assert exc.value.status_code == 404
    assert len(gh_env.calls_matching("GET", r"/issues/999$")) == 1


def test_retry_delay_rules():
    assert retry_delay(403, {"retry-after": "7"}, 0) == 7
    assert retry_delay(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}, 0, now=1000) == 11
    assert retry_delay(502, {}, 2) == 2.0
    assert retry_delay(404, {}, 0) is None
    assert retry_delay(403, {"x-ratelimit-remaining": "10"}, 0) is None  # a real permission error


async def test_permission_levels(gh_env):
    for login, level in (("w", "write"), ("m", "maintain"), ("a", "admin"), ("t", "triage"), ("r", "read")):
        gh_env.set_permission(REPO, login, level)
    settings = get_settings()
    async with installation_client(settings, 7) as gh:
        got = {login: (await permissions.check_sender(gh, settings, REPO, {"login": login, "type": "User"})).allowed
               for login in ("w", "m", "a", "t", "r", "stranger")}
        bot = await permissions.check_sender(gh, settings, REPO, {"login": "x[bot]", "type": "Bot", "id": 5})
    assert got == {"w": True, "m": True, "a": True, "t": False, "r": False, "stranger": False}
    assert not bot.allowed
    TOKENS.clear()


async def test_requests_carry_todays_media_type_and_a_pinned_api_version(gh_env):
    """GitHub's current Accept and a pinned X-GitHub-Api-Version on every REST call (the stand-in, like
    GitHub, refuses a version it does not serve); a caller's special media type is kept."""
    from app.github.client import API_VERSION

    async with installation_client(get_settings(), 7) as gh:
        await gh.getitem("/repos/octo/hello/issues/1")
        await gh.getitem("/repos/octo/hello/contents/README.md", accept="application/vnd.github.raw")
        with pytest.raises(gidgethub.BadRequest):  # what GitHub answers to a version it does not serve
            await gh.getitem("/repos/octo/hello/issues/1", extra_headers={"X-GitHub-Api-Version": "2001-01-01"})
    calls = [c for c in gh_env.calls if c.path.startswith("/repos/octo/hello/")]
    assert [c.headers.get("Accept") for c in calls[:2]] == ["application/vnd.github+json", "application/vnd.github.raw"]
    assert [c.headers.get("X-GitHub-Api-Version") for c in calls[:2]] == [API_VERSION, API_VERSION]
