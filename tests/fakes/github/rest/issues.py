"""REST: issues and their labels, and the issue JSON every issue and pull request starts from."""

from __future__ import annotations

import copy
from typing import Any

from ...webhooks import node_id, stable_id
from ..common import DOCS, now_iso
from ..models import Repo
from ..routing import ApiError, Reply, RequestContext, route
from ..state import GitHubState


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}")
def get_issue(ctx: RequestContext) -> Reply:
    issue = ctx.issue()
    data = copy.deepcopy(issue.data)
    data["reactions"] = ctx.state.reaction_rollup(f"{data['url']}/reactions", issue.reactions)
    return Reply(200, data)


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
