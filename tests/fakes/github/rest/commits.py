"""REST: commits, branches and comparisons, read from git (and the commit JSON other endpoints embed)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ...git_backend import CommitInfo, FileChange
from ...webhooks import node_id
from ..common import DOCS
from ..models import Repo
from ..routing import ApiError, Reply, RequestContext, _repo, route
from ..state import GitHubState


def _git_user_json(name: str, email: str, date: str) -> dict[str, Any]:
    return {"name": name, "email": email, "date": date}


def _login_for_email(st: GitHubState, email: str) -> tuple[str, str]:
    """GitHub links a commit to an account by e-mail. In the fake's world every address has an account:
    the bot's noreply address is the bot, ``[id+]login@users.noreply.github.com`` is ``login``, and any
    other ``local@domain`` is the user ``local`` (so ``octo@example.com`` is ``octo``).

    (GitHub sends ``null`` for unknown e-mails, but the openapi validator rejects null under
    ``nullable`` + ``oneOf``, so the fake never produces unlinked commits.)
    """
    if email.lower() == st.bot_email.lower():
        return st.bot_login, "Bot"
    m = re.fullmatch(r"(?:\d+\+)?([A-Za-z0-9-]+(?:\[bot\])?)@users\.noreply\.github\.com", email)
    if m:
        return m.group(1), "Bot" if m.group(1).endswith("[bot]") else "User"
    login = re.sub(r"[^A-Za-z0-9-]+", "-", email.split("@", 1)[0]).strip("-") or "ghost"
    return login, "User"


_UNSIGNED = {"verified": False, "reason": "unsigned", "signature": None, "payload": None, "verified_at": None}


def _diff_entry_json(st: GitHubState, repo: Repo, ref_sha: str, fc: FileChange) -> dict[str, Any]:
    base = st.repo_url(repo)
    path = quote(fc.filename)
    entry: dict[str, Any] = {
        "sha": fc.sha,
        "filename": fc.filename,
        "status": fc.status,
        "additions": fc.additions,
        "deletions": fc.deletions,
        "changes": fc.additions + fc.deletions,
        "blob_url": f"https://github.com/{repo.full_name}/blob/{ref_sha}/{path}",
        "raw_url": f"https://github.com/{repo.full_name}/raw/{ref_sha}/{path}",
        "contents_url": f"{base}/contents/{path}?ref={ref_sha}",
    }
    if fc.patch is not None:
        entry["patch"] = fc.patch
    if fc.previous_filename:
        entry["previous_filename"] = fc.previous_filename
    return entry


def commit_json(st: GitHubState, repo: Repo, sha: str, *, with_files: bool = True) -> dict[str, Any]:
    """``commit`` (GET /repos/{owner}/{repo}/commits/{ref}); files/stats only when ``with_files``."""
    c: CommitInfo = repo.git.commit(sha)
    base = st.repo_url(repo)
    author = _login_for_email(st, c.author_email)
    committer = _login_for_email(st, c.committer_email)
    out: dict[str, Any] = {
        "url": f"{base}/commits/{sha}",
        "sha": sha,
        "node_id": node_id("Commit", int(sha[:12], 16)),
        "html_url": f"https://github.com/{repo.full_name}/commit/{sha}",
        "comments_url": f"{base}/commits/{sha}/comments",
        "commit": {
            "url": f"{base}/git/commits/{sha}",
            "author": _git_user_json(c.author_name, c.author_email, c.author_date),
            "committer": _git_user_json(c.committer_name, c.committer_email, c.committer_date),
            "message": c.message,
            "comment_count": 0,
            "tree": {"sha": c.tree, "url": f"{base}/git/trees/{c.tree}"},
            "verification": dict(_UNSIGNED),
        },
        "author": st.user(*author),
        "committer": st.user(*committer),
        "parents": [{"sha": p, "url": f"{base}/commits/{p}", "html_url": f"https://github.com/{repo.full_name}/commit/{p}"}
                    for p in c.parents],
    }
    if with_files:
        changes = repo.git.diff(c.parents[0] if c.parents else None, sha)
        adds, dels = sum(f.additions for f in changes), sum(f.deletions for f in changes)
        out["stats"] = {"additions": adds, "deletions": dels, "total": adds + dels}
        out["files"] = [_diff_entry_json(st, repo, sha, f) for f in changes]
    return out


@route("GET", "/repos/{owner}/{repo}/branches/{branch}", multi_segment=("branch",))
def get_branch(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    name = ctx.params["branch"]
    sha = repo.git.branch_sha(name)
    if sha is None:
        raise ApiError(404, "Branch not found", docs=f"{DOCS}/branches/branches#get-a-branch")
    base = st.repo_url(repo)
    protected = name in repo.protected_branches
    protection_url = f"{base}/branches/{quote(name, safe='')}/protection"
    return Reply(200, {
        "name": name,
        "commit": commit_json(st, repo, sha, with_files=False),
        "_links": {"html": f"https://github.com/{repo.full_name}/tree/{name}",
                   "self": f"{base}/branches/{quote(name, safe='')}"},
        "protected": protected,
        "protection": {
            "enabled": protected,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        },
        "protection_url": protection_url,
    })


@route("GET", "/repos/{owner}/{repo}/commits/{ref}", multi_segment=("ref",))
def get_commit(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    ref = ctx.params["ref"]
    sha = repo.git.resolve(ref)
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ref}", docs=f"{DOCS}/commits/commits#get-a-commit")
    return Reply(200, commit_json(st, repo, sha))


@route("GET", "/repos/{owner}/{repo}/compare/{basehead}", multi_segment=("basehead",))
def compare_commits(ctx: RequestContext) -> Reply:
    st, repo = ctx.state, _repo(ctx)
    basehead = ctx.params["basehead"]
    base_ref, sep, head_ref = basehead.partition("...")
    if not sep:
        base_ref, sep, head_ref = basehead.partition("..")
    if not sep:
        raise ApiError(404, "Not Found", docs=f"{DOCS}/commits/commits#compare-two-commits")

    def resolve(r: str) -> str:
        owner, colon, branch = r.rpartition(":")
        if colon and owner.lower() != repo.owner.lower():
            raise ApiError(404, "Not Found", docs=f"{DOCS}/commits/commits#compare-two-commits")
        sha = repo.git.resolve(branch if colon else r)
        if sha is None:
            raise ApiError(404, "Not Found", docs=f"{DOCS}/commits/commits#compare-two-commits")
        return sha

    base_sha, head_sha = resolve(base_ref), resolve(head_ref)
    merge_base = repo.git.merge_base(base_sha, head_sha)
    ahead = repo.git.rev_list(head_sha, base_sha, reverse=True)
    behind = repo.git.rev_list(base_sha, head_sha)
    status = ("identical" if not ahead and not behind else "ahead" if not behind
              else "behind" if not ahead else "diverged")
    files = repo.git.diff(merge_base, head_sha) if merge_base else repo.git.diff(None, head_sha)
    html = f"https://github.com/{repo.full_name}/compare/{basehead}"
    return Reply(200, {
        "url": f"{st.repo_url(repo)}/compare/{basehead}",
        "html_url": html,
        "permalink_url": f"https://github.com/{repo.full_name}/compare/{base_sha[:7]}...{head_sha[:7]}",
        "diff_url": html + ".diff",
        "patch_url": html + ".patch",
        "base_commit": commit_json(st, repo, base_sha, with_files=False),
        "merge_base_commit": commit_json(st, repo, merge_base or base_sha, with_files=False),
        "status": status,
        "ahead_by": len(ahead),
        "behind_by": len(behind),
        "total_commits": len(ahead),
        "commits": [commit_json(st, repo, s, with_files=False) for s in ahead],
        "files": [_diff_entry_json(st, repo, head_sha, f) for f in files],
    })
