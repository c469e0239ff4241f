"""REST: repository contents and trees, read from and committed to git (get/put a file, a tree)."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from ...git_backend import GitError
from ...webhooks import node_id
from ..common import DOCS
from ..models import Repo
from ..routing import ApiError, Reply, RequestContext, _repo, _require_body_field, route
from .commits import _UNSIGNED, _git_user_json


_CONTENTS_DOCS = f"{DOCS}/repos/contents#get-repository-content"


def _commit_sha(repo: Repo, ref: str | None, docs: str = _CONTENTS_DOCS) -> str:
    """The commit a branch name, ``heads/x``, ``refs/heads/x``, tag or sha names (default branch if empty)."""
    sha = repo.git.resolve(ref or f"refs/heads/{repo.default_branch}")
    if sha is None:
        raise ApiError(404, f"No commit found for the ref {ref}", docs=docs)
    return sha


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
