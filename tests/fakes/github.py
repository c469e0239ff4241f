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
``fake.send_webhook(url, secret, event, payload)`` plays GitHub delivering a
webhook and keeps the App's delivery log (``GET /app/hook/deliveries``,
redelivery through ``POST /app/hook/deliveries/{id}/attempts``).
"""

from __future__ import annotations

import base64
import copy
import gzip
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
import urllib.error
import urllib.request
from urllib.parse import quote, urlencode

import jwt
from aiohttp import web
from multidict import CIMultiDict

from ._server import ThreadedServer
from .git_backend import ZERO_SHA, BareRepo, CommitInfo, FileChange, GitError, parse_receive_pack_commands, run_http_backend
from .openapi import OpenAPIValidator, PathTemplate, compile_template
from .webhooks import headers_for, node_id, stable_id, user_json

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
    performed: bool = False  # GitHub did the work, then the answer was lost (a 502 from the edge)

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
        # App-manifest flow: codes handed out by the /settings/apps/new page, Apps created from them.
        self.manifest_codes: dict[str, dict[str, Any]] = {}
        self.manifest_apps: list[dict[str, Any]] = []
        # The App's webhook delivery log (send_webhook, redeliveries) and the redelivery threads.
        self.hook_deliveries: list[HookDelivery] = []
        self.hook_threads: list[threading.Thread] = []

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

    @property
    def bot_email(self) -> str:
        """The noreply address GitHub gives the App's bot (commit author of API commits)."""
        return f"{self.app_id}+{self.bot_login}@users.noreply.github.com"

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
# Handlers: the App's webhook delivery log (Advanced -> Recent deliveries)
# --------------------------------------------------------------------------

HOOK_TIMEOUT_SECONDS = 10  # GitHub gives a delivery 10 s, then records it as timed out
_HOOK_DOCS = f"{DOCS}/apps/webhooks"


@dataclass
class HookDelivery:
    """One delivery attempt as GitHub records it, plus what the fake needs to redeliver it."""

    id: int
    guid: str
    delivered_at: float
    redelivery: bool
    duration: float
    status: str  # "OK", "Invalid HTTP Response: 503", "failed to connect to host", "timed out"
    status_code: int  # the HTTP status; 0 when no HTTP answer came back
    event: str
    action: str | None
    installation_id: int | None
    repository_id: int | None
    url: str
    secret: str
    body: bytes
    request_headers: dict[str, str]
    response_headers: dict[str, str]
    response_body: str | None

    def item_json(self) -> dict[str, Any]:
        """``hook-delivery-item``: what the list endpoint shows."""
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": now_iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": None,
        }

    def full_json(self) -> dict[str, Any]:
        """``hook-delivery``: one delivery with its request and response."""
        try:
            payload = json.loads(self.body)
        except ValueError:
            payload = None
        return {
            **self.item_json(),
            "url": self.url,
            "request": {"headers": dict(self.request_headers),
                        "payload": payload if isinstance(payload, dict) else None},
            "response": {"headers": dict(self.response_headers), "payload": self.response_body},
        }


def post_webhook(url: str, event: str, body: bytes, secret: str, guid: str, app_id: int,
                 timeout: float = HOOK_TIMEOUT_SECONDS) -> dict[str, Any]:
    """POST one signed delivery like GitHub's hookshot; never raises. Call without the state lock."""
    headers = headers_for(event, body, secret, guid, target_id=app_id)
    out: dict[str, Any] = {"request_headers": headers, "response_headers": {}, "response_body": None,
                           "delivered_at": time.time()}
    started = time.monotonic()
    try:
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            code, resp_headers, text = resp.status, dict(resp.headers), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        code, resp_headers, text = exc.code, dict(exc.headers or {}), exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as exc:  # no HTTP answer at all: GitHub records status_code 0
        timed_out = isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)
        out.update(status="timed out" if timed_out else "failed to connect to host", status_code=0,
                   duration=round(time.monotonic() - started, 3))
        return out
    out.update(status="OK" if 200 <= code < 300 else f"Invalid HTTP Response: {code}", status_code=code,
               response_headers=resp_headers, response_body=text)
    out["duration"] = round(time.monotonic() - started, 3)
    return out


def record_hook_delivery(st: "GitHubState", *, guid: str, event: str, body: bytes, url: str, secret: str,
                         redelivery: bool, result: dict[str, Any]) -> HookDelivery:
    """Append one attempt to the delivery log (caller holds the state lock)."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    payload = payload if isinstance(payload, dict) else {}
    inst, repo = payload.get("installation"), payload.get("repository")
    action = payload.get("action")
    d = HookDelivery(
        id=st.next_id(), guid=guid, delivered_at=result["delivered_at"], redelivery=redelivery,
        duration=result["duration"], status=result["status"], status_code=result["status_code"],
        event=event, action=action if isinstance(action, str) else None,
        installation_id=inst.get("id") if isinstance(inst, dict) and isinstance(inst.get("id"), int) else None,
        repository_id=repo.get("id") if isinstance(repo, dict) and isinstance(repo.get("id"), int) else None,
        url=url, secret=secret, body=body, request_headers=result["request_headers"],
        response_headers=result["response_headers"], response_body=result["response_body"],
    )
    st.hook_deliveries.append(d)
    return d


def _hook_delivery(ctx: RequestContext) -> HookDelivery:
    wanted = ctx.int_param("delivery_id")
    for d in ctx.state.hook_deliveries:
        if d.id == wanted:
            return d
    raise ApiError(404, "Not Found", docs=f"{_HOOK_DOCS}#get-a-delivery-for-an-app-webhook")


@route("GET", "/app/hook/deliveries", auth=AUTH_JWT)
def list_hook_deliveries(ctx: RequestContext) -> Reply:
    """Newest first, cursor-paginated: ``Link: <...?cursor=v1_<id>>; rel="next"`` (the cursor names
    the first delivery of the next page, like GitHub's ``v1_12077215967``)."""
    try:
        per_page = max(1, min(100, int(ctx.query.get("per_page", 30))))
    except (TypeError, ValueError):
        raise ApiError(400, "Bad Request", docs=f"{_HOOK_DOCS}#list-deliveries-for-an-app-webhook") from None
    items = sorted(ctx.state.hook_deliveries, key=lambda d: d.id, reverse=True)
    status_filter = ctx.query.get("status")
    if status_filter == "success":
        items = [d for d in items if 200 <= d.status_code <= 399]
    elif status_filter == "failure":  # GitHub's classification: 400-599 only (not 0, "failed to connect")
        items = [d for d in items if 400 <= d.status_code <= 599]
    cursor = ctx.query.get("cursor")
    if cursor is not None:
        m = re.fullmatch(r"v1_(\d+)", str(cursor))
        if m is None:
            raise ApiError(400, "Bad Request", docs=f"{_HOOK_DOCS}#list-deliveries-for-an-app-webhook")
        items = [d for d in items if d.id <= int(m.group(1))]
    page, rest = items[:per_page], items[per_page:]
    headers = {}
    if rest:
        q = {k: v for k, v in ctx.query.items() if k not in ("cursor", "per_page")}
        q.update(per_page=per_page, cursor=f"v1_{rest[0].id}")
        headers["Link"] = f'<{ctx.state.base_url}/app/hook/deliveries?{urlencode(q, doseq=True)}>; rel="next"'
    return Reply(200, [d.item_json() for d in page], headers)


@route("GET", "/app/hook/deliveries/{delivery_id}", auth=AUTH_JWT)
def get_hook_delivery(ctx: RequestContext) -> Reply:
    return Reply(200, _hook_delivery(ctx).full_json())


@route("POST", "/app/hook/deliveries/{delivery_id}/attempts", auth=AUTH_JWT)
def redeliver_hook_delivery(ctx: RequestContext) -> Reply:
    """202 at once; the same payload and guid go to the original URL from a background thread and are
    recorded as a new delivery with ``redelivery: true`` (handlers must not block on the network)."""
    st = ctx.state
    original = _hook_delivery(ctx)

    def send() -> None:
        result = post_webhook(original.url, original.event, original.body, original.secret, original.guid,
                              st.app_id)
        with st.lock:
            record_hook_delivery(st, guid=original.guid, event=original.event, body=original.body,
                                 url=original.url, secret=original.secret, redelivery=True, result=result)

    thread = threading.Thread(target=send, name=f"redeliver-{original.id}", daemon=True)
    st.hook_threads.append(thread)
    thread.start()
    return Reply(202, {})


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
    assert ctx.repo is not None
    body = _require_body_field(ctx, "body", str, _COMMENT_DOCS)
    _check_comment_body(body, _COMMENT_DOCS)
    comment = _new_issue_comment(ctx.state, ctx.repo, ctx.issue(), body, None)
    return Reply(201, comment, {"Location": comment["url"]})


def _new_issue_comment(st, repo, issue, body: str, user_login: str | None) -> dict[str, Any]:
    """Store a comment: by the App (user_login None, as a request with its token) or by a person."""
    cid = st.next_id()
    url = f"{st.repo_url(repo)}/issues/comments/{cid}"
    ts = now_iso()
    comment = {
        "id": cid,
        "node_id": node_id("IssueComment", cid),
        "url": url,
        "html_url": f"{issue.data['html_url']}#issuecomment-{cid}",
        "body": body,
        "user": st.bot_user() if user_login is None else st.user(user_login),
        "created_at": ts,
        "updated_at": ts,
        "issue_url": issue.data["url"],
        "author_association": "NONE" if user_login is None else "COLLABORATOR",
        "performed_via_github_app": st.integration() if user_login is None else None,
        "reactions": st.reaction_rollup(f"{url}/reactions", []),
    }
    repo.comments[cid] = comment
    repo.comment_issue[cid] = issue.data["number"]
    repo.comment_reactions[cid] = []
    issue.comment_ids.append(cid)
    issue.data["comments"] = len(issue.comment_ids)
    issue.data["updated_at"] = ts
    return comment


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
# Handlers: contents, trees, refs, branches, commits, compare (read from git)
# --------------------------------------------------------------------------

_CONTENTS_DOCS = f"{DOCS}/repos/contents#get-repository-content"
_REFS_DOCS = f"{DOCS}/git/refs"


def _repo(ctx: RequestContext) -> Repo:
    assert ctx.repo is not None
    return ctx.repo


def _commit_sha(repo: Repo, ref: str | None, docs: str = _CONTENTS_DOCS) -> str:
    """The commit a branch name, ``heads/x``, ``refs/heads/x``, tag or sha names (default branch if empty)."""
    sha = repo.git.resolve(ref or f"refs/heads/{repo.default_branch}")
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}", docs=docs)
    return sha


def _git_user_json(name: str, email: str, date: str) -> dict[str, Any]:
    return {"name": name, "email": email, "date": date}


def _login_for_email(st: GitHubState, email: str) -> tuple[str, str]:
    """GitHub links a commit to an account by e-mail. In the fake's world every address has an account:
    the bot's noreply address is the bot, ``[id+]login@users.noreply.github.com`` is ``login``, and any
    other ``local@domain`` is the user ``local`` (so ``octo@example.com`` is ``octo``).

    (GitHub sends ``null`` for unknown e-mails, but openapi.py's validator rejects null under
    ``nullable`` + ``oneOf``, so the fake never produces unlinked commits.)
    """
    if email.lower() == st.bot_email.lower():
        return st.bot_login, "Bot"
    m = re.fullmatch(r"(?:\d+\+)?([A-Za-z0-9-]+(?:\[bot\])?)@users\.noreply\.github\.com", email)
    if m:
        return m.group(1), "Bot" if m.group(1).endswith("[bot]") else "User"
    login = re.sub(r"[^A-Za-z0-9-]+", "-", email.split("@", 1)[0]).strip("-") or "ghost"
    return login, "User"


_UNSIGNED = {"verified": False, "reason": "unsigned", "signature": None, "payload": None, "verified_at": None}


def _diff_entry_json(st: GitHubState, repo: Repo, ref_sha: str, fc: FileChange) -> dict[str, Any]:
    base = st.repo_url(repo)
    path = quote(fc.filename)
    entry: dict[str, Any] = {
        "sha": fc.sha,
        "filename": fc.filename,
        "status": fc.status,
        "additions": fc.additions,
        "deletions": fc.deletions,
        "changes": fc.additions + fc.deletions,
        "blob_url": f"https://github.com/{repo.full_name}/blob/{ref_sha}/{path}",
        "raw_url": f"https://github.com/{repo.full_name}/raw/{ref_sha}/{path}",
        "contents_url": f"{base}/contents/{path}?ref={ref_sha}",
    }
    if fc.patch is not None:
        entry["patch"] = fc.patch
    if fc.previous_filename:
        entry["previous_filename"] = fc.previous_filename
    return entry


def commit_json(st: GitHubState, repo: Repo, sha: str, *, with_files: bool = True) -> dict[str, Any]:
    """``commit`` (GET /repos/{owner}/{repo}/commits/{ref}); files/stats only when ``with_files``."""
    c: CommitInfo = repo.git.commit(sha)
    base = st.repo_url(repo)
    author = _login_for_email(st, c.author_email)
    committer = _login_for_email(st, c.committer_email)
    out: dict[str, Any] = {
        "url": f"{base}/commits/{sha}",
        "sha": sha,
        "node_id": node_id("Commit", int(sha[:12], 16)),
        "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
        "comments_url": f"{base}/commits/{sha}/comments",
        "commit": {
            "url": f"{base}/git/commits/{sha}",
            "author": _git_user_json(c.author_name, c.author_email, c.author_date),
            "committer": _git_user_json(c.committer_name, c.committer_email, c.committer_date),
            "message": c.message,
            "comment_count": 0,
            "tree": {"sha": c.tree, "url": f"{base}/git/trees/{c.tree}"},
            "verification": dict(_UNSIGNED),
        },
        "author": st.user(*author),
        "committer": st.user(*committer),
        "parents": [{"sha": p, "url": f"{base}/commits/{p}", "html_url": f"https://github.com/{repo.full_name}/commit/{p}"}
                    for p in c.parents],
    }
    if with_files:
        changes = repo.git.diff(c.parents[0] if c.parents else None, sha)
        adds, dels = sum(f.additions for f in changes), sum(f.deletions for f in changes)
        out["stats"] = {"additions": adds, "deletions": dels, "total": adds + dels}
        out["files"] = [_diff_entry_json(st, repo, sha, f) for f in changes]
    return out


def git_ref_json(st: GitHubState, repo: Repo, full_ref: str, sha: str) -> dict[str, Any]:
    base = st.repo_url(repo)
    typ = repo.git.object_type(sha) or "commit"
    return {
        "ref": full_ref,
        "node_id": "REF_" + base64.b64encode(f"{repo.id}:{full_ref}".encode()).decode().rstrip("="),
        "url": f"{base}/git/{quote(full_ref)}",
        "object": {"type": typ, "sha": sha, "url": f"{base}/git/{typ}s/{sha}"},
    }


def _content_entry(ctx: RequestContext, path: str, kind: str, sha: str, size: int, ref: str) -> dict[str, Any]:
    repo = _repo(ctx)
    base = ctx.state.repo_url(repo)
    if kind == "file":
        git_url = f"{base}/git/blobs/{sha}"
        download = f"https://raw.githubusercontent.com/{repo.full_name}/{ref}/{quote(path)}"
    else:
        size, git_url, download = 0, f"{base}/git/trees/{sha}", None
    self_url = f"{base}/contents/{quote(path)}?ref={ref}"
    html = f"https://github.com/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{ref}/{quote(path)}"
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


_KIND = {"blob": "file", "tree": "dir", "commit": "submodule"}


@route("GET", "/repos/{owner}/{repo}/contents/{path}", multi_segment=("path",))
def get_contents(ctx: RequestContext) -> Reply:
    repo = _repo(ctx)
    ref = ctx.query.get("ref") or repo.default_branch
    commit = _commit_sha(repo, ref)
    path = ctx.params["path"].strip("/")
    entries = repo.git.tree_entries(repo.git.commit(commit).tree)
    for e in entries:
        if e.path == path and e.type == "blob":
            entry = _content_entry(ctx, path, "file", e.sha, e.size or 0, ref)
            raw = base64.b64encode(repo.git.blob(e.sha)).decode()
            # GitHub wraps the base64 at 60 columns (decoders must ignore newlines).
            entry.update(content="\n".join(raw[i : i + 60] for i in range(0, len(raw), 60)) + "\n", encoding="base64")
            return Reply(200, entry)
    prefix = path + "/"
    children = [e for e in entries if e.path.startswith(prefix) and "/" not in e.path[len(prefix):]]
    if not children:
        raise ApiError(404, "Not Found", docs=_CONTENTS_DOCS)
    return Reply(200, [_content_entry(ctx, e.path, _KIND[e.type], e.sha, e.size or 0, ref) for e in children])


@route("PUT", "/repos/{owner}/{repo}/contents/{path}", multi_segment=("path",))
def put_contents(ctx: RequestContext) -> Reply:
    """Create or update one file with a commit on ``branch`` (GitHub's "create or update file contents")."""
    st, repo = ctx.state, _repo(ctx)
    docs = f"{DOCS}/repos/contents#create-or-update-file-contents"
    message = _require_body_field(ctx, "message", str, docs)
    content_b64 = _require_body_field(ctx, "content", str, docs)
    try:
        content = base64.b64decode(content_b64, validate=False)
    except ValueError:
        raise ApiError(422, "content is not valid Base64", docs=docs) from None
    path = ctx.params["path"].strip("/")
    branch = ctx.json.get("branch") or repo.default_branch
    head = repo.git.branch_sha(branch)
    if head is None:
        raise ApiError(404, f"Branch {branch} not found", docs=docs)
    existing = next((e for e in repo.git.tree_entries(repo.git.commit(head).tree) if e.path == path), None)
    if existing is not None and existing.type != "blob":
        raise ApiError(422, f"{path} is a directory", docs=docs)
    given = ctx.json.get("sha")
    if existing is not None and not given:
        raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.', docs=docs)
    if existing is not None and given != existing.sha:
        raise ApiError(409, f"{path} does not match {given}", docs=docs)

    def ident(key: str, default: tuple[str, str]) -> tuple[str, str]:
        v = ctx.json.get(key)
        return (v["name"], v["email"]) if isinstance(v, dict) and v.get("name") and v.get("email") else default

    committer = ident("committer", (st.bot_login, st.bot_email))
    author = ident("author", committer)
    try:
        sha = repo.git.commit_files(branch, {path: content}, message, author=author, committer=committer, parent=head)
    except GitError:
        raise ApiError(409, f"{path} does not match {given}", docs=docs) from None
    c = repo.git.commit(sha)
    blob = next(e for e in repo.git.tree_entries(c.tree) if e.path == path)
    base = st.repo_url(repo)
    commit = {
        "sha": sha,
        "node_id": node_id("Commit", int(sha[:12], 16)),
        "url": f"{base}/git/commits/{sha}",
        "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
        "author": _git_user_json(c.author_name, c.author_email, c.author_date),
        "committer": _git_user_json(c.committer_name, c.committer_email, c.committer_date),
        "message": c.message,
        "tree": {"url": f"{base}/git/trees/{c.tree}", "sha": c.tree},
        "parents": [{"url": f"{base}/git/commits/{p}", "html_url": f"https://github.com/{repo.full_name}/commit/{p}",
                     "sha": p} for p in c.parents],
        "verification": dict(_UNSIGNED),
    }
    content_json = _content_entry(ctx, path, "file", blob.sha, blob.size or 0, branch)
    return Reply(200 if existing is not None else 201, {"content": content_json, "commit": commit})


@route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", multi_segment=("tree_sha",))
def get_tree(ctx: RequestContext) -> Reply:
    """Like GitHub: without ``recursive`` only top-level entries; with it, every blob *and* subtree."""
    repo = _repo(ctx)
    tree = repo.git.resolve(ctx.params["tree_sha"], "tree")
    if tree is None:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/git/trees#get-a-tree")
    recursive = ctx.query.get("recursive") not in (None, "", "0", "false")
    base = ctx.state.repo_url(repo)
    entries = []
    for e in repo.git.tree_entries(tree):
        if not recursive and "/" in e.path:
            continue
        item: dict[str, Any] = {"path": e.path, "mode": e.mode, "type": e.type, "sha": e.sha}
        if e.type == "blob":
            item.update(size=e.size, url=f"{base}/git/blobs/{e.sha}")
        elif e.type == "tree":
            item["url"] = f"{base}/git/trees/{e.sha}"
        entries.append(item)
    return Reply(200, {"sha": tree, "url": f"{base}/git/trees/{tree}", "tree": entries, "truncated": False})


@route("GET", "/repos/{owner}/{repo}/branches/{branch}", multi_segment=("branch",))
def get_branch(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    name = ctx.params["branch"]
    sha = repo.git.branch_sha(name)
    if sha is None:
        raise ApiError(404, "Branch not found", docs=f"{DOCS}/branches/branches#get-a-branch")
    base = st.repo_url(repo)
    protected = name in repo.protected_branches
    protection_url = f"{base}/branches/{quote(name, safe='')}/protection"
    return Reply(200, {
        "name": name,
        "commit": commit_json(st, repo, sha, with_files=False),
        "_links": {"html": f"https://github.com/{repo.full_name}/tree/{name}",
                   "self": f"{base}/branches/{quote(name, safe='')}"},
        "protected": protected,
        "protection": {
            "enabled": protected,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        },
        "protection_url": protection_url,
    })


@route("GET", "/repos/{owner}/{repo}/commits/{ref}", multi_segment=("ref",))
def get_commit(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    ref = ctx.params["ref"]
    sha = repo.git.resolve(ref)
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ref}", docs=f"{DOCS}/commits/commits#get-a-commit")
    return Reply(200, commit_json(st, repo, sha))


def _full_ref(ref: str) -> str:
    return ref if ref.startswith("refs/") else f"refs/{ref}"


@route("GET", "/repos/{owner}/{repo}/git/ref/{ref}", multi_segment=("ref",))
def get_git_ref(ctx: RequestContext) -> Reply:
    repo = _repo(ctx)
    full = _full_ref(ctx.params["ref"])
    sha = repo.git.ref_sha(full) if full.count("/") >= 2 else None
    if sha is None:
        raise ApiError(404, "Not Found", docs=f"{_REFS_DOCS}#get-a-reference")
    return Reply(200, git_ref_json(ctx.state, repo, full, sha))


@route("POST", "/repos/{owner}/{repo}/git/refs")
def create_git_ref(ctx: RequestContext) -> Reply:
    repo = _repo(ctx)
    docs = f"{_REFS_DOCS}#create-a-reference"
    ref = _require_body_field(ctx, "ref", str, docs)
    sha = _require_body_field(ctx, "sha", str, docs)
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.", docs=docs)
    if not repo.git.valid_ref_name(ref):
        raise ApiError(422, f"{ref} is not a valid ref name.", docs=docs)
    if not re.fullmatch(r"[0-9a-f]{40}", sha) or repo.git.object_type(sha) is None:
        raise ApiError(422, "Object does not exist", docs=docs)
    if repo.git.ref_sha(ref) is not None:
        raise ApiError(422, "Reference already exists", docs=docs)
    try:
        repo.git.update_ref(ref, sha, ZERO_SHA)
    except GitError:
        raise ApiError(422, "Reference already exists", docs=docs) from None
    return Reply(201, git_ref_json(ctx.state, repo, ref, sha),
                 {"Location": f"{ctx.state.repo_url(repo)}/git/{quote(ref)}"})


def _protected(repo: Repo, full_ref: str) -> bool:
    return full_ref.startswith("refs/heads/") and full_ref[len("refs/heads/"):] in repo.protected_branches


@route("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}", multi_segment=("ref",))
def update_git_ref(ctx: RequestContext) -> Reply:
    repo = _repo(ctx)
    docs = f"{_REFS_DOCS}#update-a-reference"
    sha = _require_body_field(ctx, "sha", str, docs)
    force = bool(ctx.json.get("force", False))
    full = _full_ref(ctx.params["ref"])
    old = repo.git.ref_sha(full)
    if old is None:
        raise ApiError(422, "Reference does not exist", docs=docs)
    if not re.fullmatch(r"[0-9a-f]{40}", sha) or repo.git.object_type(sha) != "commit":
        raise ApiError(422, "Object does not exist", docs=docs)
    fast_forward = repo.git.is_ancestor(old, sha)
    if not fast_forward and not force:
        raise ApiError(422, "Update is not a fast forward", docs=docs)
    if not fast_forward and _protected(repo, full):
        raise ApiError(422, "Protected branch update failed: Cannot force-push to this branch", docs=docs)
    try:
        repo.git.update_ref(full, sha, old)
    except GitError:
        raise ApiError(409, "Reference update failed: the reference changed concurrently", docs=docs) from None
    return Reply(200, git_ref_json(ctx.state, repo, full, sha))


@route("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}", multi_segment=("ref",))
def delete_git_ref(ctx: RequestContext) -> Reply:
    repo = _repo(ctx)
    docs = f"{_REFS_DOCS}#delete-a-reference"
    full = _full_ref(ctx.params["ref"])
    if repo.git.ref_sha(full) is None:
        raise ApiError(422, "Reference does not exist", docs=docs)
    if _protected(repo, full) or full == f"refs/heads/{repo.default_branch}":
        raise ApiError(422, "Cannot delete this protected branch" if _protected(repo, full)
                       else "Cannot delete the default branch", docs=docs)
    repo.git.delete_ref(full)
    return Reply(204)


@route("GET", "/repos/{owner}/{repo}/compare/{basehead}", multi_segment=("basehead",))
def compare_commits(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    basehead = ctx.params["basehead"]
    base_ref, sep, head_ref = basehead.partition("...")
    if not sep:
        base_ref, sep, head_ref = basehead.partition("..")
    if not sep:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/commits/commits#compare-two-commits")

    def resolve(r: str) -> str:
        owner, colon, branch = r.rpartition(":")
        if colon and owner.lower() != repo.owner.lower():
            raise ApiError(404, "Not Found", docs=f"{DOCS}/commits/commits#compare-two-commits")
        sha = repo.git.resolve(branch if colon else r)
        if sha is None:
            raise ApiError(404, "Not Found", docs=f"{DOCS}/commits/commits#compare-two-commits")
        return sha

    base_sha, head_sha = resolve(base_ref), resolve(head_ref)
    merge_base = repo.git.merge_base(base_sha, head_sha)
    ahead = repo.git.rev_list(head_sha, base_sha, reverse=True)
    behind = repo.git.rev_list(base_sha, head_sha)
    status = ("identical" if not ahead and not behind else "ahead" if not behind
              else "behind" if not ahead else "diverged")
    files = repo.git.diff(merge_base, head_sha) if merge_base else repo.git.diff(None, head_sha)
    html = f"https://github.com/{repo.full_name}/compare/{basehead}"
    return Reply(200, {
        "url": f"{st.repo_url(repo)}/compare/{basehead}",
        "html_url": html,
        "permalink_url": f"https://github.com/{repo.full_name}/compare/{base_sha[:7]}...{head_sha[:7]}",
        "diff_url": html + ".diff",
        "patch_url": html + ".patch",
        "base_commit": commit_json(st, repo, base_sha, with_files=False),
        "merge_base_commit": commit_json(st, repo, merge_base or base_sha, with_files=False),
        "status": status,
        "ahead_by": len(ahead),
        "behind_by": len(behind),
        "total_commits": len(ahead),
        "commits": [commit_json(st, repo, s, with_files=False) for s in ahead],
        "files": [_diff_entry_json(st, repo, head_sha, f) for f in files],
    })


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
    sha = repo.git.resolve(ref) or ref
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
# Handlers: pull requests and review comments
# --------------------------------------------------------------------------

_PULLS_DOCS = f"{DOCS}/pulls/pulls"
_REVIEW_COMMENT_DOCS = f"{DOCS}/pulls/comments"


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
        "merged_at": None,
        "merge_commit_sha": None,
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
        merged=False,
        mergeable=True if issue["state"] == "open" else None,
        rebaseable=True if issue["state"] == "open" else None,
        mergeable_state="draft" if pr.draft else "clean",
        merged_by=None,
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


def _issue_data(st: GitHubState, repo: Repo, number: int, *, title: str, body: str | None, user: str,
                user_type: str = "User", labels: list[str] | tuple[str, ...] = (), state: str = "open") -> dict[str, Any]:
    iid = stable_id("issue", f"{repo.full_name}#{number}")  # matches webhooks.issues_labeled_payload
    url = f"{st.repo_url(repo)}/issues/{number}"
    ts = now_iso()
    return {
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
        "user": st.user(user, user_type),
        "labels": [st.label_json(repo, name) for name in labels],
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "locked": False,
        "active_lock_reason": None,
        "comments": 0,
        "closed_at": None if state == "open" else ts,
        "created_at": ts,
        "updated_at": ts,
        "closed_by": None,
        "author_association": "OWNER" if user.lower() == repo.owner.lower() else "NONE",
    }


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


def review_comment_json(st: GitHubState, repo: Repo, *, cid: int, pr: PullRequest, path: str, line: int, side: str,
                        body: str, user: str, user_type: str, diff_hunk: str, commit_id: str,
                        in_reply_to: int | None) -> dict[str, Any]:
    base = st.repo_url(repo)
    url = f"{base}/pulls/comments/{cid}"
    html = f"https://github.com/{repo.full_name}/pull/{pr.number}#discussion_r{cid}"
    pr_url = f"{base}/pulls/{pr.number}"
    ts = now_iso()
    c: dict[str, Any] = {
        "url": url,
        "pull_request_review_id": st.next_id(),
        "id": cid,
        "node_id": graphql_id("PRRC", cid),
        "diff_hunk": diff_hunk,
        "path": path,
        "position": 1,
        "original_position": 1,
        "commit_id": commit_id,
        "original_commit_id": commit_id,
        "user": st.user(user, user_type),
        "body": body,
        "created_at": ts,
        "updated_at": ts,
        "html_url": html,
        "pull_request_url": pr_url,
        "author_association": ("OWNER" if user.lower() == repo.owner.lower()
                               else "COLLABORATOR" if user.lower() in repo.permissions else "NONE"),
        "_links": {"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pr_url}},
        "start_line": None,
        "original_start_line": None,
        "start_side": None,
        "line": line,
        "original_line": line,
        "side": side,
        "subject_type": "line",
        "reactions": st.reaction_rollup(f"{url}/reactions", []),
    }
    if in_reply_to is not None:
        c["in_reply_to_id"] = in_reply_to
    return c


def add_review_comment(st: GitHubState, repo: Repo, pr: PullRequest, *, body: str, user: str, user_type: str = "User",
                       path: str | None = None, line: int | None = None, side: str = "RIGHT", diff_hunk: str = "",
                       commit_id: str | None = None, reply_to: int | None = None) -> dict[str, Any]:
    """A new thread (``reply_to`` None) or a reply in the thread of review comment ``reply_to``."""
    cid = st.next_id()
    if reply_to is None:
        assert path is not None and line is not None
        thread = ReviewThread(st.next_id(), pr.number, path, line, side)
        repo.threads[thread.id] = thread
        comment = review_comment_json(st, repo, cid=cid, pr=pr, path=path, line=line, side=side, body=body, user=user,
                                      user_type=user_type, diff_hunk=diff_hunk,
                                      commit_id=commit_id or _pr_head_sha(repo, pr), in_reply_to=None)
    else:
        thread = repo.threads[repo.comment_thread[reply_to]]
        root = repo.review_comments[thread.comment_ids[0]]
        # Replies to replies are attached to the thread's first comment, as GitHub does.
        comment = review_comment_json(st, repo, cid=cid, pr=pr, path=root["path"], line=root["line"],
                                      side=root["side"], body=body, user=user, user_type=user_type,
                                      diff_hunk=root["diff_hunk"], commit_id=root["commit_id"], in_reply_to=root["id"])
        comment["original_commit_id"] = root["original_commit_id"]
    repo.review_comments[cid] = comment
    repo.comment_thread[cid] = thread.id
    thread.comment_ids.append(cid)
    pr.review_comment_ids.append(cid)
    repo.issues[pr.number].data["updated_at"] = comment["created_at"]
    return comment


def thread_outdated(repo: Repo, pr: PullRequest, thread: ReviewThread) -> bool:
    """Outdated when the commented line's text at the PR head differs from the commented commit (or the file is gone)."""
    if thread.outdated is not None:
        return thread.outdated
    root = repo.review_comments[thread.comment_ids[0]]
    then = repo.git.read_file(root["original_commit_id"], thread.path)
    now = repo.git.read_file(_pr_head_sha(repo, pr), thread.path)
    if now is None:
        return True
    if then is None:
        return False

    def line_text(data: bytes) -> bytes | None:
        lines = data.splitlines()
        return lines[thread.line - 1] if 0 < thread.line <= len(lines) else None

    return line_text(then) != line_text(now)


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments")
def list_review_comments(ctx: RequestContext) -> Reply:
    repo = _repo(ctx)
    pr = _pull(ctx)
    comments = [repo.review_comments[c] for c in pr.review_comment_ids]
    since = ctx.query.get("since")
    if since:
        comments = [c for c in comments if c["updated_at"] >= since]
    key = "updated_at" if ctx.query.get("sort") == "updated" else "created_at"
    comments.sort(key=lambda c: (c[key], c["id"]), reverse=ctx.query.get("direction") == "desc")
    return ctx.paginate(comments)


@route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies")
def reply_to_review_comment(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    docs = f"{_REVIEW_COMMENT_DOCS}#create-a-reply-for-a-review-comment"
    pr = _pull(ctx)
    cid = ctx.int_param("comment_id")
    if cid not in pr.review_comment_ids:
        raise ApiError(404, "Not Found", docs=docs)
    body = _require_body_field(ctx, "body", str, docs)
    if len(body) > MAX_COMMENT_BODY:
        raise _validation_failed("PullRequestReviewComment", "body",
                                 f"body is too long (maximum is {MAX_COMMENT_BODY} characters)", docs)
    comment = add_review_comment(st, repo, pr, body=body, user=st.bot_login, user_type="Bot", reply_to=cid)
    return Reply(201, comment, {"Location": comment["url"]})


# --------------------------------------------------------------------------
# GraphQL: the subset the review-thread work needs
# --------------------------------------------------------------------------
#
# A small real GraphQL front end (tokenizer, parser for operations, variables,
# aliases, arguments and nested selections) over a hand-written schema, so
# responses carry exactly the fields that were asked for, like GitHub's.
# Fragments are not supported; unknown fields answer GitHub's validation
# error and are recorded as violations.

GRAPHQL_DOCS = "https://docs.github.com/graphql"


def graphql_id(prefix: str, ident: int) -> str:
    """A new-style global node id such as ``PRRT_kwDO...`` (opaque, stable)."""
    return f"{prefix}_kwDO" + base64.urlsafe_b64encode(str(ident).encode()).decode().rstrip("=")


class GraphQLSyntaxError(Exception):
    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line, self.column = line, column


class GraphQLFieldError(Exception):
    """An execution error: the field resolves to null and the error is reported (e.g. NOT_FOUND)."""

    def __init__(self, message: str, type_: str | None = None, *, violation: bool = False) -> None:
        super().__init__(message)
        self.type = type_
        self.violation = violation


_GQL_TOKEN = re.compile(r'''
    (?P<ws>[\s,\ufeff]+|\#[^\n]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$():=@\[\]{}|&])
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
''', re.X)


@dataclass
class _GqlField:
    alias: str
    name: str
    args: dict[str, Any]  # values: python literals, ("$", var) for variables, or nested dict/list
    selections: list["_GqlField"]
    line: int
    column: int


class _GqlParser:
    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str, int, int]] = []
        pos = 0
        while pos < len(source):
            m = _GQL_TOKEN.match(source, pos)
            line = source.count("\n", 0, pos) + 1
            col = pos - (source.rfind("\n", 0, pos) + 1) + 1
            if m is None:
                raise GraphQLSyntaxError(f"Parse error on \"{source[pos]}\" at [{line}, {col}]", line, col)
            kind = m.lastgroup or ""
            if kind != "ws":
                self.tokens.append((kind, m.group(), line, col))
            pos = m.end()
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        return self.i < len(self.tokens) and (value is None or self.tokens[self.i][1] == value)

    def take(self, value: str | None = None, kind: str | None = None) -> tuple[str, str, int, int]:
        if self.i >= len(self.tokens):
            raise GraphQLSyntaxError("Parse error on end of document (expected more)")
        tok = self.tokens[self.i]
        if (value is not None and tok[1] != value) or (kind is not None and tok[0] != kind):
            raise GraphQLSyntaxError(f"Parse error on \"{tok[1]}\" ({tok[0].upper()}) at [{tok[2]}, {tok[3]}]",
                                     tok[2], tok[3])
        self.i += 1
        return tok

    def document(self) -> list[tuple[str, str | None, dict[str, Any], list[_GqlField]]]:
        ops = []
        while self.peek():
            if self.peek("{"):
                ops.append(("query", None, {}, self.selection_set()))
                continue
            kind = self.take(kind="name")
            if kind[1] == "fragment":
                raise GraphQLSyntaxError("FakeGitHub's GraphQL does not support fragments", kind[2], kind[3])
            if kind[1] not in ("query", "mutation"):
                raise GraphQLSyntaxError(f"Parse error on \"{kind[1]}\" at [{kind[2]}, {kind[3]}]", kind[2], kind[3])
            name = self.take(kind="name")[1] if self.peek() and self.tokens[self.i][0] == "name" else None
            defaults: dict[str, Any] = {}
            if self.peek("("):
                self.take("(")
                while not self.peek(")"):
                    self.take("$")
                    var = self.take(kind="name")[1]
                    self.take(":")
                    self.type_ref()
                    if self.peek("="):
                        self.take("=")
                        defaults[var] = self.value()
                self.take(")")
            self.directives()
            ops.append((kind[1], name, defaults, self.selection_set()))
        if not ops:
            raise GraphQLSyntaxError("Parse error on end of document (expected a query)")
        return ops

    def type_ref(self) -> None:
        if self.peek("["):
            self.take("[")
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        if self.peek("!"):
            self.take("!")

    def directives(self) -> None:
        while self.peek("@"):
            tok = self.take("@")
            raise GraphQLSyntaxError("FakeGitHub's GraphQL does not support directives", tok[2], tok[3])

    def selection_set(self) -> list[_GqlField]:
        self.take("{")
        out = []
        while not self.peek("}"):
            if self.peek("..."):
                tok = self.take("...")
                raise GraphQLSyntaxError("FakeGitHub's GraphQL does not support fragments", tok[2], tok[3])
            _, first, line, col = self.take(kind="name")
            alias, name = first, first
            if self.peek(":"):
                self.take(":")
                name = self.take(kind="name")[1]
            args: dict[str, Any] = {}
            if self.peek("("):
                self.take("(")
                while not self.peek(")"):
                    key = self.take(kind="name")[1]
                    self.take(":")
                    args[key] = self.value()
                self.take(")")
            self.directives()
            sub = self.selection_set() if self.peek("{") else []
            out.append(_GqlField(alias, name, args, sub, line, col))
        self.take("}")
        if not out:
            raise GraphQLSyntaxError("Parse error: empty selection set")
        return out

    def value(self) -> Any:
        kind, text, line, col = self.tokens[self.i] if self.i < len(self.tokens) else ("", "", 0, 0)
        if text == "$":
            self.take("$")
            return ("$", self.take(kind="name")[1])
        if text == "[":
            self.take("[")
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take("]")
            return items
        if text == "{":
            self.take("{")
            obj = {}
            while not self.peek("}"):
                key = self.take(kind="name")[1]
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        self.take()
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            return json.loads(text)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(text, text)  # enums stay strings
        raise GraphQLSyntaxError(f"Parse error on \"{text}\" at [{line}, {col}]", line, col)


def _substitute(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "$":
        return variables.get(value[1])  # GitHub treats missing variables as null
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    return value


@dataclass
class _GqlCtx:
    state: GitHubState
    installation: Installation | None
    variables: dict[str, Any]
    errors: list[dict[str, Any]] = field(default_factory=list)


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _connection(items: list[Any], args: dict[str, Any], conn_name: str) -> dict[str, Any]:
    """Relay pagination over ``items`` with GitHub's limits (first/last required, at most 100)."""
    first, last, after, before = args.get("first"), args.get("last"), args.get("after"), args.get("before")
    if first is None and last is None:
        raise GraphQLFieldError(f"You must provide a `first` or `last` value to properly paginate the `{conn_name}` "
                                "connection.", "MISSING_PAGINATION_BOUNDARIES", violation=True)
    for n, label in ((first, "first"), (last, "last")):
        if n is not None and (not isinstance(n, int) or n < 0 or n > 100):
            raise GraphQLFieldError(f"Requesting {n} records on the `{conn_name}` connection exceeds the `{label}` "
                                    "limit of 100 records.", "EXCESSIVE_PAGINATION", violation=True)

    def decode(c: str | None, default: int) -> int:
        if c is None:
            return default
        try:
            return int(base64.b64decode(c).decode().rsplit(":", 1)[1])
        except (ValueError, IndexError):
            raise GraphQLFieldError(f"`{c}` does not appear to be a valid cursor.", "INVALID_CURSOR_ARGUMENTS",
                                    violation=True) from None

    lo = decode(after, -1) + 1
    hi = decode(before, len(items))
    window = list(range(lo, min(hi, len(items))))
    if first is not None:
        window = window[:first]
    if last is not None:
        window = window[-last:] if last else []
    return {
        "_items": [(i, items[i]) for i in window],
        "totalCount": len(items),
        "pageInfo": {
            "hasNextPage": bool(window) and window[-1] < min(hi, len(items)) - 1 if first is not None
            else hi < len(items),
            "hasPreviousPage": bool(window) and window[0] > lo if last is not None else lo > 0,
            "startCursor": _cursor(window[0]) if window else None,
            "endCursor": _cursor(window[-1]) if window else None,
        },
    }


def _gql_repo(ctx: _GqlCtx, owner: Any, name: Any) -> Repo:
    repo = ctx.state.repos.get(f"{owner}/{name}".lower())
    if repo is None or ctx.installation is None or repo.installation_id != ctx.installation.id:
        raise GraphQLFieldError(f"Could not resolve to a Repository with the name '{owner}/{name}'.", "NOT_FOUND")
    return repo


def _gql_thread_by_id(ctx: _GqlCtx, thread_id: Any) -> tuple[Repo, ReviewThread]:
    for repo in ctx.state.repos.values():
        if ctx.installation is None or repo.installation_id != ctx.installation.id:
            continue
        for thread in repo.threads.values():
            if graphql_id("PRRT", thread.id) == thread_id:
                return repo, thread
    raise GraphQLFieldError(f"Could not resolve to a node with the global id of '{thread_id}'", "NOT_FOUND")


def _actor(st: GitHubState, user: dict[str, Any]) -> dict[str, Any]:
    return {"__typename": user["type"] if user["type"] in ("Bot", "Organization") else "User",
            "login": user["login"], "url": user["html_url"], "avatarUrl": user["avatar_url"],
            "databaseId": user["id"], "id": user["node_id"]}


# Object types: name -> {field -> (type, resolver(parent, args, ctx))}. A type
# string ending in "Connection"/"Edge" is handled generically; "[X]" is a list.
def _gql_types() -> dict[str, dict[str, tuple[str, Callable[..., Any]]]]:
    def attr(key: str) -> Callable[..., Any]:
        return lambda obj, args, ctx: obj[key]

    def repo_of(obj: tuple[Repo, Any]) -> Repo:
        return obj[0]

    def pr_state(obj: tuple[Repo, PullRequest]) -> str:
        return "CLOSED" if obj[0].issues[obj[1].number].data["state"] == "closed" else "OPEN"

    def issue(obj: tuple[Repo, PullRequest]) -> dict[str, Any]:
        return obj[0].issues[obj[1].number].data

    def pull_request(obj: Repo, args: dict[str, Any], ctx: _GqlCtx) -> tuple[Repo, PullRequest]:
        pr = obj.pulls.get(args.get("number"))  # type: ignore[arg-type]
        if pr is None:
            raise GraphQLFieldError(f"Could not resolve to a PullRequest with the number of {args.get('number')}.",
                                    "NOT_FOUND")
        return obj, pr

    def threads(obj: tuple[Repo, PullRequest], args: dict[str, Any], ctx: _GqlCtx) -> dict[str, Any]:
        repo, pr = obj
        items = [(repo, t) for t in repo.threads.values() if t.pr_number == pr.number]
        return _connection(items, args, "reviewThreads")

    def thread_comments(obj: tuple[Repo, ReviewThread], args: dict[str, Any], ctx: _GqlCtx) -> dict[str, Any]:
        repo, t = obj
        return _connection([(repo, repo.review_comments[c]) for c in t.comment_ids], args, "comments")

    def thread_pr(obj: tuple[Repo, ReviewThread]) -> tuple[Repo, PullRequest]:
        return obj[0], obj[0].pulls[obj[1].pr_number]

    def comment_reply_to(obj: tuple[Repo, dict[str, Any]], args: dict[str, Any], ctx: _GqlCtx) -> Any:
        rid = obj[1].get("in_reply_to_id")
        return (obj[0], obj[0].review_comments[rid]) if rid else None

    def resolve_thread(resolved: bool) -> Callable[..., Any]:
        def fn(_: Any, args: dict[str, Any], ctx: _GqlCtx) -> dict[str, Any]:
            inp = args.get("input") or {}
            repo, thread = _gql_thread_by_id(ctx, inp.get("threadId"))
            thread.resolved_by = ctx.state.bot_login if resolved else None
            return {"clientMutationId": inp.get("clientMutationId"), "thread": (repo, thread)}
        return fn

    def ready_for_review(_: Any, args: dict[str, Any], ctx: _GqlCtx) -> dict[str, Any]:
        inp = args.get("input") or {}
        for repo in ctx.state.repos.values():
            if ctx.installation is not None and repo.installation_id != ctx.installation.id:
                continue
            for pr in repo.pulls.values():
                if node_id("PullRequest", pr.id) == inp.get("pullRequestId"):
                    pr.draft = False
                    return {"clientMutationId": inp.get("clientMutationId"), "pullRequest": (repo, pr)}
        raise GraphQLFieldError(f"Could not resolve to a node with the global id of '{inp.get('pullRequestId')}'",
                                "NOT_FOUND")

    def add_reply(_: Any, args: dict[str, Any], ctx: _GqlCtx) -> dict[str, Any]:
        inp = args.get("input") or {}
        repo, thread = _gql_thread_by_id(ctx, inp.get("pullRequestReviewThreadId"))
        if not isinstance(inp.get("body"), str) or not inp["body"]:
            raise GraphQLFieldError("Body can't be blank", "UNPROCESSABLE")
        c = add_review_comment(ctx.state, repo, repo.pulls[thread.pr_number], body=inp["body"],
                               user=ctx.state.bot_login, user_type="Bot", reply_to=thread.comment_ids[0])
        return {"clientMutationId": inp.get("clientMutationId"), "comment": (repo, c)}

    S = "String"
    return {
        "Query": {
            "repository": ("Repository", lambda _, a, ctx: _gql_repo(ctx, a.get("owner"), a.get("name"))),
            "viewer": ("Actor", lambda _, a, ctx: _actor(ctx.state, ctx.state.bot_user())),
        },
        "Mutation": {
            "resolveReviewThread": ("ResolveReviewThreadPayload", resolve_thread(True)),
            "unresolveReviewThread": ("ResolveReviewThreadPayload", resolve_thread(False)),
            "addPullRequestReviewThreadReply": ("AddPullRequestReviewThreadReplyPayload", add_reply),
            "markPullRequestReadyForReview": ("MarkPullRequestReadyForReviewPayload", ready_for_review),
        },
        "MarkPullRequestReadyForReviewPayload": {
            "clientMutationId": (S, attr("clientMutationId")),
            "pullRequest": ("PullRequest", attr("pullRequest")),
        },
        "ResolveReviewThreadPayload": {
            "clientMutationId": (S, attr("clientMutationId")),
            "thread": ("PullRequestReviewThread", attr("thread")),
        },
        "AddPullRequestReviewThreadReplyPayload": {
            "clientMutationId": (S, attr("clientMutationId")),
            "comment": ("PullRequestReviewComment", attr("comment")),
        },
        "Actor": {k: (S, attr(k)) for k in ("__typename", "login", "url", "avatarUrl", "databaseId", "id")},
        "Repository": {
            "id": (S, lambda r, a, ctx: node_id("Repository", r.id)),
            "databaseId": (S, lambda r, a, ctx: r.id),
            "name": (S, lambda r, a, ctx: r.name),
            "nameWithOwner": (S, lambda r, a, ctx: r.full_name),
            "url": (S, lambda r, a, ctx: f"https://github.com/{r.full_name}"),
            "pullRequest": ("PullRequest", pull_request),
        },
        "PullRequest": {
            "id": (S, lambda o, a, ctx: node_id("PullRequest", o[1].id)),
            "databaseId": (S, lambda o, a, ctx: o[1].id),
            "number": (S, lambda o, a, ctx: o[1].number),
            "title": (S, lambda o, a, ctx: issue(o)["title"]),
            "body": (S, lambda o, a, ctx: issue(o)["body"] or ""),
            "url": (S, lambda o, a, ctx: f"https://github.com/{o[0].full_name}/pull/{o[1].number}"),
            "state": (S, lambda o, a, ctx: pr_state(o)),
            "closed": (S, lambda o, a, ctx: pr_state(o) == "CLOSED"),
            "merged": (S, lambda o, a, ctx: False),
            "isDraft": (S, lambda o, a, ctx: o[1].draft),
            "headRefName": (S, lambda o, a, ctx: o[1].head_ref),
            "baseRefName": (S, lambda o, a, ctx: o[1].base_ref),
            "headRefOid": (S, lambda o, a, ctx: _pr_head_sha(o[0], o[1])),
            "baseRefOid": (S, lambda o, a, ctx: o[0].git.branch_sha(o[1].base_ref)),
            "createdAt": (S, lambda o, a, ctx: issue(o)["created_at"]),
            "updatedAt": (S, lambda o, a, ctx: issue(o)["updated_at"]),
            "author": ("Actor", lambda o, a, ctx: _actor(ctx.state, issue(o)["user"])),
            "repository": ("Repository", lambda o, a, ctx: repo_of(o)),
            "reviewThreads": ("PullRequestReviewThreadConnection", threads),
        },
        "PullRequestReviewThread": {
            "__typename": (S, lambda o, a, ctx: "PullRequestReviewThread"),
            "id": (S, lambda o, a, ctx: graphql_id("PRRT", o[1].id)),
            "isResolved": (S, lambda o, a, ctx: o[1].resolved),
            "isOutdated": (S, lambda o, a, ctx: thread_outdated(o[0], o[0].pulls[o[1].pr_number], o[1])),
            "isCollapsed": (S, lambda o, a, ctx: o[1].resolved),
            "path": (S, lambda o, a, ctx: o[1].path),
            "line": (S, lambda o, a, ctx: None if thread_outdated(o[0], o[0].pulls[o[1].pr_number], o[1])
                     else o[1].line),
            "originalLine": (S, lambda o, a, ctx: o[1].line),
            "startLine": (S, lambda o, a, ctx: None),
            "originalStartLine": (S, lambda o, a, ctx: None),
            "diffSide": (S, lambda o, a, ctx: o[1].side),
            "startDiffSide": (S, lambda o, a, ctx: None),
            "subjectType": (S, lambda o, a, ctx: "LINE"),
            "viewerCanResolve": (S, lambda o, a, ctx: not o[1].resolved),
            "viewerCanUnresolve": (S, lambda o, a, ctx: o[1].resolved),
            "viewerCanReply": (S, lambda o, a, ctx: True),
            "resolvedBy": ("Actor", lambda o, a, ctx: _actor(ctx.state, ctx.state.user(
                o[1].resolved_by, "Bot" if o[1].resolved_by.endswith("[bot]") else "User")) if o[1].resolved_by else None),
            "pullRequest": ("PullRequest", lambda o, a, ctx: thread_pr(o)),
            "repository": ("Repository", lambda o, a, ctx: repo_of(o)),
            "comments": ("PullRequestReviewCommentConnection", thread_comments),
        },
        "PullRequestReviewComment": {
            "__typename": (S, lambda o, a, ctx: "PullRequestReviewComment"),
            "id": (S, lambda o, a, ctx: o[1]["node_id"]),
            "databaseId": (S, lambda o, a, ctx: o[1]["id"]),
            "fullDatabaseId": (S, lambda o, a, ctx: str(o[1]["id"])),
            "body": (S, lambda o, a, ctx: o[1]["body"]),
            "bodyText": (S, lambda o, a, ctx: o[1]["body"]),
            "url": (S, lambda o, a, ctx: o[1]["html_url"]),
            "createdAt": (S, lambda o, a, ctx: o[1]["created_at"]),
            "updatedAt": (S, lambda o, a, ctx: o[1]["updated_at"]),
            "publishedAt": (S, lambda o, a, ctx: o[1]["created_at"]),
            "path": (S, lambda o, a, ctx: o[1]["path"]),
            "line": (S, lambda o, a, ctx: o[1]["line"]),
            "originalLine": (S, lambda o, a, ctx: o[1]["original_line"]),
            "diffHunk": (S, lambda o, a, ctx: o[1]["diff_hunk"]),
            "state": (S, lambda o, a, ctx: "SUBMITTED"),
            "authorAssociation": (S, lambda o, a, ctx: o[1]["author_association"]),
            "viewerDidAuthor": (S, lambda o, a, ctx: o[1]["user"]["login"] == ctx.state.bot_login),
            "author": ("Actor", lambda o, a, ctx: _actor(ctx.state, o[1]["user"])),
            "replyTo": ("PullRequestReviewComment", comment_reply_to),
        },
    }


_GQL_TYPES: dict[str, dict[str, tuple[str, Callable[..., Any]]]] | None = None


def _execute_field_set(type_name: str, obj: Any, selections: list[_GqlField], ctx: _GqlCtx,
                       path: list[Any]) -> dict[str, Any]:
    assert _GQL_TYPES is not None
    out: dict[str, Any] = {}
    for f in selections:
        fpath = path + [f.alias]
        if f.name == "__typename" and f.name not in _GQL_TYPES.get(type_name, {}):
            out[f.alias] = type_name
            continue
        try:
            out[f.alias] = _execute_field(type_name, obj, f, ctx, fpath)
        except GraphQLFieldError as exc:
            err: dict[str, Any] = {"message": str(exc), "locations": [{"line": f.line, "column": f.column}],
                                   "path": fpath}
            if exc.type:
                err["type"] = exc.type
            ctx.errors.append(err)
            if exc.violation:
                ctx.state.violations.append(f"graphql: {exc}")
            out[f.alias] = None
    return out


def _execute_field(type_name: str, obj: Any, f: _GqlField, ctx: _GqlCtx, path: list[Any]) -> Any:
    assert _GQL_TYPES is not None
    if type_name.endswith("Connection"):
        if f.name in ("totalCount", "pageInfo"):
            v = obj[f.name]
            return {g.alias: v[g.name] for g in f.selections} if f.name == "pageInfo" else v
        node_type = type_name.removesuffix("Connection")
        if f.name == "nodes":
            return [_execute_field_set(node_type, item, f.selections, ctx, path + [i])
                    for i, (_, item) in enumerate(obj["_items"])]
        if f.name == "edges":
            return [_execute_field_set(node_type + "Edge", (idx, item), f.selections, ctx, path + [i])
                    for i, (idx, item) in enumerate(obj["_items"])]
        raise GraphQLFieldError(f"Field '{f.name}' doesn't exist on type '{type_name}'")
    if type_name.endswith("Edge"):
        idx, item = obj
        if f.name == "cursor":
            return _cursor(idx)
        if f.name == "node":
            return _execute_field_set(type_name.removesuffix("Edge"), item, f.selections, ctx, path)
        raise GraphQLFieldError(f"Field '{f.name}' doesn't exist on type '{type_name}'")
    spec = _GQL_TYPES[type_name].get(f.name)
    if spec is None:
        raise GraphQLFieldError(f"Field '{f.name}' doesn't exist on type '{type_name}'")
    ret_type, resolver = spec
    value = resolver(obj, _substitute(f.args, ctx.variables), ctx)
    if value is None or ret_type == "String":
        return value
    return _execute_field_set(ret_type, value, f.selections, ctx, path) if not ret_type.endswith("Connection") \
        else _execute_connection(ret_type, value, f, ctx, path)


def _execute_connection(type_name: str, conn: dict[str, Any], f: _GqlField, ctx: _GqlCtx,
                        path: list[Any]) -> dict[str, Any]:
    return {g.alias: _execute_field(type_name, conn, g, ctx, path + [g.alias]) for g in f.selections}


def _validate_selections(type_name: str, selections: list[_GqlField], path: list[str]) -> list[dict[str, Any]]:
    """Static check of field names (GitHub rejects the whole document before running anything)."""
    assert _GQL_TYPES is not None
    errors = []
    for f in selections:
        if f.name == "__typename":
            continue
        if type_name.endswith("Connection"):
            node_type = type_name.removesuffix("Connection")
            child = {"nodes": node_type, "edges": node_type + "Edge", "pageInfo": "PageInfo",
                     "totalCount": "Int"}.get(f.name)
        elif type_name.endswith("Edge"):
            child = {"cursor": "String", "node": type_name.removesuffix("Edge")}.get(f.name)
        elif type_name == "PageInfo":
            child = "Boolean" if f.name in ("hasNextPage", "hasPreviousPage") else \
                "String" if f.name in ("startCursor", "endCursor") else None
        else:
            spec = _GQL_TYPES.get(type_name, {}).get(f.name)
            child = spec[0] if spec else None
        if child is None:
            errors.append({"path": path + [f.alias], "extensions": {"code": "undefinedField", "typeName": type_name,
                                                                    "fieldName": f.name},
                           "locations": [{"line": f.line, "column": f.column}],
                           "message": f"Field '{f.name}' doesn't exist on type '{type_name}'"})
            continue
        scalar = child in ("String", "Int", "Boolean")
        if scalar and f.selections:
            errors.append({"path": path + [f.alias], "locations": [{"line": f.line, "column": f.column}],
                           "message": f"Selections can't be made on scalars (field '{f.name}' returns {child})"})
        elif not scalar and not f.selections:
            errors.append({"path": path + [f.alias], "locations": [{"line": f.line, "column": f.column}],
                           "message": f"Field must have selections (field '{f.name}' returns {child} but has no "
                                      "selections.)"})
        elif not scalar:
            errors.extend(_validate_selections(child, f.selections, path + [f.alias]))
    return errors


def execute_graphql(st: GitHubState, installation: Installation | None, query: str, variables: dict[str, Any] | None,
                    operation_name: str | None = None) -> dict[str, Any]:
    """Run one GraphQL request; returns GitHub's response document ({"data": ...} and/or {"errors": [...]})."""
    global _GQL_TYPES
    if _GQL_TYPES is None:
        _GQL_TYPES = _gql_types()
    try:
        ops = _GqlParser(query).document()
    except GraphQLSyntaxError as exc:
        st.violations.append(f"graphql: {exc}")
        return {"errors": [{"message": str(exc), "locations": [{"line": exc.line, "column": exc.column}]}]}
    op = next((o for o in ops if o[1] == operation_name), None) if operation_name else ops[0]
    if op is None:
        st.violations.append(f"graphql: unknown operationName {operation_name!r}")
        return {"errors": [{"message": f"No operation named \"{operation_name}\""}]}
    kind, name, defaults, selections = op
    root = "Mutation" if kind == "mutation" else "Query"
    errors = _validate_selections(root, selections, [kind + (f" {name}" if name else "")])
    if errors:
        st.violations.extend(f"graphql: {e['message']} (at {'.'.join(map(str, e['path']))})" for e in errors)
        return {"errors": errors}
    ctx = _GqlCtx(st, installation, {**defaults, **(variables or {})})
    data = _execute_field_set(root, None, selections, ctx, [])
    return {"data": data, "errors": ctx.errors} if ctx.errors else {"data": data}


@route("POST", "/graphql")
def graphql(ctx: RequestContext) -> Reply:
    body = ctx.json if isinstance(ctx.json, dict) else {}
    query = body.get("query")
    if not isinstance(query, str):
        return Reply(200, {"errors": [{"message": "A query attribute must be specified and must be a string."}]})
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return Reply(200, {"errors": [{"message": "Variables are invalid JSON."}]})
    return Reply(200, execute_graphql(ctx.state, ctx.installation, query, variables, body.get("operationName")))


# --------------------------------------------------------------------------
# Handlers: the GitHub App manifest flow
# --------------------------------------------------------------------------

_MANIFEST_DOCS = f"{DOCS}/apps/apps#create-a-github-app-from-a-manifest"
# Events GitHub refuses in a manifest's default_events: every App receives them anyway.
_IMPLICIT_APP_EVENTS = {"installation", "installation_repositories", "github_app_authorization"}


def manifest_problems(manifest: Any) -> list[str]:
    """What GitHub's "new App from manifest" page would refuse (a subset of its checks)."""
    if not isinstance(manifest, dict):
        return ["manifest must be a JSON object"]
    problems = []
    if not isinstance(manifest.get("url"), str) or not re.match(r"https?://", manifest.get("url") or ""):
        problems.append("url is required and must be an http(s) URL")
    hook = manifest.get("hook_attributes")
    if hook is not None:
        if not isinstance(hook, dict) or not re.match(r"https?://", str(hook.get("url") or "")):
            problems.append("hook_attributes.url must be an http(s) URL")
    if "redirect_url" in manifest and not re.match(r"https?://", str(manifest.get("redirect_url") or "")):
        problems.append("redirect_url must be an http(s) URL")
    events = manifest.get("default_events", [])
    if not isinstance(events, list) or any(not isinstance(e, str) for e in events):
        problems.append("default_events must be a list of event names")
    elif bad := sorted(set(events) & _IMPLICIT_APP_EVENTS):
        problems.append(f"default_events cannot include {', '.join(bad)}")
    perms = manifest.get("default_permissions", {})
    if not isinstance(perms, dict) or any(v not in ("read", "write", "admin") for v in perms.values()):
        problems.append("default_permissions values must be read, write or admin")
    if not isinstance(manifest.get("name", ""), str) or len(manifest.get("name", "")) > 34:
        problems.append("name must be a string of at most 34 characters")
    return problems


def _generate_app_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # GitHub hands out PKCS#1 ("BEGIN RSA PRIVATE KEY") keys.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@route("POST", "/app-manifests/{code}/conversions", auth=AUTH_NONE)
def create_app_from_manifest(ctx: RequestContext) -> Reply:
    st = ctx.state
    entry = st.manifest_codes.pop(ctx.params["code"], None)  # codes are single-use
    if entry is None or entry["expires_at"] < time.time():
        raise ApiError(404, "Not Found", docs=_MANIFEST_DOCS)
    manifest, org = entry["manifest"], entry["org"]
    app_id = st.next_id()
    name = manifest.get("name") or "app"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"
    hook = manifest.get("hook_attributes") or {}
    data = {
        "id": app_id,
        "slug": slug,
        "node_id": node_id("Integration", app_id),
        "client_id": f"Iv1.{secrets.token_hex(8)}",
        "owner": st.user(org, "Organization") if org else st.user(entry["user"]),
        "name": name,
        "description": manifest.get("description"),
        "external_url": manifest["url"],
        "html_url": f"{st.base_url}/apps/{slug}",
        "created_at": now_iso(),
        "updated_at": now_iso(),
        "permissions": dict(manifest.get("default_permissions") or {}),
        "events": list(manifest.get("default_events") or []),
        "installations_count": 0,
        "client_secret": secrets.token_hex(20),
        "webhook_secret": secrets.token_hex(20) if hook.get("url") else None,
        "pem": _generate_app_pem(),
    }
    st.manifest_apps.append({**copy.deepcopy(data), "manifest": copy.deepcopy(manifest), "org": org})
    return Reply(201, data)


_WEB_NEW_APP_PATH = re.compile(r"/(?:organizations/([^/]+)/)?settings/apps/new")


def _html(status: int, title: str, body: str, head: str = "") -> web.Response:
    from html import escape

    return web.Response(status=status, content_type="text/html", charset="utf-8", text=(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>{head}</head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"))


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


_GIT_HTTP_PATH = re.compile(r"/([^/]+)/([^/]+?)(?:\.git)?/(info/refs|git-upload-pack|git-receive-pack)")


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
        self._violations: list[str] = self.state.violations  # handlers append through the state
        self._faults: list[_Fault] = []
        self._server = ThreadedServer(self._sock, self._build_app, "FakeGitHub")

    # -- lifecycle ----------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def start(self) -> "FakeGitHub":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

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
                 files: dict[str, str | bytes] | None = None, private: bool = False,
                 protected_branches: tuple[str, ...] | list[str] = ()) -> None:
        """A repository backed by a bare git repo whose default branch has one commit with ``files``.

        ``protected_branches`` refuse force pushes and deletions (over git and
        the refs API), whatever ``reject_force_push`` says.
        """
        st = self.state
        with st.lock:
            if installation_id not in st.installations:
                raise KeyError(f"unknown installation {installation_id}; call add_installation first")
            owner, name = full_name.split("/", 1)
            path = st.git_root / "repos" / owner.lower() / f"{name.lower()}.git"
            if path.exists():
                shutil.rmtree(path)
            git = BareRepo.create(path, st.git_root, default_branch=default_branch,
                                  deny_non_fast_forwards=st.reject_force_push)
            git.install_protection_hook()
            git.commit_files(default_branch, {p.strip("/"): (c.encode() if isinstance(c, str) else c)
                                              for p, c in (files or {}).items()},
                             "Initial commit", author=("octo", "octo@example.com"), parent=None)
            repo = Repo(
                full_name=full_name,
                id=stable_id("repo", full_name),  # same id the webhook payload builders use
                installation_id=installation_id,
                default_branch=default_branch,
                git=git,
                private=private,
                created_at=now_iso(),
            )
            st.repos[full_name.lower()] = repo
            for branch in protected_branches:
                self.protect_branch(full_name, branch)

    def protect_branch(self, full_name: str, branch: str) -> None:
        """Like a branch protection rule: no force pushes, no deletion (git pushes and the refs API)."""
        with self.state.lock:
            repo = self.state.repo(full_name)
            repo.protected_branches.add(branch)
            (repo.git.path / "protected-refs").write_text(
                "".join(f"refs/heads/{b}\n" for b in sorted(repo.protected_branches)))

    @property
    def reject_force_push(self) -> bool:
        """True (the default): every repo refuses non-fast-forward pushes (receive.denyNonFastForwards)."""
        return self.state.reject_force_push

    @reject_force_push.setter
    def reject_force_push(self, value: bool) -> None:
        with self.state.lock:
            self.state.reject_force_push = bool(value)
            for repo in self.state.repos.values():
                repo.git.set_deny_non_fast_forwards(bool(value))

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
            if number in repo.pulls:
                raise ValueError(f"#{number} is a pull request (issues and pull requests share numbers)")
            data = _issue_data(st, repo, number, title=title, body=body, user=user, labels=labels, state=state)
            repo.issues[number] = Issue(data)
            return copy.deepcopy(data)

    # -- inspection (test thread) ----------------------------------------------

    def add_issue_comment(self, full_name: str, number: int, *, body: str, user: str) -> dict[str, Any]:
        """A comment written by a person (as if through GitHub's UI); returns its JSON."""
        with self.state.lock:
            repo = self.state.repo(full_name)
            return copy.deepcopy(_new_issue_comment(self.state, repo, repo.issues[number], body, user))

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

    # -- git (test thread) ------------------------------------------------------

    def clone_url(self, full_name: str) -> str:
        """``http://127.0.0.1:PORT/owner/repo.git``; authenticate as ``x-access-token:<installation token>``."""
        with self.state.lock:
            return self.state.clone_url(self.state.repo(full_name))

    def _git(self, full_name: str) -> BareRepo:
        with self.state.lock:
            return self.state.repo(full_name).git

    def git(self, full_name: str, *args: str) -> str:
        """Run ``git <args>`` in the repo's bare repository and return stdout (raises GitError on failure)."""
        return self._git(full_name).git(*args)

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        return self._git(full_name).branch_sha(branch)

    def branches(self, full_name: str) -> dict[str, str]:
        """branch name -> head sha."""
        return self._git(full_name).branches()

    def commits(self, full_name: str, branch: str) -> list[dict[str, Any]]:
        """The branch's history, newest first: ``sha, message, author ("name <email>"), committer, parents,
        files`` (paths changed relative to the first parent, sorted)."""
        git = self._git(full_name)
        head = git.branch_sha(branch)
        if head is None:
            raise KeyError(f"{full_name} has no branch {branch!r}")
        out = []
        for sha in git.rev_list(head):
            c = git.commit(sha)
            out.append({
                "sha": sha,
                "message": c.message,
                "author": f"{c.author_name} <{c.author_email}>",
                "committer": f"{c.committer_name} <{c.committer_email}>",
                "parents": list(c.parents),
                "files": sorted(f.filename for f in git.diff(c.parents[0] if c.parents else None, sha)),
            })
        return out

    def file_at(self, full_name: str, ref: str, path: str) -> str | None:
        """The text of ``path`` at ``ref`` (branch, tag or sha), or None if the file or ref does not exist."""
        data = self._git(full_name).read_file(ref, path)
        return None if data is None else data.decode("utf-8", "replace")

    def push_human_commit(self, full_name: str, branch: str, files: dict[str, str | bytes | None], message: str, *,
                          author: tuple[str, str] = ("Alice", "alice@example.com")) -> str:
        """Simulate a person pushing one commit to ``branch`` (created from the default branch if missing).

        ``files`` maps path -> new content (None deletes). Returns the new sha.
        Not recorded in ``pushes`` (that list is what clients pushed over HTTP).
        """
        git = self._git(full_name)
        with self.state.lock:
            default = self.state.repo(full_name).default_branch
        parent = git.branch_sha(branch) or git.branch_sha(default)
        changes = {p: (c.encode() if isinstance(c, str) else c) for p, c in files.items()}
        return git.commit_files(branch, changes, message, author=author, parent=parent)

    @property
    def pushes(self) -> list[tuple[str, str, str, str]]:
        """Ref updates received over git smart HTTP: ``(full_name, ref, old_sha, new_sha)`` in order."""
        with self.state.lock:
            return list(self.state.pushes)

    # -- pull requests and review threads (test thread) ----------------------------

    def add_pull_request(self, full_name: str, *, head: str, base: str | None = None, title: str = "A change",
                         body: str | None = "", user: str = "octocat", draft: bool = False) -> dict[str, Any]:
        """A pull request opened by a person (same checks as POST /pulls; raises ApiError)."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            pr = open_pull_request(st, repo, head=head, base=base or repo.default_branch, title=title, body=body,
                                   user=user, draft=draft)
            return copy.deepcopy(pull_json(st, repo, pr))

    def pull_requests(self, full_name: str) -> list[dict[str, Any]]:
        """Every pull request (any state) as GitHub's ``pull-request`` JSON, by number."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            return copy.deepcopy([pull_json(st, repo, repo.pulls[n]) for n in sorted(repo.pulls)])

    def pull_request(self, full_name: str, number: int) -> dict[str, Any]:
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            return copy.deepcopy(pull_json(st, repo, repo.pulls[number]))

    def add_review_thread(self, full_name: str, pr_number: int, *, path: str, line: int, body: str,
                          user: str = "alice", diff_hunk: str | None = None, side: str = "RIGHT",
                          commit_id: str | None = None) -> dict[str, Any]:
        """A person's review comment on ``path:line`` at the PR head (the root of a new thread).

        Returns the REST ``pull-request-review-comment`` JSON; ``diff_hunk``
        defaults to a hunk ending at ``line`` built from the file.
        """
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            pr = repo.pulls[pr_number]
            commit_id = commit_id or _pr_head_sha(repo, pr)
            if diff_hunk is None:
                text = (repo.git.read_file(commit_id, path) or b"").decode("utf-8", "replace").splitlines()
                start = max(1, line - 3)
                shown = text[start - 1 : line]
                diff_hunk = f"@@ -{start},{len(shown)} +{start},{len(shown)} @@\n" + "\n".join(" " + t for t in shown)
            c = add_review_comment(st, repo, pr, body=body, user=user, path=path, line=line, side=side,
                                   diff_hunk=diff_hunk, commit_id=commit_id)
            return copy.deepcopy(c)

    def add_review_reply(self, full_name: str, pr_number: int, comment_id: int, *, body: str,
                         user: str = "alice") -> dict[str, Any]:
        """A person's reply in the thread of review comment ``comment_id``."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            return copy.deepcopy(add_review_comment(st, repo, repo.pulls[pr_number], body=body, user=user,
                                                    reply_to=comment_id))

    def review_threads(self, full_name: str, pr_number: int) -> list[dict[str, Any]]:
        """Threads of a PR: ``id`` (GraphQL node id), ``path, line, side, is_resolved, resolved_by,
        is_outdated, comments`` (REST review-comment JSON, root first)."""
        st = self.state
        with st.lock:
            repo = st.repo(full_name)
            pr = repo.pulls[pr_number]
            return copy.deepcopy([{
                "id": graphql_id("PRRT", t.id),
                "path": t.path,
                "line": t.line,
                "side": t.side,
                "is_resolved": t.resolved,
                "resolved_by": t.resolved_by,
                "is_outdated": thread_outdated(repo, pr, t),
                "comments": [repo.review_comments[c] for c in t.comment_ids],
            } for t in repo.threads.values() if t.pr_number == pr_number])

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
                  body: Any = None, times: int = 1, performed: bool = False) -> None:
        """The next ``times`` requests matching ``method`` ("*" for any) and ``path_regex`` get ``status``.

        Injected faults skip auth and response validation: they model GitHub
        outages (502), secondary rate limits (403 + retry-after) and 429s. With
        ``performed=True`` the request is carried out first and only its answer is
        replaced (a timeout or 5xx after GitHub created the comment).
        """
        if body is None:
            msg = {403: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                   429: "API rate limit exceeded"}.get(status, "Server Error")
            body = {"message": msg, "documentation_url": DOCS, "status": str(status)}
        with self.state.lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, dict(headers or {}), body, times,
                                       performed))

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

    def _git_auth(self, header: str, owner: str, name: str, service: str) -> tuple[Repo | None, int, str]:
        """GitHub's rules for git over HTTP: Basic ``x-access-token:<installation token>`` (or a
        Bearer/token header, as ``http.extraHeader`` sends) for an installation that has the repo."""
        st = self.state
        scheme, _, cred = header.partition(" ")
        value: str | None = None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(cred.strip(), validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if user == "x-access-token":
                value = password
        elif scheme.lower() in ("bearer", "token"):
            value = cred.strip()
        token = st.tokens.get(value) if value else None
        repo = st.repos.get(f"{owner}/{name}".lower())
        if token is None or token.expires_at < time.time() or repo is None or repo.installation_id != token.installation_id:
            return None, 401, "Invalid username or token. Password authentication is not supported for Git operations.\n"
        inst = st.installations.get(token.installation_id)
        if service == "git-receive-pack" and (inst is None or inst.permissions.get("contents") != "write"):
            return None, 403, f"Permission to {repo.full_name}.git denied to {st.bot_login}.\n"
        return repo, 200, ""

    async def _git_http(self, request: web.Request, owner: str, name: str, tail: str) -> web.StreamResponse:
        """Git smart HTTP through ``git http-backend`` (not REST: never checked against the OpenAPI spec)."""
        st = self.state
        body = await request.read()  # aiohttp has already undone a gzip Content-Encoding
        method = request.method.upper()
        service = request.query.get("service", "") if tail == "info/refs" else tail
        query = {k: request.query.get(k) for k in request.query.keys()}
        with st.lock:
            for fault in self._faults:  # fail_next() works for git paths too (e.g. a 500 during a push)
                if fault.matches(method, request.path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    self._calls.append(Call(method, request.path, query, None, CIMultiDict(request.headers),
                                            fault.status))
                    text = fault.body.get("message", "") if isinstance(fault.body, dict) else str(fault.body)
                    return web.Response(status=fault.status, text=text + "\n", headers=fault.headers)
            repo, status, message = self._git_auth(request.headers.get("Authorization", ""), owner, name, service)
        if repo is None:
            with st.lock:
                self._calls.append(Call(method, request.path, query, None, CIMultiDict(request.headers), status))
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if status == 401:
                headers["WWW-Authenticate"] = 'Basic realm="GitHub"'
            return web.Response(status=status, body=message.encode(), headers=headers)
        http_headers = {}
        if request.headers.get("Git-Protocol"):
            http_headers["Git-Protocol"] = request.headers["Git-Protocol"]
        gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip" and body[:2] == b"\x1f\x8b"
        if gzipped:
            http_headers["Content-Encoding"] = "gzip"
        cgi = await run_http_backend(
            project_root=st.git_root / "repos", home=st.git_root,
            path_info=f"/{repo.owner.lower()}/{repo.name.lower()}.git/{tail}", method=method,
            query=request.query_string, content_type=request.headers.get("Content-Type", ""), body=body,
            remote_user="x-access-token", http_headers=http_headers,
        )
        with st.lock:
            if tail == "git-receive-pack" and cgi.status == 200:
                for old, new, ref in parse_receive_pack_commands(gzip.decompress(body) if gzipped else body):
                    if (repo.git.ref_sha(ref) or ZERO_SHA) == new:  # the update was accepted
                        st.pushes.append((repo.full_name, ref, old, new))
            self._calls.append(Call(method, request.path, query, None, CIMultiDict(request.headers), cgi.status))
        headers = CIMultiDict((k, v) for k, v in cgi.headers if k.lower() not in ("content-length", "transfer-encoding"))
        return web.Response(status=cgi.status, body=cgi.body, headers=headers)

    async def _web_new_app(self, request: web.Request, org: str | None) -> web.StreamResponse:
        """github.com's "Create GitHub App" page for the manifest flow (HTML, not the API).

        GitHub shows the manifest and, once the person confirms, redirects the browser to the
        manifest's redirect_url with ``?code=...&state=...``. Here the confirmation is implicit:
        the page redirects at once (``<meta http-equiv=refresh>``).
        """
        from html import escape

        st = self.state
        if request.method != "POST":
            return _html(200, "Register new GitHub App", "<p>Fill in the form (not simulated).</p>")
        form = await request.post()
        raw = form.get("manifest")
        state = request.query.get("state", "")
        try:
            manifest = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            manifest = None
        problems = manifest_problems(manifest) if manifest is not None else ["manifest is not valid JSON"]
        with st.lock:
            self._calls.append(Call("POST", request.path, {"state": state}, manifest, CIMultiDict(request.headers),
                                    422 if problems else 200))
            if problems:
                self._violations.extend(f"manifest: {p}" for p in problems)
                return _html(422, "Invalid GitHub App manifest",
                             "<ul>" + "".join(f"<li>{escape(p)}</li>" for p in problems) + "</ul>")
            code = secrets.token_hex(10)
            st.manifest_codes[code] = {"manifest": manifest, "org": org, "user": "octocat",
                                       "expires_at": time.time() + 3600}
        redirect = manifest.get("redirect_url")
        if not redirect:
            return _html(200, "GitHub App created", "<p>No redirect_url in the manifest.</p>")
        target = redirect + ("&" if "?" in redirect else "?") + urlencode({"code": code, "state": state})
        return _html(200, f"Create GitHub App for {manifest.get('name', '')}",
                     f"<p id='confirm'>Creating {escape(manifest.get('name', ''))}"
                     f"{' for ' + escape(org) if org else ''}…</p><p><a href='{escape(target)}'>Continue</a></p>",
                     head=f"<meta http-equiv='refresh' content='0; url={escape(target)}'>")

    def manifest_code(self, manifest: dict[str, Any], org: str | None = None) -> str:
        """A code as if a person had confirmed ``manifest`` on GitHub (without a browser)."""
        problems = manifest_problems(manifest)
        if problems:
            raise ValueError("; ".join(problems))
        code = secrets.token_hex(10)
        with self.state.lock:
            self.state.manifest_codes[code] = {"manifest": copy.deepcopy(manifest), "org": org, "user": "octocat",
                                               "expires_at": time.time() + 3600}
        return code

    @property
    def manifest_apps(self) -> list[dict[str, Any]]:
        """Apps created through POST /app-manifests/{code}/conversions (response JSON + manifest, org)."""
        with self.state.lock:
            return copy.deepcopy(self.state.manifest_apps)

    # -- webhook deliveries (test thread) ------------------------------------------

    def send_webhook(self, url: str, secret: str, event: str, payload: dict[str, Any] | bytes, *,
                     guid: str | None = None, timeout: float = HOOK_TIMEOUT_SECONDS) -> str:
        """Deliver one event the way GitHub does: POST the signed payload to ``url`` (synchronously, so
        the attempt is logged when this returns) and record it in the App's delivery log, with
        ``status_code`` 0 and ``status`` "failed to connect to host" when nothing answered. Returns
        the guid (the ``X-GitHub-Delivery`` header). ``POST /app/hook/deliveries/{id}/attempts``
        later sends the same bytes, guid and secret to the same ``url``."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
        guid = guid or str(uuid.uuid4())
        result = post_webhook(url, event, body, secret, guid, self.state.app_id, timeout=timeout)
        with self.state.lock:
            record_hook_delivery(self.state, guid=guid, event=event, body=body, url=url, secret=secret,
                                 redelivery=False, result=result)
        return guid

    def hook_deliveries(self, guid: str | None = None) -> list[dict[str, Any]]:
        """The delivery log, oldest first, as ``hook-delivery-item`` JSON (only ``guid``'s attempts if given)."""
        with self.state.lock:
            return [d.item_json() for d in self.state.hook_deliveries if guid is None or d.guid == guid]

    def redelivery_requests(self, guid: str | None = None) -> list[int]:
        """Delivery ids named in ``POST /app/hook/deliveries/{id}/attempts`` calls answered 202, in order
        (only those of ``guid``'s attempts if given)."""
        with self.state.lock:
            guid_of = {d.id: d.guid for d in self.state.hook_deliveries}
        ids = [int(c.path.split("/")[4]) for c in self.calls_matching("POST", r"^/app/hook/deliveries/\d+/attempts$")
               if c.status == 202]
        return [i for i in ids if guid is None or guid_of.get(i) == guid]

    def wait_for_redeliveries(self, timeout: float = 30) -> None:
        """Block until every redelivery GitHub accepted so far has been attempted and logged."""
        deadline = time.monotonic() + timeout
        while True:
            with self.state.lock:
                pending = [t for t in self.state.hook_threads if t.is_alive()]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} redeliveries still running after {timeout}s")
            pending[0].join(max(0.0, deadline - time.monotonic()))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/favicon.ico":  # browsers on the web pages ask; github.com has one
            return web.Response(status=404)
        web_new_app = _WEB_NEW_APP_PATH.fullmatch(request.path)
        if web_new_app is not None:
            return await self._web_new_app(request, web_new_app.group(1))
        git_path = _GIT_HTTP_PATH.fullmatch(request.path)
        if git_path is not None:
            return await self._git_http(request, *git_path.groups())
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
                    if reply.status >= 400 and ("is valid under each of" in v or "the spec documents none" in v):
                        # Two defects of the description for errors: some error bodies are a oneOf of
                        # overlapping schemas (basic-error vs repository-rule-violation-error for a
                        # contents 409; any real error matches both), and some errors are documented
                        # without a body (a 422 from DELETE git/refs) although GitHub always sends one.
                        continue
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
                if fault.performed:
                    self._route(method, path, raw_path, query, body, bad_json, headers, body_errors)
                return Reply(fault.status, fault.body, dict(fault.headers)), False
        return self._route(method, path, raw_path, query, body, bad_json, headers, body_errors)

    def _route(self, method: str, path: str, raw_path: str, query: dict[str, Any], body: Any, bad_json: bool,
               headers: Any, body_errors: list[str]) -> tuple[Reply, bool]:
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
