"""FakeGitHub: an in-memory stand-in for api.github.com, for tests.

Why it is built this way:

* It is a real HTTP server (aiohttp) on 127.0.0.1 with a random free port, run
  in a background thread with its own event loop. Sync tests, async tests (whose
  loop must not be blocked by the fake) and *other OS processes* (the app's web
  and Celery worker subprocesses) can all talk to it over TCP.
* Every request is checked against GitHub's OpenAPI description
  (``tests/fakes/openapi/``) and so is every response the fake produces.
  Problems are *recorded* in ``fake.violations`` rather than raised, so the app
  sees GitHub-like behaviour (e.g. a 422) and tests assert
  ``fake.violations == []`` at the end.
* Auth is enforced like GitHub: a JWT signed with the App's key is needed to
  mint installation tokens, and installation tokens only reach that
  installation's repositories (404 otherwise, as GitHub does).
* Endpoints are plain functions registered with ``@route(METHOD, TEMPLATE)``
  where TEMPLATE is the spec's own path template. To add an endpoint, write a
  handler in the ``rest/`` module of its area (a new module must be imported in
  ``rest/__init__.py``); it receives a ``RequestContext`` and returns a ``Reply``
  or raises ``ApiError``. Handlers run under the state lock, so they must not await.

Example::

    with FakeGitHub(app_id=123, app_slug="omoi-test", public_key_pem=pub) as fake:
        fake.add_installation(1, "octo")
        fake.add_repo("octo/hello", installation_id=1, files={"README.md": "hi"})
        ...  # point the app at fake.url
        assert fake.violations == []

Repositories are real bare git repositories (``tests/fakes/git_backend/``):
the contents/trees/commits/refs endpoints read them with git plumbing, and
``fake.clone_url(full_name)`` serves git smart HTTP (``git http-backend``)
with GitHub's auth rules (``x-access-token:<installation token>``). Pull
requests, review threads and the GraphQL subset the review-thread work needs
have their own modules; see the "git" and "pull request" helpers on FakeGitHub.
``fake.send_webhook(url, secret, event, payload)`` plays GitHub delivering a
webhook and keeps the App's delivery log (``GET /app/hook/deliveries``,
redelivery through ``POST /app/hook/deliveries/{id}/attempts``).

Layout:

* ``fake.py``: the ``FakeGitHub`` facade (construction, seeding, inspection);
* ``server.py``: request handling (dispatch, auth, rate limits, faults, OpenAPI checks);
  ``git_http.py``: git smart HTTP; ``manifest_flow.py``: the App-manifest pages;
  ``deliveries.py``: webhook emission and the delivery log;
* ``common.py``, ``models.py``, ``state.py``, ``traffic.py``: constants, records, state, recorded calls;
* ``routing.py``: ``@route``, ``RequestContext``, ``Reply``, ``ApiError``;
* ``rest/``: one module per REST area; ``graphql/``: the GraphQL subset.

The names below are re-exported so ``from tests.fakes.github import ...`` keeps working.
"""

from .common import (
    DEFAULT_INSTALLATION_PERMISSIONS,
    DOCS,
    JWT_LEEWAY_SECONDS,
    MAX_COMMENT_BODY,
    PERMISSION_LEVELS,
    RATE_LIMIT,
    REACTIONS,
    TOKEN_TTL_SECONDS,
    git_blob_sha,
    graphql_id,
    now_iso,
)
from .deliveries import HOOK_TIMEOUT_SECONDS, post_webhook, record_hook_delivery
from .fake import FakeGitHub
from .graphql import GRAPHQL_DOCS, GraphQLFieldError, GraphQLSyntaxError, execute_graphql
from .models import HookDelivery, Installation, Issue, PullRequest, Repo, ReviewThread, Token
from .rest.app_manifests import manifest_problems
from .rest.commits import commit_json
from .rest.pulls import open_pull_request, pull_json
from .rest.refs import git_ref_json
from .rest.review_comments import add_review_comment, review_comment_json, thread_outdated
from .routing import AUTH_INSTALLATION, AUTH_JWT, AUTH_NONE, ROUTES, ApiError, Reply, RequestContext, Route, route
from .state import GitHubState
from .traffic import Call

__all__ = [
    "AUTH_INSTALLATION", "AUTH_JWT", "AUTH_NONE", "DEFAULT_INSTALLATION_PERMISSIONS", "DOCS", "GRAPHQL_DOCS",
    "HOOK_TIMEOUT_SECONDS", "JWT_LEEWAY_SECONDS", "MAX_COMMENT_BODY", "PERMISSION_LEVELS", "RATE_LIMIT", "REACTIONS",
    "ROUTES", "TOKEN_TTL_SECONDS", "ApiError", "Call", "FakeGitHub", "GitHubState", "GraphQLFieldError",
    "GraphQLSyntaxError", "HookDelivery", "Installation", "Issue", "PullRequest", "Reply", "Repo", "RequestContext",
    "ReviewThread", "Route", "Token", "add_review_comment", "commit_json", "execute_graphql", "git_blob_sha",
    "git_ref_json", "graphql_id", "manifest_problems", "now_iso", "open_pull_request", "post_webhook", "pull_json",
    "record_hook_delivery", "review_comment_json", "route", "thread_outdated",
]
