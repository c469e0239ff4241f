"""How requests reach handlers: ``@route(METHOD, TEMPLATE)`` registers a handler under the
spec's own path template; a handler gets a ``RequestContext`` and returns a ``Reply`` or raises
``ApiError`` (GitHub's error JSON). Handlers run under the state lock, so they must not await."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import quote, urlencode

from ..openapi import PathTemplate, compile_template
from .common import DOCS
from .models import Installation, Issue, Repo
from .state import GitHubState


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


def _repo(ctx: RequestContext) -> Repo:
    assert ctx.repo is not None
    return ctx.repo
