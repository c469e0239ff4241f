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


# --- fewer calls (issue 15) ---------------------------------------------------------------------


def _forget_process_memory():
    """What a different worker process would have: none of this one's ETags or tokens."""
    from app.github import client

    client._ETAGS.clear()
    TOKENS.clear()


async def test_a_repeated_get_is_a_304_answered_from_the_etag_cache(gh_env):
    async with installation_client(get_settings(), 7) as gh:
        first = await gh.getitem("/repos/octo/hello/issues/1")
        again = await gh.getitem("/repos/octo/hello/issues/1")
    assert again == first
    calls = gh_env.calls_matching("GET", r"^/repos/octo/hello/issues/1$")
    assert [c.status for c in calls] == [200, 304]
    assert calls[1].headers["If-None-Match"].startswith('W/"')


async def test_repository_and_config_are_read_once_until_an_event_says_they_changed(gh_env):
    """`GET /repos/{owner}/{repo}` and `.github/omoi.yml` (a 404 too) come from the database in every
    process; a push to the default branch, or an installation event, makes omoi read them again."""
    from gidgethub import sansio

    from app.events import installation, pushes
    from app.events.context import EventContext
    from app.github import repo_config
    from app.observability.logs import get_logger

    settings = get_settings()
    for _ in range(3):
        _forget_process_memory()
        async with installation_client(settings, 7) as gh:
            assert (await gh.getitem("/repos/{owner}/{repo}", url_vars={"owner": "octo", "repo": "hello"}))["name"] == "hello"
            assert (await repo_config.load(gh, settings, REPO)).sha is None  # no file: a 404, remembered
    assert len(gh_env.calls_matching("GET", r"^/repos/octo/hello$")) == 1
    assert len(gh_env.calls_matching("GET", r"/contents/\.github/omoi\.yml$")) == 1

    gh_env.push_human_commit(REPO, "main", {".github/omoi.yml": "approvers: [alice]\n"}, "config")
    ctx = EventContext(settings, None, "d1", 7, get_logger("test"))
    push = {"ref": "refs/heads/main", "before": "0" * 40, "after": gh_env.branch_sha(REPO, "main"),
            "repository": {"full_name": REPO, "default_branch": "main"}, "installation": {"id": 7}}
    await pushes.router.dispatch(sansio.Event(push, event="push", delivery_id="d1"), ctx)
    async with installation_client(settings, 7) as gh:
        assert (await repo_config.load(gh, settings, REPO)).config.approvers == ["alice"]
        await gh.getitem("/repos/octo/hello")  # a push to main leaves the metadata read again too
    assert len(gh_env.calls_matching("GET", r"/contents/\.github/omoi\.yml$")) == 2

    other = {**push, "ref": "refs/heads/topic"}  # a push to another branch changes nothing cached
    await pushes.router.dispatch(sansio.Event(other, event="push", delivery_id="d2"), ctx)
    event = {"action": "new_permissions_accepted", "installation": {"id": 7, "account": {"login": "octo"}}}
    await installation.router.dispatch(sansio.Event(event, event="installation", delivery_id="d3"), ctx)
    async with installation_client(settings, 7) as gh:
        await repo_config.load(gh, settings, REPO)
        await gh.getitem("/repos/octo/hello")
    assert len(gh_env.calls_matching("GET", r"/contents/\.github/omoi\.yml$")) == 3
    assert len(gh_env.calls_matching("GET", r"^/repos/octo/hello$")) == 3


async def test_an_installation_token_is_shared_by_processes_and_stored_encrypted(gh_env):
    from sqlalchemy import select

    from app.db.models import GitHubCache
    from app.db.session import session_scope

    settings = get_settings()
    for _ in range(3):
        _forget_process_memory()
        async with installation_client(settings, 7) as gh:
            await gh.getitem("/repos/octo/hello/issues/1")
            token = gh.oauth_token
    assert gh_env.tokens_issued[7] == 1
    with session_scope(settings.database_url) as s:
        stored = " ".join(str(v) for v in s.scalars(select(GitHubCache.value)))
    assert "token" in stored and token not in stored


async def test_content_creating_writes_are_spaced(gh_env):
    from app.github.client import WRITE_SPACING_SECONDS

    async with installation_client(get_settings(), 7) as gh:
        t0 = time.monotonic()
        made = [await gh.post("/repos/octo/hello/issues/1/comments", data={"body": f"c{n}"}) for n in range(3)]
        spaced = time.monotonic() - t0
        for c in made:  # edits are not content-creating: not spaced
            await gh.patch(f"/repos/octo/hello/issues/comments/{c['id']}", data={"body": "edited"})
        edits = time.monotonic() - t0 - spaced
    assert spaced >= 2 * WRITE_SPACING_SECONDS and edits < 2 * WRITE_SPACING_SECONDS  # three spaced would be 2 s
    assert len(gh_env.issue_comments(REPO, 1)) == 3


async def test_comments_are_found_through_omois_records(gh_env):
    """A new marker is posted without listing the issue's comments; the same body again sends nothing;
    a new body is one PATCH, nothing read first; a post whose answer was lost is looked for first."""
    from app.github import comments

    settings = get_settings()
    async with installation_client(settings, 7) as gh:
        made = await comments.upsert(gh, settings, REPO, 1, "<!-- omoi:test a", "<!-- omoi:test a -->\none")
        same = await comments.upsert(gh, settings, REPO, 1, "<!-- omoi:test a", "<!-- omoi:test a -->\none")
        edited = await comments.upsert(gh, settings, REPO, 1, "<!-- omoi:test a", "<!-- omoi:test a -->\ntwo")
    assert (made.action, same.action, edited.action) == ("created", "unchanged", "updated")
    assert made.comment_id == same.comment_id == edited.comment_id
    assert [(c.method, c.path.rsplit("/", 2)[-2:]) for c in gh_env.calls if "/issues/" in c.path] == [
        ("POST", ["1", "comments"]), ("PATCH", ["comments", str(made.comment_id)])]
    assert [c["body"] for c in gh_env.issue_comments(REPO, 1)] == ["<!-- omoi:test a -->\ntwo"]

    gh_env.fail_next("POST", r"/issues/1/comments$", 502, performed=True)  # created, answer lost
    async with installation_client(settings, 7) as gh:
        lost = await comments.upsert(gh, settings, REPO, 1, "<!-- omoi:test b", "<!-- omoi:test b -->\nx")
        again = await comments.upsert(gh, settings, REPO, 1, "<!-- omoi:test b", "<!-- omoi:test b -->\nx")
    assert lost.comment_id == again.comment_id and again.action == "unchanged"
    assert len(gh_env.issue_comments(REPO, 1)) == 2


async def test_push_events_move_the_recorded_head_and_a_deleted_branch_is_forgotten(gh_env):
    """The head omoi recorded follows a push that continues it (a person's commit on omoi's branch), never
    an older event; a deleted branch leaves no record, so omoi creates it again before writing there."""
    from gidgethub import sansio

    from app.events import pushes
    from app.events.context import EventContext
    from app.github import cache
    from app.observability.logs import get_logger

    db, ctx = get_settings().database_url, EventContext(get_settings(), None, "d", 7, get_logger("test"))
    repo_json = {"full_name": REPO, "default_branch": "main"}
    cache.remember_head(db, REPO, "omoi/x", "a" * 40)
    cache.put(db, cache.branch_key(REPO, "omoi/x"), {"exists": True})

    async def push(before: str, after: str, deleted: bool = False) -> None:
        data = {"ref": "refs/heads/omoi/x", "before": before, "after": after, "deleted": deleted,
                "repository": repo_json, "installation": {"id": 7}}
        await pushes.router.dispatch(sansio.Event(data, event="push", delivery_id="d"), ctx)

    await push("a" * 40, "b" * 40)
    await push("9" * 40, "c" * 40)  # an older event, delivered late
    assert cache.pushed_head(db, REPO, "omoi/x") == "b" * 40
    await push("b" * 40, "0" * 40, deleted=True)
    assert cache.pushed_head(db, REPO, "omoi/x") is None and cache.get(db, cache.branch_key(REPO, "omoi/x")) is None
