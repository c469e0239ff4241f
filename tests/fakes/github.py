"""FakeGitHub: an in-memory stand-in for api.github.com, for tests.

Why it is built this way:

* It is a real HTTP server (aiohttp) on 127.0.0.1 with a random free port, run
  in a background thread with its own event loop. Sync tests, async tests (whose
  loop must not be blocked by the fake) and *other OS processes* (the app's web
  and Celery worker subprocesses) can all talk to it over TCP.
* Every request is checked against GitHub's OpenAPI description
  (``tests/fakes/openapi.py``) and so is every response the fake produces.
  Problems are *recorded* in ``fake.violations`` rather than raised, so the app
  sees GitHub-like behaviour (e.g. a 422) and tests assert
  ``fake.violations == []`` at the end.
* Auth is enforced like GitHub: a JWT signed with the App's key is needed to
  mint installation tokens, and installation tokens only reach that
  installation's repositories (404 otherwise, as GitHub does).
* Endpoints are plain functions registered with ``@route(METHOD, TEMPLATE)``
  where TEMPLATE is the spec's own path template. To add an endpoint, write a
  handler next to the others (or in another module that imports ``route``);
  it receives a ``RequestContext`` and returns a ``Reply`` or raises
  ``ApiError``. Handlers run under the state lock, so they must not await.

Example::

    with FakeGitHub(app_id=123, app_slug="omoi-test", public_key_pem=pub) as fake:
        fake.add_installation(1, "octo")
        fake.add_repo("octo/hello", installation_id=1, files={"README.md": "hi"})
        ...  # point the app at fake.url
        assert fake.violations == []

Repositories are real bare git repositories (``tests/fakes/git_backend.py``):
the contents/trees/commits/refs endpoints read them with git plumbing, and
``fake.clone_url(full_name)`` serves git smart HTTP (``git http-backend``)
with GitHub's auth rules (``x-access-token:<installation token>``). Pull
requests, review threads and the GraphQL subset the review-thread work needs
live further down; see the "git" and "pull request" helpers on FakeGitHub.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dt
import hashlib
import itertools
import json
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote, urlencode

import jwt
from aiohttp import web
from multidict import CIMultiDict

from .git_backend import ZERO_SHA, BareRepo, CommitInfo, FileChange, GitError, parse_receive_pack_commands, run_http_backend
from .openapi import OpenAPIValidator, PathTemplate, compile_template
from .webhooks import node_id, stable_id, user_json

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


# --------------------------------------------------------------------------
# Recorded traffic and fault injection
# --------------------------------------------------------------------------


@dataclass
class Call:
    """One request seen by the fake (``path`` is percent-decoded, without the query)."""

    method: str
    path: str
    query: dict[str, Any]
    json: Any
    headers: CIMultiDict[str]  # case-insensitive, like the server saw them
    status: int


@dataclass
class _Fault:
    method: str
    path_regex: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: Any
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and self.path_regex.search(path) is not None


# --------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------


@dataclass
class Installation:
    id: int
    account_login: str
    permissions: dict[str, str]


@dataclass
class Token:
    value: str
    installation_id: int
    expires_at: float


@dataclass
class Issue:
    data: dict[str, Any]  # GitHub's JSON for the issue
    comment_ids: list[int] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PullRequest:
    """What a pull request adds to its issue (title/body/state/labels live in ``Issue.data``)."""

    number: int
    id: int
    head_ref: str
    base_ref: str
    user: str
    user_type: str = "User"
    draft: bool = False
    maintainer_can_modify: bool = False
    last_head_sha: str = ""  # kept for when the head branch is deleted
    review_comment_ids: list[int] = field(default_factory=list)


@dataclass
class ReviewThread:
    """A review thread: a root review comment and its replies (all in ``Repo.review_comments``)."""

    id: int  # GraphQL node id is derived from it
    pr_number: int
    path: str
    line: int
    side: str
    comment_ids: list[int] = field(default_factory=list)
    resolved_by: str | None = None
    outdated: bool | None = None  # None: computed from the head (line text changed or file gone)

    @property
    def resolved(self) -> bool:
        return self.resolved_by is not None


@dataclass
class Repo:
    full_name: str
    id: int
    installation_id: int
    default_branch: str
    git: BareRepo
    private: bool
    created_at: str
    permissions: dict[str, str] = field(default_factory=dict)  # login(lower) -> level
    issues: dict[int, Issue] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> comment JSON
    comment_issue: dict[int, int] = field(default_factory=dict)  # comment id -> issue number
    comment_reactions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # name(lower) -> label JSON
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    review_comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> review comment JSON
    threads: dict[int, ReviewThread] = field(default_factory=dict)  # thread id -> thread
    comment_thread: dict[int, int] = field(default_factory=dict)  # review comment id -> thread id
    protected_branches: set[str] = field(default_factory=set)

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.full_name.split("/", 1)[1]

    @property
    def files(self) -> dict[str, bytes]:
        """The default branch's files (read from git)."""
        return self.git.files(f"refs/heads/{self.default_branch}")

    def head_sha(self) -> str:
        """The default branch's commit sha."""
        return self.git.branch_sha(self.default_branch) or ""

    def tree_sha(self) -> str:
        """The default branch's root tree sha."""
        return self.git.resolve(f"refs/heads/{self.default_branch}", "tree") or ""

    def next_number(self) -> int:
        """Issues and pull requests share one number space."""
        return max(self.issues, default=0) + 1


class GitHubState:
    """Everything the fake knows. Guarded by ``lock`` (server thread + test thread)."""

    def __init__(self, *, app_id: int, app_slug: str, public_key_pem: str | bytes | None, base_url: str) -> None:
        self.lock = threading.RLock()
        self.app_id = app_id
        self.app_slug = app_slug
        self.public_key_pem = public_key_pem
        self.base_url = base_url
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}  # full_name.lower() -> Repo
        self.tokens: dict[str, Token] = {}
        self.tokens_issued: Counter[int] = Counter()
        self.rate_used: Counter[str] = Counter()
        self.rate_window_start = time.time()
        self._ids = itertools.count(1_000_001)
        self.created_at = now_iso()
        self.violations: list[str] = []  # FakeGitHub.violations; handlers may append
        self.git_root = Path(tempfile.mkdtemp(prefix="fakegithub-"))  # bare repos live under <root>/repos
        self.pushes: list[tuple[str, str, str, str]] = []
        self.reject_force_push = True

    def next_id(self) -> int:
        return next(self._ids)

    # -- lookups ------------------------------------------------------------

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"unknown repo {full_name!r}; call add_repo first") from None

    # -- JSON builders (GitHub shapes; URLs point at the fake) -------------

    def user(self, login: str, user_type: str = "User") -> dict[str, Any]:
        return user_json(login, user_type=user_type, api_url=self.base_url)

    @property
    def bot_login(self) -> str:
        return f"{self.app_slug}[bot]"

    def bot_user(self) -> dict[str, Any]:
        return self.user(self.bot_login, "Bot")

    def integration(self) -> dict[str, Any]:
        """The ``integration`` object (GET /app, ``performed_via_github_app``, check run ``app``)."""
        return {
            "id": self.app_id,
            "slug": self.app_slug,
            "node_id": node_id("Integration", self.app_id),
            "client_id": f"Iv1.{self.app_id:016x}",
            "owner": self.user("omoi-owner", "Organization"),
            "name": self.app_slug,
            "description": "omoi test app",
            "external_url": "https://example.com",
            "html_url": f"https://github.com/apps/{self.app_slug}",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "permissions": dict(DEFAULT_INSTALLATION_PERMISSIONS),
            "events": ["issues", "issue_comment", "pull_request", "check_run"],
            "installations_count": len(self.installations),
        }

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base_url}/repos/{repo.full_name}"

    def repository_json(self, repo: Repo) -> dict[str, Any]:
        """``full-repository`` (GET /repos/{owner}/{repo})."""
        u = self.repo_url(repo)
        open_issues = sum(1 for i in repo.issues.values() if i.data["state"] == "open")
        return {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self.user(repo.owner),
            "private": repo.private,
            "html_url": f"https://github.com/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": u,
            "archive_url": f"{u}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{u}/assignees{{/user}}",
            "blobs_url": f"{u}/git/blobs{{/sha}}",
            "branches_url": f"{u}/branches{{/branch}}",
            "collaborators_url": f"{u}/collaborators{{/collaborator}}",
            "comments_url": f"{u}/comments{{/number}}",
            "commits_url": f"{u}/commits{{/sha}}",
            "compare_url": f"{u}/compare/{{base}}...{{head}}",
            "contents_url": f"{u}/contents/{{+path}}",
            "contributors_url": f"{u}/contributors",
            "deployments_url": f"{u}/deployments",
            "downloads_url": f"{u}/downloads",
            "events_url": f"{u}/events",
            "forks_url": f"{u}/forks",
            "git_commits_url": f"{u}/git/commits{{/sha}}",
            "git_refs_url": f"{u}/git/refs{{/sha}}",
            "git_tags_url": f"{u}/git/tags{{/sha}}",
            "git_url": f"git://github.com/{repo.full_name}.git",
            "issue_comment_url": f"{u}/issues/comments{{/number}}",
            "issue_events_url": f"{u}/issues/events{{/number}}",
            "issues_url": f"{u}/issues{{/number}}",
            "keys_url": f"{u}/keys{{/key_id}}",
            "labels_url": f"{u}/labels{{/name}}",
            "languages_url": f"{u}/languages",
            "merges_url": f"{u}/merges",
            "milestones_url": f"{u}/milestones{{/number}}",
            "notifications_url": f"{u}/notifications{{?since,all,participating}}",
            "pulls_url": f"{u}/pulls{{/number}}",
            "releases_url": f"{u}/releases{{/id}}",
            "ssh_url": f"git@github.com:{repo.full_name}.git",
            "stargazers_url": f"{u}/stargazers",
            "statuses_url": f"{u}/statuses/{{sha}}",
            "subscribers_url": f"{u}/subscribers",
            "subscription_url": f"{u}/subscription",
            "tags_url": f"{u}/tags",
            "teams_url": f"{u}/teams",
            "trees_url": f"{u}/git/trees{{/sha}}",
            "clone_url": self.clone_url(repo),
            "mirror_url": None,
            "hooks_url": f"{u}/hooks",
            "svn_url": f"https://github.com/{repo.full_name}",
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": self.repo_size_kb(repo),
            "default_branch": repo.default_branch,
            "open_issues_count": open_issues,
            "open_issues": open_issues,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": True,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private" if repo.private else "public",
            "pushed_at": repo.created_at,
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
            "allow_rebase_merge": True,
            "allow_squash_merge": True,
            "allow_merge_commit": True,
            "allow_auto_merge": False,
            "delete_branch_on_merge": False,
            "allow_forking": True,
            "web_commit_signoff_required": False,
            "license": None,
            "network_count": 0,
            "subscribers_count": 0,
        }

    def clone_url(self, repo: Repo) -> str:
        return f"{self.base_url}/{repo.full_name}.git"

    def repo_size_kb(self, repo: Repo) -> int:
        tree = repo.tree_sha()
        if not tree:
            return 0
        return sum(e.size or 0 for e in repo.git.tree_entries(tree)) // 1024

    def label_json(self, repo: Repo, name: str) -> dict[str, Any]:
        """The repo's label ``name``, created on first use (as GitHub does when labelling)."""
        key = name.lower()
        if key not in repo.labels:
            lid = stable_id("label", f"{repo.full_name}:{name}")  # same id as in webhook payloads
            repo.labels[key] = {
                "id": lid,
                "node_id": node_id("Label", lid),
                "url": f"{self.repo_url(repo)}/labels/{quote(name, safe='')}",
                "name": name,
                "description": None,
                "color": "ededed",
                "default": False,
            }
        return repo.labels[key]

    def reaction_rollup(self, url: str, reactions: list[dict[str, Any]]) -> dict[str, Any]:
        counts = Counter(r["content"] for r in reactions)
        return {"url": url, "total_count": len(reactions), **{c: counts.get(c, 0) for c in REACTIONS}}


# --------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------


class ApiError(Exception):
    """Raise from a handler to answer with GitHub's error JSON."""

    def __init__(self, status: int, message: str, *, errors: list[Any] | None = None, docs: str = DOCS,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"message": message, "documentation_url": docs, "status": str(status)}
        if errors is not None:
            self.body["errors"] = errors
        self.headers = headers or {}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable; None means an empty body
    headers: dict[str, str] = field(default_factory=dict)


# Auth modes for routes.
AUTH_NONE = "none"
AUTH_JWT = "jwt"  # App JWT (Bearer <jwt>)
AUTH_INSTALLATION = "installation"  # installation token; repo-scoped if the template has {owner}/{repo}


@dataclass
class Route:
    method: str
    template: PathTemplate
    handler: Callable[["RequestContext"], Reply]
    auth: str


ROUTES: list[Route] = []


def route(method: str, template: str, *, auth: str = AUTH_INSTALLATION, multi_segment: tuple[str, ...] = ()):
    """Register a handler for ``METHOD template`` (template as written in GitHub's spec)."""

    def deco(fn: Callable[["RequestContext"], Reply]) -> Callable[["RequestContext"], Reply]:
        ROUTES.append(Route(method.upper(), compile_template(template, frozenset(multi_segment)), fn, auth))
        ROUTES.sort(key=lambda r: r.template.specificity, reverse=True)
        return fn

    return deco


@dataclass
class RequestContext:
    state: GitHubState
    method: str
    path: str  # percent-decoded
    params: dict[str, str]  # path variables
    query: dict[str, Any]
    json: Any
    headers: Any  # CIMultiDictProxy
    installation: Installation | None = None
    repo: Repo | None = None

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise ApiError(404, "Not Found") from None

    def issue(self) -> Issue:
        assert self.repo is not None
        issue = self.repo.issues.get(self.int_param("issue_number"))
        if issue is None:
            raise ApiError(404, "Not Found", docs=f"{DOCS}/issues/issues#get-an-issue")
        return issue

    def comment(self) -> dict[str, Any]:
        assert self.repo is not None
        c = self.repo.comments.get(self.int_param("comment_id"))
        if c is None:
            raise ApiError(404, "Not Found", docs=f"{DOCS}/issues/comments#get-an-issue-comment")
        return c

    def paginate(self, items: list[Any], *, default_per_page: int = 30) -> Reply:
        """GitHub-style page slicing with a real ``Link`` header (first/prev/next/last)."""
        try:
            per_page = max(1, min(100, int(self.query.get("per_page", default_per_page))))
            page = max(1, int(self.query.get("page", 1)))
        except ValueError:
            per_page, page = default_per_page, 1
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]

        def link(p: int) -> str:
            q = {k: v for k, v in self.query.items() if k not in ("page", "per_page")}
            q.update(per_page=per_page, page=p)
            return f"<{self.state.base_url}{quote(self.path)}?{urlencode(q, doseq=True)}>"

        rels = []
        if page > 1:
            rels += [f'{link(page - 1)}; rel="prev"']
        if page < last:
            rels += [f'{link(page + 1)}; rel="next"', f'{link(last)}; rel="last"']
        if page > 1:
            rels += [f'{link(1)}; rel="first"']
        return Reply(200, chunk, {"Link": ", ".join(rels)} if rels else {})


def _validation_failed(resource: str, field_name: str, message: str, docs: str, code: str = "custom") -> ApiError:
    return ApiError(422, "Validation Failed", docs=docs,
                    errors=[{"resource": resource, "code": code, "field": field_name, "message": message}])


def _require_body_field(ctx: RequestContext, name: str, typ: type, docs: str) -> Any:
    """Handlers re-check what they need even when validate=False (the spec check may be off)."""
    if not isinstance(ctx.json, dict) or not isinstance(ctx.json.get(name), typ):
        raise ApiError(422, f'Invalid request.\n\n"{name}" wasn\'t supplied.', docs=docs)
    return ctx.json[name]


# --------------------------------------------------------------------------
# Handlers: apps
# --------------------------------------------------------------------------


@route("GET", "/app", auth=AUTH_JWT)
def get_app(ctx: RequestContext) -> Reply:
    return Reply(200, ctx.state.integration())


@route("POST", "/app/installations/{installation_id}/access_tokens", auth=AUTH_JWT)
def create_installation_token(ctx: RequestContext) -> Reply:
    st = ctx.state
    inst = st.installations.get(ctx.int_param("installation_id"))
    if inst is None:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/apps/apps#create-an-installation-access-token-for-an-app")
    expires = time.time() + TOKEN_TTL_SECONDS
    token = Token("ghs_" + secrets.token_hex(18), inst.id, expires)
    st.tokens[token.value] = token
    st.tokens_issued[inst.id] += 1
    return Reply(201, {
        "token": token.value,
        "expires_at": now_iso(expires),
        "permissions": dict(inst.permissions),
        "repository_selection": "all",
    })


# --------------------------------------------------------------------------
# Handlers: repositories, collaborators
# --------------------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}")
def get_repo(ctx: RequestContext) -> Reply:
    assert ctx.repo is not None
    return Reply(200, ctx.state.repository_json(ctx.repo))


# GitHub's "permission" field only knows admin/write/read/none; the finer
# role shows up in role_name (maintain -> write, triage -> read).
_LEGACY_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "none": "none"}
_ROLE_FLAGS = {
    "admin": dict(admin=True, maintain=True, push=True, triage=True, pull=True),
    "maintain": dict(admin=False, maintain=True, push=True, triage=True, pull=True),
    "write": dict(admin=False, maintain=False, push=True, triage=True, pull=True),
    "triage": dict(admin=False, maintain=False, push=False, triage=True, pull=True),
    "read": dict(admin=False, maintain=False, push=False, triage=False, pull=True),
    "none": dict(admin=False, maintain=False, push=False, triage=False, pull=False),
}


@route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")
def get_collaborator_permission(ctx: RequestContext) -> Reply:
    assert ctx.repo is not None
    login = ctx.params["username"]
    level = ctx.repo.permissions.get(login.lower(), "none")
    user = ctx.state.user(login)
    user.update(permissions=_ROLE_FLAGS[level], role_name=level)
    return Reply(200, {"permission": _LEGACY_PERMISSION[level], "role_name": level, "user": user})


# --------------------------------------------------------------------------
# Handlers: issues, comments
# --------------------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}")
def get_issue(ctx: RequestContext) -> Reply:
    issue = ctx.issue()
    data = copy.deepcopy(issue.data)
    data["reactions"] = ctx.state.reaction_rollup(f"{data['url']}/reactions", issue.reactions)
    return Reply(200, data)


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
def list_issue_comments(ctx: RequestContext) -> Reply:
    assert ctx.repo is not None
    issue = ctx.issue()
    return ctx.paginate([ctx.repo.comments[c] for c in issue.comment_ids])


_COMMENT_DOCS = f"{DOCS}/issues/comments#create-an-issue-comment"


def _check_comment_body(body: str, docs: str) -> None:
    if len(body) > MAX_COMMENT_BODY:
        raise _validation_failed("IssueComment", "body", f"body is too long (maximum is {MAX_COMMENT_BODY} characters)", docs)


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
def create_issue_comment(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, ctx.repo
    assert repo is not None
    issue = ctx.issue()
    body = _require_body_field(ctx, "body", str, _COMMENT_DOCS)
    _check_comment_body(body, _COMMENT_DOCS)
    cid = st.next_id()
    url = f"{st.repo_url(repo)}/issues/comments/{cid}"
    ts = now_iso()
    comment = {
        "id": cid,
        "node_id": node_id("IssueComment", cid),
        "url": url,
        "html_url": f"{issue.data['html_url']}#issuecomment-{cid}",
        "body": body,
        "user": st.bot_user(),
        "created_at": ts,
        "updated_at": ts,
        "issue_url": issue.data["url"],
        "author_association": "NONE",
        "performed_via_github_app": st.integration(),
        "reactions": st.reaction_rollup(f"{url}/reactions", []),
    }
    repo.comments[cid] = comment
    repo.comment_issue[cid] = issue.data["number"]
    repo.comment_reactions[cid] = []
    issue.comment_ids.append(cid)
    issue.data["comments"] = len(issue.comment_ids)
    issue.data["updated_at"] = ts
    return Reply(201, comment, {"Location": url})


@route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
def get_issue_comment(ctx: RequestContext) -> Reply:
    return Reply(200, ctx.comment())


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
def update_issue_comment(ctx: RequestContext) -> Reply:
    docs = f"{DOCS}/issues/comments#update-an-issue-comment"
    comment = ctx.comment()
    body = _require_body_field(ctx, "body", str, docs)
    _check_comment_body(body, docs)
    comment["body"] = body
    comment["updated_at"] = now_iso()
    return Reply(200, comment)


@route("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
def delete_issue_comment(ctx: RequestContext) -> Reply:
    repo = ctx.repo
    assert repo is not None
    cid = ctx.comment()["id"]
    del repo.comments[cid]
    repo.comment_reactions.pop(cid, None)
    issue = repo.issues[repo.comment_issue.pop(cid)]
    issue.comment_ids.remove(cid)
    issue.data["comments"] = len(issue.comment_ids)
    return Reply(204)


# --------------------------------------------------------------------------
# Handlers: reactions
# --------------------------------------------------------------------------


def _add_reaction(ctx: RequestContext, reactions: list[dict[str, Any]], docs: str) -> Reply:
    content = _require_body_field(ctx, "content", str, docs)
    if content not in REACTIONS:
        raise ApiError(422, f"Invalid request.\n\n{content!r} is not a member of enum.", docs=docs)
    login = ctx.state.bot_login  # installation tokens act as the App's bot user
    for r in reactions:
        if r["user"]["login"] == login and r["content"] == content:
            return Reply(200, r)  # GitHub answers 200 with the existing reaction
    rid = ctx.state.next_id()
    reaction = {"id": rid, "node_id": node_id("Reaction", rid), "user": ctx.state.bot_user(),
                "content": content, "created_at": now_iso()}
    reactions.append(reaction)
    return Reply(201, reaction)


def _filter_reactions(ctx: RequestContext, reactions: list[dict[str, Any]]) -> Reply:
    content = ctx.query.get("content")
    return ctx.paginate([r for r in reactions if content is None or r["content"] == content])


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/reactions")
def list_issue_reactions(ctx: RequestContext) -> Reply:
    return _filter_reactions(ctx, ctx.issue().reactions)


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/reactions")
def create_issue_reaction(ctx: RequestContext) -> Reply:
    return _add_reaction(ctx, ctx.issue().reactions, f"{DOCS}/reactions/reactions#create-reaction-for-an-issue")


def _comment_reactions(ctx: RequestContext) -> list[dict[str, Any]]:
    assert ctx.repo is not None
    return ctx.repo.comment_reactions[ctx.comment()["id"]]


@route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
def list_comment_reactions(ctx: RequestContext) -> Reply:
    return _filter_reactions(ctx, _comment_reactions(ctx))


@route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
def create_comment_reaction(ctx: RequestContext) -> Reply:
    reactions = _comment_reactions(ctx)
    reply = _add_reaction(ctx, reactions, f"{DOCS}/reactions/reactions#create-reaction-for-an-issue-comment")
    ctx.comment()["reactions"] = ctx.state.reaction_rollup(f"{ctx.comment()['url']}/reactions", reactions)
    return reply


# --------------------------------------------------------------------------
# Handlers: labels
# --------------------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/labels")
def list_issue_labels(ctx: RequestContext) -> Reply:
    return ctx.paginate(ctx.issue().data["labels"])


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/labels")
def add_issue_labels(ctx: RequestContext) -> Reply:
    assert ctx.repo is not None
    issue = ctx.issue()
    body = ctx.json
    # The spec allows {"labels": [...]}, a bare list, and {"labels": [{"name": ...}]}.
    names = body.get("labels") if isinstance(body, dict) else body
    if not isinstance(names, list) or not names:
        raise ApiError(422, 'Invalid request.\n\n"labels" wasn\'t supplied.', docs=f"{DOCS}/issues/labels#add-labels-to-an-issue")
    names = [n["name"] if isinstance(n, dict) else str(n) for n in names]
    have = {lbl["name"].lower() for lbl in issue.data["labels"]}
    for name in names:
        if name.lower() not in have:
            issue.data["labels"].append(ctx.state.label_json(ctx.repo, name))
            have.add(name.lower())
    return Reply(200, issue.data["labels"])


@route("DELETE", "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}")
def remove_issue_label(ctx: RequestContext) -> Reply:
    issue = ctx.issue()
    name = ctx.params["name"].lower()
    kept = [lbl for lbl in issue.data["labels"] if lbl["name"].lower() != name]
    if len(kept) == len(issue.data["labels"]):
        raise ApiError(404, "Label does not exist", docs=f"{DOCS}/issues/labels#remove-a-label-from-an-issue")
    issue.data["labels"] = kept
    return Reply(200, kept)


# --------------------------------------------------------------------------
# Handlers: contents and git trees (default branch only)
# --------------------------------------------------------------------------


def _resolve_ref(ctx: RequestContext, ref: str | None) -> None:
    """Only the default branch exists; accept its name, heads/<name>, its commit or tree sha."""
    repo = ctx.repo
    assert repo is not None
    if ref in (None, "", repo.default_branch, f"heads/{repo.default_branch}", f"refs/heads/{repo.default_branch}",
               repo.head_sha(), repo.tree_sha()):
        return
    raise ApiError(404, f"No commit found for the ref {ref}", docs=f"{DOCS}/repos/contents#get-repository-content")


def _content_entry(ctx: RequestContext, path: str, kind: str) -> dict[str, Any]:
    repo = ctx.repo
    assert repo is not None
    base = ctx.state.repo_url(repo)
    branch = repo.default_branch
    if kind == "file":
        data = repo.files[path]
        sha, size = git_blob_sha(data), len(data)
        git_url = f"{base}/git/blobs/{sha}"
        download = f"https://raw.githubusercontent.com/{repo.full_name}/{branch}/{quote(path)}"
    else:
        sha = hashlib.sha1(f"tree {path}".encode()).hexdigest()
        size, git_url, download = 0, f"{base}/git/trees/{sha}", None
    self_url = f"{base}/contents/{quote(path)}?ref={branch}"
    html = f"https://github.com/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{branch}/{quote(path)}"
    return {
        "type": kind,
        "size": size,
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": sha,
        "url": self_url,
        "git_url": git_url,
        "html_url": html,
        "download_url": download,
        "_links": {"self": self_url, "git": git_url, "html": html},
    }


@route("GET", "/repos/{owner}/{repo}/contents/{path}", multi_segment=("path",))
def get_contents(ctx: RequestContext) -> Reply:
    repo = ctx.repo
    assert repo is not None
    _resolve_ref(ctx, ctx.query.get("ref"))
    path = ctx.params["path"].strip("/")
    if path in repo.files:
        entry = _content_entry(ctx, path, "file")
        raw = base64.b64encode(repo.files[path]).decode()
        # GitHub wraps the base64 at 60 columns (decoders must ignore newlines).
        entry.update(content="\n".join(raw[i : i + 60] for i in range(0, len(raw), 60)) + "\n", encoding="base64")
        return Reply(200, entry)
    prefix = path + "/"
    children: dict[str, str] = {}
    for f in repo.files:
        if f.startswith(prefix):
            rest = f[len(prefix):]
            child = rest.split("/", 1)[0]
            children[prefix + child] = "dir" if "/" in rest else "file"
    if not children:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/repos/contents#get-repository-content")
    return Reply(200, [_content_entry(ctx, p, k) for p, k in sorted(children.items())])


@route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", multi_segment=("tree_sha",))
def get_tree(ctx: RequestContext) -> Reply:
    """Like GitHub: without ``recursive`` only top-level entries; with it, every blob *and* subtree."""
    repo = ctx.repo
    assert repo is not None
    _resolve_ref(ctx, ctx.params["tree_sha"])
    recursive = ctx.query.get("recursive") not in (None, "", "0", "false")
    base = ctx.state.repo_url(repo)
    dirs: set[str] = set()
    for f in repo.files:
        parts = f.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    entries = []
    for path in sorted(set(repo.files) | dirs):
        if not recursive and "/" in path:
            continue
        if path in repo.files:
            sha = git_blob_sha(repo.files[path])
            entries.append({"path": path, "mode": "100644", "type": "blob", "sha": sha,
                            "size": len(repo.files[path]), "url": f"{base}/git/blobs/{sha}"})
        else:
            sha = hashlib.sha1(f"tree {path}".encode()).hexdigest()
            entries.append({"path": path, "mode": "040000", "type": "tree", "sha": sha, "url": f"{base}/git/trees/{sha}"})
    sha = repo.tree_sha()
    return Reply(200, {"sha": sha, "url": f"{base}/git/trees/{sha}", "tree": entries, "truncated": False})


# --------------------------------------------------------------------------
# Handlers: check runs
# --------------------------------------------------------------------------

_CHECK_FIELDS = ("name", "details_url", "external_id", "status", "started_at", "conclusion", "completed_at")


def _apply_check_run_update(cr: dict[str, Any], body: dict[str, Any]) -> None:
    for key in _CHECK_FIELDS:
        if key in body:
            cr[key] = body[key]
    if "output" in body and isinstance(body["output"], dict):
        out = body["output"]
        cr["output"].update({k: out[k] for k in ("title", "summary", "text") if k in out})
        cr["output"]["annotations_count"] += len(out.get("annotations") or [])
    # Providing a conclusion implies completion (documented GitHub behaviour).
    if body.get("conclusion") is not None:
        cr["status"] = "completed"
    if cr["status"] == "completed" and cr["completed_at"] is None:
        cr["completed_at"] = now_iso()
    if cr["status"] != "completed":
        cr["conclusion"] = None


@route("POST", "/repos/{owner}/{repo}/check-runs")
def create_check_run(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, ctx.repo
    assert repo is not None
    docs = f"{DOCS}/checks/runs#create-a-check-run"
    _require_body_field(ctx, "name", str, docs)
    head_sha = _require_body_field(ctx, "head_sha", str, docs)
    cid = st.next_id()
    url = f"{st.repo_url(repo)}/check-runs/{cid}"
    cr: dict[str, Any] = {
        "id": cid,
        "head_sha": head_sha,
        "node_id": node_id("CheckRun", cid),
        "external_id": "",
        "url": url,
        "html_url": f"https://github.com/{repo.full_name}/runs/{cid}",
        "details_url": f"https://github.com/apps/{st.app_slug}",
        "status": "queued",
        "conclusion": None,
        "started_at": now_iso(),
        "completed_at": None,
        "output": {"title": None, "summary": None, "text": None, "annotations_count": 0,
                   "annotations_url": f"{url}/annotations"},
        "name": "",
        "check_suite": {"id": stable_id("check_suite", f"{repo.full_name}@{head_sha}")},
        "app": st.integration(),
        "pull_requests": [],
    }
    _apply_check_run_update(cr, ctx.json)
    repo.check_runs[cid] = cr
    return Reply(201, cr)


def _check_run(ctx: RequestContext) -> dict[str, Any]:
    assert ctx.repo is not None
    cr = ctx.repo.check_runs.get(ctx.int_param("check_run_id"))
    if cr is None:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/checks/runs#get-a-check-run")
    return cr


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
def get_check_run(ctx: RequestContext) -> Reply:
    return Reply(200, _check_run(ctx))


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
def update_check_run(ctx: RequestContext) -> Reply:
    cr = _check_run(ctx)
    if isinstance(ctx.json, dict):
        _apply_check_run_update(cr, ctx.json)
    return Reply(200, cr)


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", multi_segment=("ref",))
def list_check_runs_for_ref(ctx: RequestContext) -> Reply:
    repo = ctx.repo
    assert repo is not None
    ref = ctx.params["ref"]
    sha = repo.head_sha() if ref in (repo.default_branch, f"heads/{repo.default_branch}") else ref
    runs = [cr for cr in repo.check_runs.values() if cr["head_sha"] == sha]
    if ctx.query.get("check_name"):
        runs = [cr for cr in runs if cr["name"] == ctx.query["check_name"]]
    if ctx.query.get("status"):
        runs = [cr for cr in runs if cr["status"] == ctx.query["status"]]
    if ctx.query.get("filter", "latest") == "latest":
        latest: dict[str, dict[str, Any]] = {}
        for cr in runs:  # ids increase with time, so the last one per name wins
            latest[cr["name"]] = cr
        runs = list(latest.values())
    page = ctx.paginate(runs)
    page.body = {"total_count": len(runs), "check_runs": page.body}
    return page


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class FakeGitHub:
    """An in-memory GitHub API on ``127.0.0.1:<random port>``, served from a background thread."""

    def __init__(self, *, app_id: int = 123, app_slug: str = "omoi-test", public_key_pem: str | bytes | None = None,
                 validate: bool = True, host: str = "127.0.0.1") -> None:
        # Bind now so ``url`` is known before start() (state JSON embeds it).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(128)
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self.state = GitHubState(app_id=app_id, app_slug=app_slug, public_key_pem=public_key_pem, base_url=self.url)
        self.validator: OpenAPIValidator | None = OpenAPIValidator() if validate else None
        self._calls: list[Call] = []
        self._violations: list[str] = []
        self._faults: list[_Fault] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> "FakeGitHub":
        if self._thread is not None:
            return self
        ready = threading.Event()
        error: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                app = web.Application(client_max_size=50 * 1024 * 1024)
                app.router.add_route("*", "/{tail:.*}", self._dispatch)
                self._runner = web.AppRunner(app, access_log=None)
                loop.run_until_complete(self._runner.setup())
                loop.run_until_complete(web.SockSite(self._runner, self._sock).start())
            except BaseException as exc:  # surface startup errors in start()
                error.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=run, name="FakeGitHub", daemon=True)
        self._thread.start()
        ready.wait(10)
        if error:
            raise error[0]
        return self

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> "FakeGitHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- seeding (test thread) ------------------------------------------------

    def add_installation(self, installation_id: int, account_login: str, *,
                         permissions: dict[str, str] | None = None) -> None:
        with self.state.lock:
            self.state.installations[installation_id] = Installation(
                installation_id, account_login, dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS))

    def add_repo(self, full_name: str, *, installation_id: int, default_branch: str = "main",
                 files: dict[str, str | bytes] | None = None, private: bool = False) -> None:
        with self.state.lock:
            if installation_id not in self.state.installations:
                raise KeyError(f"unknown installation {installation_id}; call add_installation first")
            self.state.repos[full_name.lower()] = Repo(
                full_name=full_name,
                id=stable_id("repo", full_name),  # same id the webhook payload builders use
                installation_id=installation_id,
                default_branch=default_branch,
                files={p.strip("/"): (c.encode() if isinstance(c, str) else c) for p, c in (files or {}).items()},
                private=private,
                created_at=now_iso(),
            )

    def set_permission(self, full_name: str, login: str, level: str) -> None:
        if level not in PERMISSION_LEVELS:
            raise ValueError(f"level must be one of {PERMISSION_LEVELS}")
        with self.state.lock:
            self.state.repo(full_name).permissions[login.lower()] = level

    def add_issue(self, full_name: str, number: int, *, title: str = "An issue", body: str | None = "",
                  user: str = "octocat", labels: list[str] | tuple[str, ...] = (), state: str = "open") -> dict[str, Any]:
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            iid = stable_id("issue", f"{full_name}#{number}")  # matches webhooks.issues_labeled_payload
            url = f"{st.repo_url(repo)}/issues/{number}"
            ts = now_iso()
            data = {
                "id": iid,
                "node_id": node_id("Issue", iid),
                "url": url,
                "repository_url": st.repo_url(repo),
                "labels_url": f"{url}/labels{{/name}}",
                "comments_url": f"{url}/comments",
                "events_url": f"{url}/events",
                "html_url": f"https://github.com/{repo.full_name}/issues/{number}",
                "timeline_url": f"{url}/timeline",
                "number": number,
                "state": state,
                "state_reason": None,
                "title": title,
                "body": body,
                "user": st.user(user),
                "labels": [st.label_json(repo, name) for name in labels],
                "assignee": None,
                "assignees": [],
                "milestone": None,
                "locked": False,
                "active_lock_reason": None,
                "comments": 0,
                "closed_at": None,
                "created_at": ts,
                "updated_at": ts,
                "closed_by": None,
                "author_association": "OWNER" if user.lower() == repo.owner.lower() else "NONE",
            }
            repo.issues[number] = Issue(data)
            return copy.deepcopy(data)

    # -- inspection (test thread) ----------------------------------------------

    def issue(self, full_name: str, number: int) -> dict[str, Any]:
        with self.state.lock:
            return copy.deepcopy(self.state.repo(full_name).issues[number].data)

    def issue_comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self.state.lock:
            repo = self.state.repo(full_name)
            return copy.deepcopy([repo.comments[c] for c in repo.issues[number].comment_ids])

    def reactions_on_issue(self, full_name: str, number: int) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.repo(full_name).issues[number].reactions)

    def reactions_on_comment(self, full_name: str, comment_id: int) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(self.state.repo(full_name).comment_reactions.get(comment_id, []))

    def check_runs(self, full_name: str) -> list[dict[str, Any]]:
        with self.state.lock:
            return copy.deepcopy(list(self.state.repo(full_name).check_runs.values()))

    @property
    def tokens_issued(self) -> dict[int, int]:
        with self.state.lock:
            return dict(self.state.tokens_issued)

    def expire_tokens(self) -> None:
        """Make every issued installation token expired (to test refresh)."""
        with self.state.lock:
            for t in self.state.tokens.values():
                t.expires_at = 0

    @property
    def calls(self) -> list[Call]:
        with self.state.lock:
            return list(self._calls)

    def calls_matching(self, method: str, path_regex: str) -> list[Call]:
        rx = re.compile(path_regex)
        return [c for c in self.calls if c.method == method.upper() and rx.search(c.path)]

    @property
    def violations(self) -> list[str]:
        with self.state.lock:
            return list(self._violations)

    def reset_calls(self) -> None:
        with self.state.lock:
            self._calls.clear()

    def fail_next(self, method: str, path_regex: str, status: int, headers: dict[str, str] | None = None,
                  body: Any = None, times: int = 1) -> None:
        """The next ``times`` requests matching ``method`` ("*" for any) and ``path_regex`` get ``status``.

        Injected faults skip auth and response validation: they model GitHub
        outages (502), secondary rate limits (403 + retry-after) and 429s.
        """
        if body is None:
            msg = {403: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                   429: "API rate limit exceeded"}.get(status, "Server Error")
            body = {"message": msg, "documentation_url": DOCS, "status": str(status)}
        with self.state.lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, dict(headers or {}), body, times))

    # -- request handling (server thread) -----------------------------------

    def _rate_headers(self, key: str) -> dict[str, str]:
        st = self.state
        if time.time() - st.rate_window_start >= 3600:
            st.rate_window_start, st.rate_used = time.time(), Counter()
        st.rate_used[key] += 1
        used = st.rate_used[key]
        return {
            "x-ratelimit-limit": str(RATE_LIMIT),
            "x-ratelimit-remaining": str(max(0, RATE_LIMIT - used)),
            "x-ratelimit-reset": str(int(st.rate_window_start + 3600)),
            "x-ratelimit-used": str(used),
            "x-ratelimit-resource": "core",
        }

    def _authenticate(self, rt: Route, ctx: RequestContext) -> None:
        """GitHub's auth rules for the route; raises ApiError(401/404)."""
        header = ctx.headers.get("Authorization", "")
        scheme, _, cred = header.partition(" ")
        scheme, cred = scheme.lower(), cred.strip()
        if rt.auth == AUTH_JWT:
            if scheme != "bearer" or not cred:
                raise ApiError(401, "A JSON web token could not be decoded", docs=f"{DOCS}")
            self._verify_jwt(cred)
            return
        if rt.auth != AUTH_INSTALLATION:
            return
        if scheme not in ("token", "bearer") or not cred:
            raise ApiError(401, "Requires authentication", docs=f"{DOCS}")
        token = self.state.tokens.get(cred)
        if token is None or token.expires_at < time.time():
            raise ApiError(401, "Bad credentials", docs=f"{DOCS}")
        ctx.installation = self.state.installations.get(token.installation_id)
        if "owner" in ctx.params and "repo" in ctx.params:
            repo = self.state.repos.get(f"{ctx.params['owner']}/{ctx.params['repo']}".lower())
            if repo is None or repo.installation_id != token.installation_id:
                raise ApiError(404, "Not Found")  # GitHub hides repos the token cannot see
            ctx.repo = repo

    def _verify_jwt(self, token: str) -> None:
        st = self.state
        if st.public_key_pem is None:
            raise ApiError(500, "FakeGitHub was created without public_key_pem")
        try:
            claims = jwt.decode(token, st.public_key_pem, algorithms=["RS256"], leeway=JWT_LEEWAY_SECONDS,
                                options={"require": ["iat", "exp", "iss"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires") from None
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"A JSON web token could not be decoded ({exc})") from None
        if str(claims["iss"]) != str(st.app_id):
            raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
        # GitHub refuses JWTs valid for more than 10 minutes.
        if claims["exp"] > time.time() + 600 + JWT_LEEWAY_SECONDS:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        method = request.method.upper()
        path = request.path
        raw_path = request.raw_path.split("?", 1)[0]
        query = {k: (v[0] if len(v) == 1 else v) for k in request.query.keys() if (v := request.query.getall(k))}
        body: Any = None
        bad_json = False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json, body = True, raw.decode("utf-8", "replace")
        with self.state.lock:
            reply, check_response = self._handle(method, path, raw_path, query, body, bad_json, request.headers)
            auth_key = request.headers.get("Authorization", request.remote or "anon")
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "X-GitHub-Media-Type": "github.v3; format=json",
                "X-GitHub-Api-Version-Selected": "2022-11-28",
                "X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
                **self._rate_headers(auth_key),
                **reply.headers,
            }
            if self.validator is not None and check_response:
                for v in self.validator.check_response(method, raw_path, reply.status, reply.body):
                    self._violations.append(f"response: {v}")
            self._calls.append(Call(method, path, query, body, CIMultiDict(request.headers), reply.status))
            payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        if reply.body is None:
            headers.pop("Content-Type")
        return web.Response(status=reply.status, body=payload, headers=headers)

    def _handle(self, method: str, path: str, raw_path: str, query: dict[str, Any], body: Any, bad_json: bool,
                headers: Any) -> tuple[Reply, bool]:
        """Returns the reply and whether it should be checked against the spec."""
        body_errors: list[str] = []
        if self.validator is not None:
            if bad_json:
                self._violations.append(f"request: {method} {path}: body is not valid JSON")
            else:
                params_v, body_errors = self.validator.check_request_parts(method, raw_path, query, body)
                self._violations.extend(f"request: {v}" for v in params_v + body_errors)

        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return Reply(fault.status, fault.body, dict(fault.headers)), False

        for rt in ROUTES:
            if rt.method != method:
                continue
            params = rt.template.match(raw_path)
            if params is None:
                continue
            ctx = RequestContext(self.state, method, path, params, query, body, headers)
            try:
                self._authenticate(rt, ctx)
                if bad_json:
                    raise ApiError(400, "Problems parsing JSON")
                if body_errors:
                    # GitHub's answer to a body that breaks the schema.
                    raise ApiError(422, "Invalid request.\n\n" + "\n".join(
                        e.split(": request body ", 1)[-1] for e in body_errors))
                return rt.handler(ctx), True
            except ApiError as exc:
                return Reply(exc.status, exc.body, exc.headers), True
        if self.validator is not None and (raw_path == "/graphql" or self.validator.find_operation(method, raw_path)):
            # A real GitHub endpoint the fake does not implement yet: flag it, since
            # the 404 below is not what GitHub would answer. Add a @route for it.
            self._violations.append(f"fake: {method} {path} is documented by GitHub but not implemented by FakeGitHub")
        return Reply(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"}), True
