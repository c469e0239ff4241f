"""CI of another app on the stand-in: its check runs on a commit (with output and annotations), the
annotations endpoint, and the check_suite / check_run `completed` webhook payloads GitHub sends for them.

`add_check_run` is what a CI app does through `POST /repos/{o}/{r}/check-runs` with its own
installation token (the stand-in serves omoi's App only, so tests create them here, under the same
checks: a commit that exists, a known status and conclusion, valid annotations - 422 otherwise).
"""

from __future__ import annotations

import copy
from typing import Any

from ...webhooks import _installation_ref, _rewrite_api_url, _rewrite_repository, example, node_id, stable_id, user_json
from ..common import DOCS, now_iso
from ..routing import ApiError, Reply, RequestContext, route
from ..state import GitHubState

CI_APP = {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"}
STATUSES = ("queued", "in_progress", "completed")
CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale", "timed_out")
LEVELS = ("notice", "warning", "failure")
_DOCS = f"{DOCS}/checks/runs#create-a-check-run"


def _annotations(st: GitHubState) -> dict[int, list[dict[str, Any]]]:
    """check run id -> its annotations (kept beside the repositories' check runs)."""
    if not hasattr(st, "ci_annotations"):
        st.ci_annotations = {}
    return st.ci_annotations


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "Validation Failed", docs=_DOCS,
                    errors=[{"resource": "CheckRun", "code": "invalid", "field": field, "message": message}])


def _app_json(app: dict[str, Any]) -> dict[str, Any]:
    return {"id": app["id"], "slug": app["slug"], "node_id": node_id("Integration", app["id"]), "name": app["name"],
            "owner": user_json("github", user_type="Organization"), "description": "", "external_url": "",
            "html_url": f"https://github.com/apps/{app['slug']}", "created_at": "2018-07-30T09:30:17Z",
            "updated_at": "2019-12-10T19:04:12Z", "permissions": {"checks": "write"}, "events": []}


def _validate_annotations(items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list) or len(items) > 50:
        raise _invalid("output.annotations", "at most 50 annotations per request")
    out = []
    for a in items:
        if not isinstance(a, dict):
            raise _invalid("output.annotations", "annotations are objects")
        for key in ("path", "message"):
            if not isinstance(a.get(key), str) or not a[key]:
                raise _invalid(f"output.annotations.{key}", f"{key} is required")
        for key in ("start_line", "end_line"):
            if not isinstance(a.get(key), int) or a[key] < 1:
                raise _invalid(f"output.annotations.{key}", f"{key} is required")
        if a.get("annotation_level") not in LEVELS:
            raise _invalid("output.annotations.annotation_level", f"annotation_level must be one of {LEVELS}")
        out.append({"path": a["path"], "blob_href": "", "start_line": a["start_line"], "end_line": a["end_line"],
                    "start_column": a.get("start_column"), "end_column": a.get("end_column"),
                    "annotation_level": a["annotation_level"], "title": a.get("title"), "message": a["message"],
                    "raw_details": a.get("raw_details")})
    return out


def add_check_run(fake, full_name: str, *, head_sha: str, name: str, status: str = "completed",
                  conclusion: str | None = None, output: dict[str, Any] | None = None,
                  app: dict[str, Any] = CI_APP) -> dict[str, Any]:
    """A check run another app (`app`, GitHub Actions by default) created on `head_sha`; its JSON."""
    st: GitHubState = fake.state
    with st.lock:
        repo = st.repo(full_name)
        if not name:
            raise _invalid("name", "name is required")
        if repo.git.resolve(head_sha) != head_sha:
            raise ApiError(422, f"No commit found for SHA: {head_sha}", docs=_DOCS)
        if status not in STATUSES:
            raise _invalid("status", f"status must be one of {STATUSES}")
        if conclusion is not None and conclusion not in CONCLUSIONS:
            raise _invalid("conclusion", f"conclusion must be one of {CONCLUSIONS}")
        if status == "completed" and conclusion is None:
            raise _invalid("conclusion", "a completed check run needs a conclusion")
        output = dict(output or {})
        if output and not (isinstance(output.get("title"), str) and isinstance(output.get("summary"), str)):
            raise _invalid("output", "output needs a title and a summary")
        notes = _validate_annotations(output.get("annotations") or [])
        cid = st.next_id()
        url = f"{st.repo_url(repo)}/check-runs/{cid}"
        cr = {
            "id": cid, "head_sha": head_sha, "node_id": node_id("CheckRun", cid), "external_id": "", "url": url,
            "html_url": f"https://github.com/{repo.full_name}/actions/runs/{cid}/job/{cid}",
            "details_url": f"https://github.com/{repo.full_name}/actions/runs/{cid}", "status": status,
            "conclusion": conclusion if status == "completed" else None, "started_at": now_iso(),
            "completed_at": now_iso() if status == "completed" else None,
            "output": {"title": output.get("title"), "summary": output.get("summary"), "text": output.get("text"),
                       "annotations_count": len(notes), "annotations_url": f"{url}/annotations"},
            "name": name,
            "check_suite": {"id": stable_id("check_suite", f"{repo.full_name}@{head_sha}@{app['id']}")},
            "app": _app_json(app), "pull_requests": [],
        }
        repo.check_runs[cid] = cr
        _annotations(st)[cid] = notes
        return copy.deepcopy(cr)


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations")
def list_annotations(ctx: RequestContext) -> Reply:
    assert ctx.repo is not None
    cid = ctx.int_param("check_run_id")
    if cid not in ctx.repo.check_runs:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/checks/runs#list-check-run-annotations")
    return ctx.paginate(list(_annotations(ctx.state).get(cid, [])))


# --- webhook payloads -------------------------------------------------------------------------


def _pull_refs(fake, full_name: str, head_sha: str) -> list[dict[str, Any]]:
    """The minimal pull requests GitHub lists in check payloads: open, same repository, head at the commit."""
    out = []
    for pr in fake.pull_requests(full_name):
        if pr["state"] == "open" and pr["head"]["sha"] == head_sha:
            out.append({"url": pr["url"], "id": pr["id"], "number": pr["number"],
                        "head": {"ref": pr["head"]["ref"], "sha": head_sha,
                                 "repo": {"id": pr["head"]["repo"]["id"], "url": pr["head"]["repo"]["url"],
                                          "name": pr["head"]["repo"]["name"]}},
                        "base": {"ref": pr["base"]["ref"], "sha": pr["base"]["sha"],
                                 "repo": {"id": pr["base"]["repo"]["id"], "url": pr["base"]["repo"]["url"],
                                          "name": pr["base"]["repo"]["name"]}}})
    return out


def _branch_of(fake, full_name: str, head_sha: str) -> str | None:
    return next((b for b, sha in fake.branches(full_name).items() if sha == head_sha), None)


def check_run_completed_payload(fake, full_name: str, installation_id: int, run: dict[str, Any]) -> dict[str, Any]:
    """GitHub's `check_run` / `completed` delivery for `run` (as add_check_run returned it)."""
    payload = _rewrite_repository(example("check_run", "completed"), full_name)
    payload.pop("organization", None)
    prs = _pull_refs(fake, full_name, run["head_sha"])
    suite = {**payload["check_run"]["check_suite"], "id": run["check_suite"]["id"], "head_sha": run["head_sha"],
             "head_branch": _branch_of(fake, full_name, run["head_sha"]), "status": "completed",
             "conclusion": run["conclusion"], "pull_requests": prs, "app": run["app"]}
    payload["check_run"] = {**payload["check_run"], **copy.deepcopy(run), "check_suite": suite, "pull_requests": prs}
    payload["sender"] = user_json("github-actions[bot]", user_type="Bot")
    payload["installation"] = _installation_ref(installation_id)
    return _rewrite_api_url(payload, None)


def check_suite_completed_payload(fake, full_name: str, installation_id: int, head_sha: str,
                                  app: dict[str, Any] = CI_APP) -> dict[str, Any]:
    """GitHub's `check_suite` / `completed` delivery for `app`'s suite on `head_sha`: its conclusion is the
    worst of its check runs' (all must be completed)."""
    runs = [r for r in fake.check_runs(full_name) if r["head_sha"] == head_sha and r["app"]["id"] == app["id"]]
    if not runs or any(r["status"] != "completed" for r in runs):
        raise ValueError("a check suite completes when all of its check runs have")
    order = ("action_required", "failure", "timed_out", "cancelled", "stale", "neutral", "success", "skipped")
    conclusion = min((r["conclusion"] for r in runs), key=order.index)
    payload = _rewrite_repository(example("check_suite", "completed"), full_name)
    payload.pop("organization", None)
    suite = payload["check_suite"]
    suite.update({"id": runs[0]["check_suite"]["id"], "head_sha": head_sha, "after": head_sha,
                  "head_branch": _branch_of(fake, full_name, head_sha), "status": "completed",
                  "conclusion": conclusion, "pull_requests": _pull_refs(fake, full_name, head_sha),
                  "app": runs[0]["app"], "latest_check_runs_count": len(runs),
                  "updated_at": now_iso()})
    payload["sender"] = user_json("github-actions[bot]", user_type="Bot")
    payload["installation"] = _installation_ref(installation_id)
    return _rewrite_api_url(payload, None)
