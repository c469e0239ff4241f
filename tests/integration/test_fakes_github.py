"""Tests of the GitHub stand-in itself (tests/fakes), driven through gidgethub like the app.

If these fail, every test built on the fake is suspect, so they check the
behaviours the app relies on: token exchange, pagination, comment edits,
reaction idempotency, spec enforcement, fault injection and webhook fixtures.
"""

from __future__ import annotations

import json

import aiohttp
import gidgethub
import gidgethub.apps
import gidgethub.sansio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from gidgethub.aiohttp import GitHubAPI

from tests.fakes.github import FakeGitHub
from tests.fakes.openapi import OpenAPIValidator
from tests.fakes.webhooks import (
    headers_for,
    installation_created_payload,
    issue_comment_created_payload,
    issues_labeled_payload,
    load_examples,
    sign,
)

APP_ID = 123
INSTALLATION = 77
REPO = "octo/hello"


@pytest.fixture
def fake(rsa_keypair):
    with FakeGitHub(app_id=APP_ID, app_slug="omoi-test", public_key_pem=rsa_keypair[1]) as gh:
        gh.add_installation(INSTALLATION, "octo")
        gh.add_repo(REPO, installation_id=INSTALLATION, files={"README.md": "hello\n", "src/x.py": "x = 1\n"})
        gh.add_issue(REPO, 1, title="Add a thing", body="Please", user="alice", labels=["omoi"])
        yield gh


async def _installation_gh(session: aiohttp.ClientSession, fake: FakeGitHub, private_key: str) -> GitHubAPI:
    app_gh = GitHubAPI(session, "omoi-tests", base_url=fake.url)
    token = await gidgethub.apps.get_installation_access_token(
        app_gh, installation_id=str(INSTALLATION), app_id=str(APP_ID), private_key=private_key
    )
    return GitHubAPI(session, "omoi-tests", oauth_token=token["token"], base_url=fake.url)


async def test_token_exchange_and_auth(fake, rsa_keypair):
    async with aiohttp.ClientSession() as session:
        gh = await _installation_gh(session, fake, rsa_keypair[0])
        repo = await gh.getitem("/repos/{owner}/{repo}", {"owner": "octo", "repo": "hello"})
        assert repo["full_name"] == REPO and repo["default_branch"] == "main"

        # A JWT signed by another key is refused, as is a made-up installation token.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gidgethub.apps.get_installation_access_token(
                GitHubAPI(session, "t", base_url=fake.url), installation_id=str(INSTALLATION),
                app_id=str(APP_ID), private_key=other,
            )
        assert exc.value.status_code == 401
        bogus = GitHubAPI(session, "t", oauth_token="ghs_bogus", base_url=fake.url)
        with pytest.raises(gidgethub.BadRequest) as exc:
            await bogus.getitem("/repos/octo/hello")
        assert exc.value.status_code == 401
        # A repository outside the installation is invisible (404, like GitHub).
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.getitem("/repos/someone/else")
        assert exc.value.status_code == 404

    assert fake.tokens_issued == {INSTALLATION: 1}
    call = fake.calls_matching("GET", r"^/repos/octo/hello$")[0]
    assert call.headers["Authorization"].startswith("token ghs_")
    assert fake.calls[-1].status == 404
    assert fake.violations == []


async def test_pagination_comment_edit_and_permissions(fake, rsa_keypair):
    fake.set_permission(REPO, "bob", "maintain")
    async with aiohttp.ClientSession() as session:
        gh = await _installation_gh(session, fake, rsa_keypair[0])
        url = "/repos/octo/hello/issues/1/comments"
        for i in range(5):
            await gh.post(url, data={"body": f"comment {i}"})
        got = [c["body"] async for c in gh.getiter(url + "?per_page=2")]
        assert got == [f"comment {i}" for i in range(5)]
        assert len(fake.calls_matching("GET", r"/issues/1/comments$")) == 3  # 2 + 2 + 1

        first = fake.issue_comments(REPO, 1)[0]
        assert first["user"]["login"] == "omoi-test[bot]" and first["user"]["type"] == "Bot"
        assert first["performed_via_github_app"]["id"] == APP_ID
        patched = await gh.patch(f"/repos/octo/hello/issues/comments/{first['id']}", data={"body": "edited"})
        assert patched["body"] == "edited"
        assert fake.issue_comments(REPO, 1)[0]["body"] == "edited"

        with pytest.raises(gidgethub.BadRequest) as exc:  # GitHub's 65536-character limit
            await gh.post(url, data={"body": "x" * 65537})
        assert exc.value.status_code == 422

        perm = await gh.getitem("/repos/octo/hello/collaborators/bob/permission")
        assert (perm["permission"], perm["role_name"]) == ("write", "maintain")
        perm = await gh.getitem("/repos/octo/hello/collaborators/carol/permission")
        assert perm["permission"] == "none"
    assert fake.violations == []


async def test_reactions_are_idempotent(fake, rsa_keypair):
    async with aiohttp.ClientSession() as session:
        gh = await _installation_gh(session, fake, rsa_keypair[0])
        for _ in range(2):
            await gh.post("/repos/octo/hello/issues/1/reactions", data={"content": "eyes"})
    statuses = [c.status for c in fake.calls_matching("POST", r"/issues/1/reactions$")]
    assert statuses == [201, 200]  # GitHub answers 200 with the existing reaction
    assert [r["content"] for r in fake.reactions_on_issue(REPO, 1)] == ["eyes"]
    assert fake.violations == []


async def test_spec_violations_are_reported(fake, rsa_keypair):
    async with aiohttp.ClientSession() as session:
        gh = await _installation_gh(session, fake, rsa_keypair[0])
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.post("/repos/octo/hello/check-runs", data={"name": "omoi", "status": "finished"})
        assert exc.value.status_code == 422
        with pytest.raises(gidgethub.BadRequest):
            await gh.getitem("/repos/octo/hello/issuez/1")
    v = fake.violations
    assert any("'head_sha' is a required property" in x for x in v), v
    assert any("'finished' is not one of" in x for x in v), v
    assert any("/issuez/1" in x and "not in GitHub's REST API description" in x for x in v), v


def test_validator_prefers_literal_template():
    v = OpenAPIValidator()
    op = v.find_operation("GET", "/repos/o/r/issues/comments/5")
    assert op is not None and op.template == "/repos/{owner}/{repo}/issues/comments/{comment_id}"
    op = v.find_operation("GET", "/repos/o/r/contents/src/deep/x.py")
    assert op is not None and op.path_params["path"] == "src/deep/x.py"
    assert v.check_request("POST", "/graphql", {}, {"query": "{ viewer { login } }"}) == []
    assert v.check_response("POST", "/repos/o/r/issues/1/comments", 200, {}) != []  # 201 is documented


async def test_fault_injection(fake, rsa_keypair):
    fake.fail_next("GET", r"/issues/1$", 502)
    fake.fail_next("POST", r"/comments$", 403, headers={"retry-after": "1"})
    async with aiohttp.ClientSession() as session:
        gh = await _installation_gh(session, fake, rsa_keypair[0])
        with pytest.raises(gidgethub.GitHubBroken):
            await gh.getitem("/repos/octo/hello/issues/1")
        assert (await gh.getitem("/repos/octo/hello/issues/1"))["number"] == 1  # only once
        async with session.post(f"{fake.url}/repos/octo/hello/issues/1/comments", json={"body": "hi"},
                                headers={"Authorization": f"token {gh.oauth_token}"}) as resp:
            assert resp.status == 403 and resp.headers["retry-after"] == "1"
            assert int(resp.headers["x-ratelimit-limit"]) == 5000
    assert fake.issue_comments(REPO, 1) == []
    assert fake.violations == []


def test_contents_tree_and_check_runs_sync(fake, rsa_keypair):
    """Plain urllib, as a separate process would use it; also checks file/tree shapes."""
    import base64
    import time
    import urllib.request

    import jwt

    now = int(time.time())
    app_jwt = jwt.encode({"iat": now - 60, "exp": now + 540, "iss": str(APP_ID)}, rsa_keypair[0], algorithm="RS256")

    def call(method, path, body=None, auth=None):
        req = urllib.request.Request(fake.url + path, method=method, headers={"Authorization": auth},
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"null")

    _, tok = call("POST", f"/app/installations/{INSTALLATION}/access_tokens", auth=f"Bearer {app_jwt}")
    auth = f"token {tok['token']}"
    _, f = call("GET", "/repos/octo/hello/contents/src/x.py?ref=main", auth=auth)
    assert base64.b64decode(f["content"]) == b"x = 1\n"
    _, tree = call("GET", "/repos/octo/hello/git/trees/main?recursive=1", auth=auth)
    assert {e["path"] for e in tree["tree"] if e["type"] == "blob"} == {"README.md", "src/x.py"}
    status, cr = call("POST", "/repos/octo/hello/check-runs", {"name": "omoi", "head_sha": "a" * 40,
                                                               "status": "in_progress"}, auth)
    assert status == 201
    call("PATCH", f"/repos/octo/hello/check-runs/{cr['id']}",
         {"conclusion": "success", "output": {"title": "done", "summary": "ok"}}, auth)
    assert fake.check_runs(REPO)[0]["status"] == "completed"
    _, listed = call("GET", f"/repos/octo/hello/commits/{'a' * 40}/check-runs", auth=auth)
    assert listed["total_count"] == 1
    assert fake.violations == []


def test_webhook_examples_and_signatures():
    examples = load_examples()
    assert len(examples) == 329
    secret = "s3cret"

    def lower(headers):  # what a server's case-insensitive header mapping gives gidgethub
        return {k.lower(): v for k, v in headers.items()}

    for name, payload in examples:
        body = json.dumps(payload).encode()
        event = gidgethub.sansio.Event.from_http(lower(headers_for(name, body, secret)), body, secret=secret)
        assert event.event == name
    body = b'{"zen": "Keep it logically awesome."}'
    with pytest.raises(gidgethub.ValidationFailure):
        gidgethub.sansio.Event.from_http(lower(headers_for("ping", body, "wrong")), body, secret=secret)
    # The documented test vector from GitHub's "Validating webhook deliveries" page.
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_payload_builders_match_fake_ids():
    v = OpenAPIValidator()
    p = issues_labeled_payload(installation_id=INSTALLATION, repo_full_name=REPO, issue_number=1, label="omoi",
                               sender_login="alice", api_url="http://127.0.0.1:1")
    assert p["installation"]["id"] == INSTALLATION and p["label"]["name"] == "omoi"
    assert p["issue"]["comments_url"] == "http://127.0.0.1:1/repos/octo/hello/issues/1/comments"
    assert "api.github.com" not in json.dumps(p)
    assert v.validate_component("webhook-issues-labeled", p) == []
    c = issue_comment_created_payload(installation_id=INSTALLATION, repo_full_name=REPO, issue_number=3,
                                      body="/omoi go", sender_login="bob", on_pull_request=True)
    assert c["issue"]["pull_request"]["url"].endswith("/repos/octo/hello/pulls/3")
    assert c["comment"]["body"] == "/omoi go" and c["sender"]["login"] == "bob"
    assert v.validate_component("webhook-issue-comment-created", c) == []
    i = installation_created_payload(INSTALLATION, "octo", repos=["hello"])
    assert v.validate_component("webhook-installation-created", i) == []
    assert i["installation"]["account"]["login"] == "octo"
    assert i["repositories"][0]["full_name"] == REPO


async def test_etag_and_304_like_github(fake, rsa_keypair):
    """A GET answers an ETag; the same request with If-None-Match answers 304 with no body and leaves the
    rate limit alone; another token's ETag, or a changed resource, gets a fresh 200."""
    async with aiohttp.ClientSession() as session:
        gh = await _installation_gh(session, fake, rsa_keypair[0])
        url = f"{fake.url}/repos/octo/hello/issues/1"
        auth = {"Authorization": f"token {gh.oauth_token}", "Accept": "application/vnd.github+json"}
        async with session.get(url, headers=auth) as first:
            etag, used = first.headers["ETag"], int(first.headers["x-ratelimit-used"])
            assert first.status == 200 and etag.startswith('W/"')
        async with session.get(url, headers={**auth, "If-None-Match": etag}) as again:
            assert again.status == 304 and await again.read() == b""
            assert again.headers["ETag"] == etag and int(again.headers["x-ratelimit-used"]) == used
        other = await _installation_gh(session, fake, rsa_keypair[0])  # a second token
        async with session.get(url, headers={**auth, "Authorization": f"token {other.oauth_token}",
                                             "If-None-Match": etag}) as stranger:
            assert stranger.status == 200
        await gh.post("/repos/octo/hello/issues/1/comments", data={"body": "changes the issue"})
        fake.add_issue(REPO, 1, title="Edited", body="Please", user="alice", labels=["omoi"])
        async with session.get(url, headers={**auth, "If-None-Match": etag}) as changed:
            assert changed.status == 200 and (await changed.json())["title"] == "Edited"
    statuses = [c.status for c in fake.calls_matching("GET", r"^/repos/octo/hello/issues/1$")]
    assert statuses == [200, 304, 200, 200]
    assert [c.not_modified for c in fake.calls_matching("GET", r"^/repos/octo/hello/issues/1$")] == \
        [False, True, False, False]
    assert fake.violations == []


async def test_graphql_objects_and_inline_fragments(fake, rsa_keypair):
    """`defaultBranchRef` and `object(expression:)` with `... on Blob` as GitHub answers them; a fragment
    on a type the field cannot be, or a field of Blob asked without a fragment, is refused like GitHub."""
    query = """query($owner: String!, $name: String!) { repository(owner: $owner, name: $name) {
      defaultBranchRef { name target { oid ... on Commit { oid } } }
      readme: object(expression: "HEAD:README.md") { __typename ... on Blob { text isBinary byteSize } }
      missing: object(expression: "HEAD:nope.md") { ... on Blob { text } }
      src: object(expression: "main:src") { __typename oid } } }"""
    async with aiohttp.ClientSession() as session:
        gh = await _installation_gh(session, fake, rsa_keypair[0])
        data = await gh.graphql(query, endpoint=f"{fake.url}/graphql", owner="octo", name="hello")
        repo = data["repository"]
        assert repo["defaultBranchRef"]["name"] == "main"
        assert repo["defaultBranchRef"]["target"]["oid"] == fake.branch_sha(REPO, "main")
        assert repo["readme"] == {"__typename": "Blob", "text": "hello\n", "isBinary": False, "byteSize": 6}
        assert repo["missing"] is None and repo["src"]["__typename"] == "Tree"
        with pytest.raises(gidgethub.GraphQLException):
            await gh.graphql('query { repository(owner: "octo", name: "hello") { object(expression: "HEAD:README.md")'
                             ' { text } } }', endpoint=f"{fake.url}/graphql")
        with pytest.raises(gidgethub.GraphQLException):
            await gh.graphql('query { repository(owner: "octo", name: "hello") { defaultBranchRef { ... on Blob'
                             ' { text } } } }', endpoint=f"{fake.url}/graphql")
    assert len(fake.violations) == 2  # the two refused documents
