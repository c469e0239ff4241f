"""REST: git references (get, create, fast-forward or force update, delete; protected branches refuse)."""

from __future__ import annotations

import base64
import re
from typing import Any
from urllib.parse import quote

from ...git_backend import ZERO_SHA, GitError
from ..common import DOCS
from ..models import Repo
from ..routing import ApiError, Reply, RequestContext, _repo, _require_body_field, route
from ..state import GitHubState


_REFS_DOCS = f"{DOCS}/git/refs"


def git_ref_json(st: GitHubState, repo: Repo, full_ref: str, sha: str) -> dict[str, Any]:
    base = st.repo_url(repo)
    typ = repo.git.object_type(sha) or "commit"
    return {
        "ref": full_ref,
        "node_id": "REF_" + base64.b64encode(f"{repo.id}:{full_ref}".encode()).decode().rstrip("="),
        "url": f"{base}/git/{quote(full_ref)}",
        "object": {"type": typ, "sha": sha, "url": f"{base}/git/{typ}s/{sha}"},
    }


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
