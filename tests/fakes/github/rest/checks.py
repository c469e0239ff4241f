"""REST: check runs (create, get, update, list for a ref)."""

from __future__ import annotations

from typing import Any

from ...webhooks import node_id, stable_id
from ..common import DOCS, now_iso
from ..routing import ApiError, Reply, RequestContext, _require_body_field, route


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
