"""REST: pull requests (open with GitHub's checks, list, get, update; merging is a violation)."""

from __future__ import annotations

from typing import Any

from ...webhooks import node_id, stable_id
from ..common import DOCS, now_iso
from ..models import Issue, PullRequest, Repo
from ..routing import ApiError, Reply, RequestContext, _repo, _require_body_field, _validation_failed, route
from ..state import GitHubState
from .issues import _issue_data


_PULLS_DOCS = f"{DOCS}/pulls/pulls"


def _pr_head_sha(repo: Repo, pr: PullRequest) -> str:
    sha = repo.git.branch_sha(pr.head_ref)
    if sha:
        pr.last_head_sha = sha
    return pr.last_head_sha


def pull_json(st: GitHubState, repo: Repo, pr: PullRequest, *, simple: bool = False) -> dict[str, Any]:
    """``pull-request`` (or ``pull-request-simple`` for list endpoints) built from the issue and git."""
    issue = repo.issues[pr.number].data
    base_url = st.repo_url(repo)
    url = f"{base_url}/pulls/{pr.number}"
    html = f"https://github.com/{repo.full_name}/pull/{pr.number}"
    head_sha = _pr_head_sha(repo, pr)
    base_sha = repo.git.branch_sha(pr.base_ref) or ""
    repo_json = st.repository_json(repo)
    owner = st.user(repo.owner)

    def side(ref: str, sha: str) -> dict[str, Any]:
        return {"label": f"{repo.owner}:{ref}", "ref": ref, "sha": sha, "user": owner, "repo": repo_json}

    data: dict[str, Any] = {
        "url": url,
        "id": pr.id,
        "node_id": node_id("PullRequest", pr.id),
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": issue["url"],
        "commits_url": f"{url}/commits",
        "review_comments_url": f"{url}/comments",
        "review_comment_url": f"{base_url}/pulls/comments{{/number}}",
        "comments_url": issue["comments_url"],
        "statuses_url": f"{base_url}/statuses/{head_sha}",
        "number": pr.number,
        "state": issue["state"],
        "locked": issue["locked"],
        "title": issue["title"],
        "user": st.user(pr.user, pr.user_type),
        "body": issue["body"],
        "labels": issue["labels"],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": issue["created_at"],
        "updated_at": issue["updated_at"],
        "closed_at": issue["closed_at"],
        "merged_at": pr.merged_at,
        "merge_commit_sha": head_sha if pr.merged_at else None,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": side(pr.head_ref, head_sha),
        "base": side(pr.base_ref, base_sha),
        "_links": {k: {"href": v} for k, v in {
            "self": url, "html": html, "issue": issue["url"], "comments": issue["comments_url"],
            "review_comments": f"{url}/comments", "review_comment": f"{base_url}/pulls/comments{{/number}}",
            "commits": f"{url}/commits", "statuses": f"{base_url}/statuses/{head_sha}"}.items()},
        "author_association": issue["author_association"],
        "auto_merge": None,
        "draft": pr.draft,
    }
    if simple:
        return data
    mb = repo.git.merge_base(base_sha, head_sha) if base_sha and head_sha else None
    commits = repo.git.rev_list(head_sha, base_sha) if head_sha and base_sha else []
    changes = repo.git.diff(mb, head_sha) if mb else []
    data.update(
        merged=pr.merged_at is not None,
        mergeable=True if issue["state"] == "open" else None,
        rebaseable=True if issue["state"] == "open" else None,
        mergeable_state="draft" if pr.draft else "clean",
        merged_by=st.user(pr.merged_by) if pr.merged_by else None,
        comments=issue["comments"],
        review_comments=len(pr.review_comment_ids),
        maintainer_can_modify=pr.maintainer_can_modify,
        commits=len(commits),
        additions=sum(f.additions for f in changes),
        deletions=sum(f.deletions for f in changes),
        changed_files=len(changes),
    )
    return data


def _pull(ctx: RequestContext) -> PullRequest:
    repo = _repo(ctx)
    pr = repo.pulls.get(ctx.int_param("pull_number"))
    if pr is None:
        raise ApiError(404, "Not Found", docs=f"{_PULLS_DOCS}#get-a-pull-request")
    return pr


def open_pull_request(st: GitHubState, repo: Repo, *, head: str, base: str, title: str, body: str | None,
                      user: str, user_type: str = "User", draft: bool = False, maintainer_can_modify: bool = False,
                      docs: str = f"{_PULLS_DOCS}#create-a-pull-request") -> PullRequest:
    """GitHub's checks for a new pull request, then the PR (an issue with a ``pull_request`` key)."""
    owner, colon, head_ref = head.rpartition(":")
    if colon and owner.lower() != repo.owner.lower():
        raise _validation_failed("PullRequest", "head", "Cross-repository pull requests are not supported by FakeGitHub",
                                 docs, code="invalid")
    head_sha = repo.git.branch_sha(head_ref)
    if head_sha is None:
        raise _validation_failed("PullRequest", "head", f"head {head_ref} does not exist", docs, code="invalid")
    base_sha = repo.git.branch_sha(base)
    if base_sha is None:
        raise _validation_failed("PullRequest", "base", f"base {base} does not exist", docs, code="invalid")
    for other in repo.pulls.values():
        if other.head_ref == head_ref and other.base_ref == base and repo.issues[other.number].data["state"] == "open":
            raise _validation_failed("PullRequest", "", f"A pull request already exists for {repo.owner}:{head_ref}.", docs)
    if not repo.git.rev_list(head_sha, base_sha):
        raise _validation_failed("PullRequest", "", f"No commits between {base} and {head_ref}", docs)
    number = repo.next_number()
    data = _issue_data(st, repo, number, title=title, body=body, user=user, user_type=user_type)
    data["html_url"] = f"https://github.com/{repo.full_name}/pull/{number}"
    pr_url = f"{st.repo_url(repo)}/pulls/{number}"
    data["pull_request"] = {"url": pr_url, "html_url": data["html_url"], "diff_url": data["html_url"] + ".diff",
                            "patch_url": data["html_url"] + ".patch", "merged_at": None}
    data["draft"] = draft
    repo.issues[number] = Issue(data)
    pr = PullRequest(number, stable_id("pull_request", f"{repo.full_name}#{number}"), head_ref, base, user,
                     user_type, draft, maintainer_can_modify, head_sha)
    repo.pulls[number] = pr
    return pr


@route("POST", "/repos/{owner}/{repo}/pulls")
def create_pull_request(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    docs = f"{_PULLS_DOCS}#create-a-pull-request"
    head = _require_body_field(ctx, "head", str, docs)
    base = _require_body_field(ctx, "base", str, docs)
    if "issue" in ctx.json:
        raise ApiError(422, "FakeGitHub does not support converting an issue into a pull request", docs=docs)
    title = _require_body_field(ctx, "title", str, docs)
    pr = open_pull_request(st, repo, head=head, base=base, title=title, body=ctx.json.get("body"),
                           user=st.bot_login, user_type="Bot", draft=bool(ctx.json.get("draft", False)),
                           maintainer_can_modify=bool(ctx.json.get("maintainer_can_modify", False)), docs=docs)
    data = pull_json(st, repo, pr)
    return Reply(201, data, {"Location": data["url"]})


@route("GET", "/repos/{owner}/{repo}/pulls")
def list_pull_requests(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    state = ctx.query.get("state", "open")
    pulls = list(repo.pulls.values())
    if state != "all":
        pulls = [p for p in pulls if repo.issues[p.number].data["state"] == state]
    head = ctx.query.get("head")
    if head:
        owner, colon, branch = str(head).partition(":")
        if not colon:
            # GitHub silently ignores a head filter without "owner:", so every PR comes back.
            st.violations.append(f"fake: GET /repos/{repo.full_name}/pulls?head={head}: GitHub expects "
                                 "head=owner:branch and ignores anything else (all pull requests are returned)")
        else:
            pulls = [p for p in pulls if owner.lower() == repo.owner.lower() and p.head_ref == branch]
    if ctx.query.get("base"):
        pulls = [p for p in pulls if p.base_ref == ctx.query["base"]]
    sort = ctx.query.get("sort", "created")
    direction = ctx.query.get("direction", "desc")
    key = (lambda p: repo.issues[p.number].data["updated_at"]) if sort == "updated" else (lambda p: p.number)
    pulls.sort(key=key, reverse=direction == "desc")
    return ctx.paginate([pull_json(st, repo, p, simple=True) for p in pulls])


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
def get_pull_request(ctx: RequestContext) -> Reply:
    return Reply(200, pull_json(ctx.state, _repo(ctx), _pull(ctx)))


@route("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}")
def update_pull_request(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    docs = f"{_PULLS_DOCS}#update-a-pull-request"
    pr = _pull(ctx)
    body = ctx.json if isinstance(ctx.json, dict) else {}
    issue = repo.issues[pr.number].data
    if "base" in body:
        if repo.git.branch_sha(body["base"]) is None:
            raise _validation_failed("PullRequest", "base", f"Proposed base branch '{body['base']}' was not found",
                                     docs, code="invalid")
        pr.base_ref = body["base"]
    if "title" in body:
        issue["title"] = body["title"]
    if "body" in body:
        issue["body"] = body["body"]
    if "maintainer_can_modify" in body:
        pr.maintainer_can_modify = bool(body["maintainer_can_modify"])
    if body.get("state") in ("open", "closed") and body["state"] != issue["state"]:
        if body["state"] == "open" and repo.git.branch_sha(pr.head_ref) is None:
            raise _validation_failed("PullRequest", "state", "state cannot be changed. The head branch was deleted.",
                                     docs)
        issue["state"] = body["state"]
        issue["closed_at"] = now_iso() if body["state"] == "closed" else None
        issue["state_reason"] = None
    issue["updated_at"] = now_iso()
    return Reply(200, pull_json(st, repo, pr))


@route("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge")
def merge_pull_request(ctx: RequestContext) -> Reply:
    """omoi must never merge: record it, and refuse like an unmergeable PR so nothing changes."""
    pr = _pull(ctx)
    ctx.state.violations.append(f"omoi merged a pull request: PUT /repos/{_repo(ctx).full_name}/pulls/{pr.number}/merge")
    return Reply(405, {"message": "Pull Request is not mergeable", "documentation_url":
                       f"{_PULLS_DOCS}#merge-a-pull-request"})
