"""REST: pull request review comments and their threads (list, reply), and how a thread goes outdated."""

from __future__ import annotations

from typing import Any

from ..common import DOCS, MAX_COMMENT_BODY, graphql_id, now_iso
from ..models import PullRequest, Repo, ReviewThread
from ..routing import ApiError, Reply, RequestContext, _repo, _require_body_field, _validation_failed, route
from ..state import GitHubState
from .pulls import _pr_head_sha, _pull


_REVIEW_COMMENT_DOCS = f"{DOCS}/pulls/comments"


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
