"""REST: repositories and collaborators (``GET /repos/{owner}/{repo}``, a collaborator's permission)."""

from __future__ import annotations

from ..routing import Reply, RequestContext, route


@route("GET", "/repos/{owner}/{repo}")
def get_repo(ctx: RequestContext) -> Reply:
    assert ctx.repo is not None
    return Reply(200, ctx.state.repository_json(ctx.repo))


# GitHub's "permission" field only knows admin/write/read/none; the finer
# role shows up in role_name (maintain -> write, triage -> read).
_LEGACY_PERMISSION = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read", "none": "none"}
_ROLE_FLAGS = {
    "admin": dict(admin=True, maintain=True, push=True, triage=True, pull=True),
    "maintain": dict(admin=False, maintain=True, push=True, triage=True, pull=True),
    "write": dict(admin=False, maintain=False, push=True, triage=True, pull=True),
    "triage": dict(admin=False, maintain=False, push=False, triage=True, pull=True),
    "read": dict(admin=False, maintain=False, push=False, triage=False, pull=True),
    "none": dict(admin=False, maintain=False, push=False, triage=False, pull=False),
}


@route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")
def get_collaborator_permission(ctx: RequestContext) -> Reply:
    assert ctx.repo is not None
    login = ctx.params["username"]
    level = ctx.repo.permissions.get(login.lower(), "none")
    user = ctx.state.user(login)
    user.update(permissions=_ROLE_FLAGS[level], role_name=level)
    return Reply(200, {"permission": _LEGACY_PERMISSION[level], "role_name": level, "user": user})
