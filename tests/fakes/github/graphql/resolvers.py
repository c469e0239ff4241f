"""The GraphQL schema: object types with their resolvers over the stand-in's state, Relay
connections with GitHub's pagination limits, and the mutations on review threads and pull requests."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ...webhooks import node_id
from ..common import graphql_id
from ..models import Installation, PullRequest, Repo, ReviewThread
from ..rest.pulls import _pr_head_sha
from ..rest.review_comments import add_review_comment, thread_outdated
from ..state import GitHubState


class GraphQLFieldError(Exception):
    """An execution error: the field resolves to null and the error is reported (e.g. NOT_FOUND)."""

    def __init__(self, message: str, type_: str | None = None, *, violation: bool = False) -> None:
        super().__init__(message)
        self.type = type_
        self.violation = violation


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


BLOB_TEXT_LIMIT = 512 * 1024  # GitHub leaves a larger blob's text truncated


def _git_object(r: Repo, sha: str) -> dict[str, Any]:
    kind = r.git.object_type(sha) or "blob"
    obj: dict[str, Any] = {"__typename": kind.capitalize(), "oid": sha}
    if kind == "blob":
        raw = r.git.blob(sha)
        binary = b"\0" in raw[:8000]
        try:
            text = None if binary else raw[:BLOB_TEXT_LIMIT].decode("utf-8")
        except UnicodeDecodeError:
            binary, text = True, None
        obj.update(byteSize=len(raw), isBinary=binary, isTruncated=len(raw) > BLOB_TEXT_LIMIT, text=text)
    return obj


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

    def default_ref(r: Repo, args: dict[str, Any], ctx: _GqlCtx) -> dict[str, Any] | None:
        sha = r.git.branch_sha(r.default_branch)
        return {"name": r.default_branch, "prefix": "refs/heads/", "target": _git_object(r, sha)} if sha else None

    def git_object(r: Repo, args: dict[str, Any], ctx: _GqlCtx) -> dict[str, Any] | None:
        """``object(expression: "rev:path")``, ``object(oid:)``: what git resolves it to, or null."""
        expression = args.get("expression") or args.get("oid")
        if not isinstance(expression, str) or not expression:
            raise GraphQLFieldError("Argument 'expression' or 'oid' is required on Field 'object'")
        rev, sep, path = expression.partition(":")
        rev = r.git.branch_sha(r.default_branch) if rev in ("", "HEAD") else r.git.resolve(rev, peel="object")
        if not rev or any(c in path for c in "\0\n"):
            return None
        out = r.git.run("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}:{path}" if sep else rev,
                        check=False).decode().strip()
        return _git_object(r, out) if re.fullmatch(r"[0-9a-f]{40}", out) else None

    S, I = "String", "Int"
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
            "defaultBranchRef": ("Ref", default_ref),
            "object": ("GitObject", git_object),
        },
        "Ref": {"name": (S, attr("name")), "prefix": (S, attr("prefix")), "target": ("GitObject", attr("target"))},
        "GitObject": {"oid": (S, attr("oid")), "abbreviatedOid": (S, lambda o, a, ctx: o["oid"][:7])},
        "Blob": {"oid": (S, attr("oid")), "abbreviatedOid": (S, lambda o, a, ctx: o["oid"][:7]),
                 "byteSize": (I, attr("byteSize")), "isBinary": ("Boolean", attr("isBinary")),
                 "isTruncated": ("Boolean", attr("isTruncated")), "text": (S, attr("text"))},
        "Commit": {"oid": (S, attr("oid")), "abbreviatedOid": (S, lambda o, a, ctx: o["oid"][:7])},
        "Tree": {"oid": (S, attr("oid")), "abbreviatedOid": (S, lambda o, a, ctx: o["oid"][:7])},
        "Tag": {"oid": (S, attr("oid")), "abbreviatedOid": (S, lambda o, a, ctx: o["oid"][:7])},
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
