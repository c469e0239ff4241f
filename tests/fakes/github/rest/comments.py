"""REST: issue comments (list, create, get, update, delete)."""

from __future__ import annotations

from typing import Any

from ...webhooks import node_id
from ..common import DOCS, MAX_COMMENT_BODY, now_iso
from ..routing import Reply, RequestContext, _require_body_field, _validation_failed, route


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
