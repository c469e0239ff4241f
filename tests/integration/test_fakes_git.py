"""Tests of FakeGitHub's git side: real bare repos, smart HTTP, refs/contents/PR endpoints, review threads, GraphQL.

The client side is what omoi will use: a real ``git`` over HTTP with an
installation token, gidgethub for REST and ``gh.graphql()`` for GraphQL.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import aiohttp
import gidgethub
import gidgethub.apps
import pytest
from gidgethub.aiohttp import GitHubAPI

from tests.fakes.git_backend import ZERO_SHA
from tests.fakes.github import FakeGitHub

APP_ID = 123
INSTALLATION = 77
OTHER_INSTALLATION = 88
REPO = "octo/hello"


@pytest.fixture
def fake(rsa_keypair):
    with FakeGitHub(app_id=APP_ID, app_slug="omoi-test", public_key_pem=rsa_keypair[1]) as gh:
        gh.add_installation(INSTALLATION, "octo")
        gh.add_installation(OTHER_INSTALLATION, "someone")
        gh.add_repo(REPO, installation_id=INSTALLATION,
                    files={"README.md": "hello\n", "src/x.py": "x = 1\ny = 2\nz = 3\n"})
        gh.add_repo("someone/else", installation_id=OTHER_INSTALLATION, files={"a.txt": "a\n"})
        gh.add_issue(REPO, 1, title="Add a thing", body="Please", user="alice", labels=["omoi"])
        yield gh


async def _token(session: aiohttp.ClientSession, fake: FakeGitHub, private_key: str,
                 installation: int = INSTALLATION) -> str:
    app_gh = GitHubAPI(session, "omoi-tests", base_url=fake.url)
    token = await gidgethub.apps.get_installation_access_token(
        app_gh, installation_id=str(installation), app_id=str(APP_ID), private_key=private_key
    )
    return token["token"]


def _git_env(home: Path) -> dict[str, str]:
    """A client git that ignores the developer's config and never prompts for credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="omoi", GIT_AUTHOR_EMAIL="omoi@example.com",
               GIT_COMMITTER_NAME="omoi", GIT_COMMITTER_EMAIL="omoi@example.com", LC_ALL="C")
    return env


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=_git_env(cwd), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc


def _authed_url(fake: FakeGitHub, token: str, full_name: str = REPO) -> str:
    return fake.clone_url(full_name).replace("http://", f"http://x-access-token:{token}@")


async def test_clone_push_and_inspect(fake, rsa_keypair, tmp_path):
    async with aiohttp.ClientSession() as session:
        token = await _token(session, fake, rsa_keypair[0])
        gh = GitHubAPI(session, "omoi-tests", oauth_token=token, base_url=fake.url)
        repo_json = await gh.getitem("/repos/octo/hello")
        assert repo_json["clone_url"] == fake.clone_url(REPO) == f"{fake.url}/octo/hello.git"

        work = tmp_path / "hello"
        _git(tmp_path, "clone", "--quiet", _authed_url(fake, token), str(work))
        assert (work / "README.md").read_text() == "hello\n"
        main_sha = _git(work, "rev-parse", "HEAD").stdout.strip()
        assert main_sha == fake.branch_sha(REPO, "main")
        assert fake.commits(REPO, "main")[0]["author"] == "octo <octo@example.com>"

        _git(work, "checkout", "--quiet", "-b", "omoi/issue-1")
        (work / "src" / "greet.py").write_text("print('hi')\n")
        (work / "README.md").write_text("hello\nworld\n")
        _git(work, "add", "-A")
        _git(work, "commit", "--quiet", "-m", "Add a greeting")
        new_sha = _git(work, "rev-parse", "HEAD").stdout.strip()
        _git(work, "push", "--quiet", "origin", "omoi/issue-1")

        assert fake.pushes == [(REPO, "refs/heads/omoi/issue-1", ZERO_SHA, new_sha)]
        commits = fake.commits(REPO, "omoi/issue-1")
        assert [c["message"] for c in commits] == ["Add a greeting", "Initial commit"]
        assert commits[0]["files"] == ["README.md", "src/greet.py"]
        assert commits[0]["author"] == "omoi <omoi@example.com>" and commits[0]["parents"] == [main_sha]
        assert fake.file_at(REPO, "omoi/issue-1", "src/greet.py") == "print('hi')\n"
        assert fake.file_at(REPO, "main", "src/greet.py") is None

        # A follow-up push is recorded with its old sha; a person's push shows up in git, not in pushes.
        human = fake.push_human_commit(REPO, "omoi/issue-1", {"NOTES.md": "by hand\n"}, "Human note")
        _git(work, "pull", "--quiet", "--no-rebase", "origin", "omoi/issue-1")
        assert (work / "NOTES.md").read_text() == "by hand\n"
        (work / "src" / "greet.py").write_text("print('hello')\n")
        _git(work, "commit", "--quiet", "-am", "Louder")
        newer = _git(work, "rev-parse", "HEAD").stdout.strip()
        _git(work, "push", "--quiet", "origin", "HEAD")
        assert fake.pushes[-1] == (REPO, "refs/heads/omoi/issue-1", human, newer)
        assert fake.git(REPO, "log", "--format=%s", "omoi/issue-1").splitlines() == [
            "Louder", "Human note", "Add a greeting", "Initial commit"]

        # REST reads come from the same repository.
        branch = await gh.getitem("/repos/{owner}/{repo}/branches/{branch}",
                                  {"owner": "octo", "repo": "hello", "branch": "omoi/issue-1"})
        assert branch["commit"]["sha"] == newer and branch["protected"] is False
        commit = await gh.getitem(f"/repos/octo/hello/commits/{new_sha}")
        assert {f["filename"]: f["status"] for f in commit["files"]} == {"README.md": "modified",
                                                                         "src/greet.py": "added"}
        assert commit["stats"] == {"additions": 2, "deletions": 0, "total": 2}
        cmp = await gh.getitem("/repos/octo/hello/compare/main...omoi/issue-1")
        assert (cmp["status"], cmp["ahead_by"], cmp["behind_by"]) == ("ahead", 3, 0)
        assert [c["commit"]["message"] for c in cmp["commits"]] == ["Add a greeting", "Human note", "Louder"]
        f = await gh.getitem("/repos/octo/hello/contents/src/greet.py?ref=omoi/issue-1")
        assert base64.b64decode(f["content"]) == b"print('hello')\n"
        tree = await gh.getitem("/repos/octo/hello/git/trees/omoi/issue-1?recursive=1")
        assert {e["path"] for e in tree["tree"] if e["type"] == "blob"} == {
            "README.md", "NOTES.md", "src/x.py", "src/greet.py"}
        runs = await gh.getitem(f"/repos/octo/hello/commits/omoi%2Fissue-1/check-runs")
        assert runs["total_count"] == 0
    assert fake.violations == [], "\n".join(fake.violations)


async def test_git_auth(fake, rsa_keypair, tmp_path):
    async with aiohttp.ClientSession() as session:
        token = await _token(session, fake, rsa_keypair[0])
        other = await _token(session, fake, rsa_keypair[0], OTHER_INSTALLATION)

    bad = _git(tmp_path, "clone", "--quiet", _authed_url(fake, "ghs_bogus"), str(tmp_path / "a"), check=False)
    assert bad.returncode != 0 and "Authentication failed" in bad.stderr
    # A real token of an installation without this repository is refused too.
    foreign = _git(tmp_path, "clone", "--quiet", _authed_url(fake, other), str(tmp_path / "b"), check=False)
    assert foreign.returncode != 0
    anonymous = _git(tmp_path, "clone", "--quiet", fake.clone_url(REPO), str(tmp_path / "c"), check=False)
    assert anonymous.returncode != 0
    refused = [c for c in fake.calls if c.path.endswith("/info/refs")]
    assert refused and all(c.status == 401 for c in refused)

    # http.extraHeader with a bearer token works (how a sandbox can avoid tokens in URLs).
    _git(tmp_path, "-c", f"http.extraHeader=Authorization: Bearer {token}", "clone", "--quiet",
         fake.clone_url(REPO), str(tmp_path / "d"))
    assert (tmp_path / "d" / "src" / "x.py").exists()

    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"{fake.clone_url(REPO)}/info/refs?service=git-upload-pack")
    assert exc.value.code == 401 and exc.value.headers["WWW-Authenticate"] == 'Basic realm="GitHub"'
    assert fake.violations == [], "\n".join(fake.violations)


async def test_non_fast_forward_push_is_rejected(fake, rsa_keypair, tmp_path):
    async with aiohttp.ClientSession() as session:
        token = await _token(session, fake, rsa_keypair[0])
    work = tmp_path / "w"
    _git(tmp_path, "clone", "--quiet", _authed_url(fake, token), str(work))
    _git(work, "checkout", "--quiet", "-b", "feature")
    (work / "f.txt").write_text("1\n")
    _git(work, "add", "f.txt")
    _git(work, "commit", "--quiet", "-m", "one")
    fake.fail_next("POST", r"/git-receive-pack$", 500)  # fault injection works for git too
    assert _git(work, "push", "--quiet", "origin", "feature", check=False).returncode != 0
    assert fake.branch_sha(REPO, "feature") is None and fake.pushes == []
    _git(work, "push", "--quiet", "origin", "feature")
    pushed = fake.branch_sha(REPO, "feature")

    _git(work, "commit", "--quiet", "--amend", "-m", "one, rewritten")
    forced = _git(work, "push", "--force", "origin", "feature", check=False)
    assert forced.returncode != 0 and "non-fast-forward" in forced.stderr
    assert fake.branch_sha(REPO, "feature") == pushed
    assert len(fake.pushes) == 1

    # Allowed when the fake is told so, except on protected branches (GitHub's GH006).
    fake.reject_force_push = False
    _git(work, "push", "--quiet", "--force", "origin", "feature")
    assert fake.branch_sha(REPO, "feature") == _git(work, "rev-parse", "HEAD").stdout.strip()
    fake.protect_branch(REPO, "main")
    main = fake.push_human_commit(REPO, "main", {"other.txt": "x\n"}, "Someone else's work")
    rejected = _git(work, "push", "--force", "origin", "feature:main", check=False)
    assert rejected.returncode != 0 and "GH006" in rejected.stderr
    assert fake.branch_sha(REPO, "main") == main
    assert [p[1] for p in fake.pushes] == ["refs/heads/feature", "refs/heads/feature"]
    assert fake.violations == [], "\n".join(fake.violations)


async def test_refs_contents_and_pull_requests(fake, rsa_keypair):
    async with aiohttp.ClientSession() as session:
        token = await _token(session, fake, rsa_keypair[0])
        gh = GitHubAPI(session, "omoi-tests", oauth_token=token, base_url=fake.url)
        main = await gh.getitem("/repos/octo/hello/git/ref/heads/main")
        assert main["ref"] == "refs/heads/main" and main["object"]["sha"] == fake.branch_sha(REPO, "main")

        ref = await gh.post("/repos/octo/hello/git/refs", data={"ref": "refs/heads/omoi/issue-1",
                                                                "sha": main["object"]["sha"]})
        assert ref["object"]["sha"] == main["object"]["sha"]
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.post("/repos/octo/hello/git/refs", data={"ref": "refs/heads/omoi/issue-1",
                                                              "sha": main["object"]["sha"]})
        assert exc.value.status_code == 422 and "Reference already exists" in str(exc.value)

        # Contents API: create, then update (the blob sha is required and must match).
        url = "/repos/octo/hello/contents/docs/spec.md"
        created = await gh.put(url, data={"message": "Add spec", "branch": "omoi/issue-1",
                                          "content": base64.b64encode(b"# Spec\n").decode()})
        assert created["commit"]["parents"][0]["sha"] == main["object"]["sha"]
        assert fake.file_at(REPO, "omoi/issue-1", "docs/spec.md") == "# Spec\n"
        assert fake.commits(REPO, "omoi/issue-1")[0]["author"].startswith("omoi-test[bot] <")
        update = {"message": "Edit spec", "branch": "omoi/issue-1", "content": base64.b64encode(b"# Spec v2\n").decode()}
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.put(url, data=update)
        assert exc.value.status_code == 422
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.put(url, data={**update, "sha": "0" * 40})
        assert exc.value.status_code == 409
        updated = await gh.put(url, data={**update, "sha": created["content"]["sha"]})
        assert updated["commit"]["parents"][0]["sha"] == created["commit"]["sha"]
        assert fake.file_at(REPO, "omoi/issue-1", "docs/spec.md") == "# Spec v2\n"
        assert fake.file_at(REPO, "main", "docs/spec.md") is None

        # PATCH a ref: fast-forward only unless forced.
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.patch("/repos/octo/hello/git/refs/heads/omoi/issue-1", data={"sha": created["commit"]["sha"]})
        assert exc.value.status_code == 422 and "not a fast forward" in str(exc.value)
        moved = await gh.patch("/repos/octo/hello/git/refs/heads/omoi/issue-1",
                               data={"sha": created["commit"]["sha"], "force": True})
        assert moved["object"]["sha"] == created["commit"]["sha"] == fake.branch_sha(REPO, "omoi/issue-1")

        # Pull requests share numbers with issues, and a PR is an issue too.
        pr = await gh.post("/repos/octo/hello/pulls", data={"title": "Spec for #1", "head": "omoi/issue-1",
                                                            "base": "main", "body": "Closes #1", "draft": True})
        assert (pr["number"], pr["draft"], pr["state"]) == (2, True, "open")
        assert pr["head"]["sha"] == created["commit"]["sha"] and pr["user"]["login"] == "omoi-test[bot]"
        assert (pr["commits"], pr["changed_files"]) == (1, 1)
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.post("/repos/octo/hello/pulls", data={"title": "again", "head": "omoi/issue-1", "base": "main"})
        assert exc.value.status_code == 422 and "already exists" in str(exc.value.errors)
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.post("/repos/octo/hello/pulls", data={"title": "x", "head": "nope", "base": "main"})
        assert exc.value.status_code == 422

        found = [p async for p in gh.getiter("/repos/octo/hello/pulls?head=octo:omoi/issue-1&state=open")]
        assert [p["number"] for p in found] == [2]
        assert [p async for p in gh.getiter("/repos/octo/hello/pulls?head=octo:other&state=open")] == []
        issue = await gh.getitem("/repos/octo/hello/issues/2")
        assert issue["pull_request"]["url"].endswith("/pulls/2")
        await gh.post("/repos/octo/hello/issues/2/comments", data={"body": "Ready for review"})
        await gh.post("/repos/octo/hello/issues/2/reactions", data={"content": "rocket"})
        assert fake.issue_comments(REPO, 2)[0]["body"] == "Ready for review"

        patched = await gh.patch("/repos/octo/hello/pulls/2", data={"title": "Spec for #1 (v2)", "state": "closed"})
        assert (patched["title"], patched["state"]) == ("Spec for #1 (v2)", "closed")
        assert (await gh.getitem("/repos/octo/hello/issues/2"))["state"] == "closed"
        assert [p async for p in gh.getiter("/repos/octo/hello/pulls?head=octo:omoi/issue-1")] == []
        assert fake.pull_requests(REPO)[0]["comments"] == 1
    assert fake.violations == [], "\n".join(fake.violations)


REVIEW_THREADS = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 1, after: $after) {
        nodes {
          id isResolved isOutdated path line
          comments(first: 50) { nodes { id databaseId body author { login } createdAt } }
        }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""

RESOLVE = """
mutation($threadId: ID!) {
  resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } }
}
"""


async def test_review_threads_rest_and_graphql(fake, rsa_keypair):
    fake.push_human_commit(REPO, "feature", {"src/x.py": "x = 10\ny = 2\nz = 3\n"}, "Tweak x")
    pr = fake.add_pull_request(REPO, head="feature", title="Tweak", user="alice")
    first = fake.add_review_thread(REPO, pr["number"], path="src/x.py", line=1, body="Why 10?", user="alice")
    second = fake.add_review_thread(REPO, pr["number"], path="src/x.py", line=3, body="And z?", user="bob")
    assert first["diff_hunk"].startswith("@@") and first["commit_id"] == pr["head"]["sha"]

    async with aiohttp.ClientSession() as session:
        token = await _token(session, fake, rsa_keypair[0])
        gh = GitHubAPI(session, "omoi-tests", oauth_token=token, base_url=fake.url)
        n = pr["number"]
        listed = [c async for c in gh.getiter(f"/repos/octo/hello/pulls/{n}/comments")]
        assert [c["body"] for c in listed] == ["Why 10?", "And z?"]
        reply = await gh.post(f"/repos/octo/hello/pulls/{n}/comments/{first['id']}/replies",
                              data={"body": "Because the spec says so."})
        assert reply["in_reply_to_id"] == first["id"] and reply["user"]["login"] == "omoi-test[bot]"

        endpoint = fake.url + "/graphql"
        page1 = await gh.graphql(REVIEW_THREADS, endpoint=endpoint, owner="octo", name="hello", number=n)
        conn = page1["repository"]["pullRequest"]["reviewThreads"]
        assert conn["pageInfo"]["hasNextPage"] is True
        (t1,) = conn["nodes"]
        assert set(t1) == {"id", "isResolved", "isOutdated", "path", "line", "comments"}
        assert (t1["path"], t1["line"], t1["isResolved"], t1["isOutdated"]) == ("src/x.py", 1, False, False)
        bodies = [(c["body"], c["author"]["login"], c["databaseId"]) for c in t1["comments"]["nodes"]]
        assert bodies == [("Why 10?", "alice", first["id"]), ("Because the spec says so.", "omoi-test[bot]",
                                                               reply["id"])]
        page2 = await gh.graphql(REVIEW_THREADS, endpoint=endpoint, owner="octo", name="hello", number=n,
                                 after=conn["pageInfo"]["endCursor"])
        conn2 = page2["repository"]["pullRequest"]["reviewThreads"]
        assert conn2["pageInfo"]["hasNextPage"] is False
        assert conn2["nodes"][0]["comments"]["nodes"][0]["databaseId"] == second["id"]

        resolved = await gh.graphql(RESOLVE, endpoint=endpoint, threadId=t1["id"])
        assert resolved == {"resolveReviewThread": {"thread": {"id": t1["id"], "isResolved": True}}}
        threads = fake.review_threads(REPO, n)
        assert [t["is_resolved"] for t in threads] == [True, False]
        assert [len(t["comments"]) for t in threads] == [2, 1]

        # A later push that rewrites the commented line makes the thread outdated.
        fake.push_human_commit(REPO, "feature", {"src/x.py": "x = 10\ny = 2\nz = 4\n"}, "z too")
        again = await gh.graphql(REVIEW_THREADS, endpoint=endpoint, owner="octo", name="hello", number=n,
                                 after=conn["pageInfo"]["endCursor"])
        assert again["repository"]["pullRequest"]["reviewThreads"]["nodes"][0]["isOutdated"] is True

        # Not found: data with null plus a NOT_FOUND error, like GitHub.
        with pytest.raises(gidgethub.QueryError) as exc:
            await gh.graphql(REVIEW_THREADS, endpoint=endpoint, owner="octo", name="hello", number=99)
        assert exc.value.response["errors"][0]["type"] == "NOT_FOUND"
        assert exc.value.response["data"] == {"repository": {"pullRequest": None}}
        with pytest.raises(gidgethub.QueryError):
            await gh.graphql(REVIEW_THREADS, endpoint=endpoint, owner="someone", name="else", number=1)
        with pytest.raises(gidgethub.GraphQLAuthorizationFailure):
            await GitHubAPI(session, "t", oauth_token="ghs_bogus").graphql(RESOLVE, endpoint=endpoint, threadId="x")
    assert fake.violations == [], "\n".join(fake.violations)


async def test_unknown_graphql_and_merge_are_violations(fake, rsa_keypair):
    fake.push_human_commit(REPO, "feature", {"a.txt": "a\n"}, "A")
    pr = fake.add_pull_request(REPO, head="feature")
    async with aiohttp.ClientSession() as session:
        token = await _token(session, fake, rsa_keypair[0])
        gh = GitHubAPI(session, "omoi-tests", oauth_token=token, base_url=fake.url)
        with pytest.raises(gidgethub.QueryError) as exc:
            await gh.graphql("query { repository(owner: \"octo\", name: \"hello\") { stargazerz { totalCount } } }",
                             endpoint=fake.url + "/graphql")
        assert "Field 'stargazerz' doesn't exist on type 'Repository'" in str(exc.value)
        assert "data" not in exc.value.response
        with pytest.raises(gidgethub.BadRequest) as exc:
            await gh.put(f"/repos/octo/hello/pulls/{pr['number']}/merge", data={"merge_method": "squash"})
        assert exc.value.status_code == 405
    v = fake.violations
    assert any("stargazerz" in x for x in v), v
    assert any(x.startswith("omoi merged a pull request") for x in v), v
    assert fake.pull_request(REPO, pr["number"])["merged"] is False
