"""issues events: the trigger label starts omoi on an issue (or resumes a stopped spec); closing the
issue or removing the label stops it, reopening resumes it; editing the body makes approved stages stale."""
from __future__ import annotations

from gidgethub import sansio
from gidgethub.routing import Router
from app.github import repo_config
from app.db.models import Spec
from app.db.session import session_scope
from app.commands import lifecycle
from app.events.context import EventContext, refuse_once
from app.planning import issue_copy, quick, revisions
from app.github import comments
from app.github.permissions import check_sender
from app import jobs
from app.text.rendering import render
from app.planning.flow import start_spec
from app.text import markers

router = Router()
ACK_MARKER = markers.ACK.prefix()


@router.register("issues", action="labeled")
async def on_labeled(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    label = (data.get("label") or {}).get("name", "").lower()
    issue, repo, sender = data["issue"], data["repository"], data["sender"]
    if issue.get("pull_request") or not label:
        return  # labels on pull requests do not start a spec
    full_name, number = repo["full_name"], issue["number"]
    gh = await ctx.gh()
    trigger = (await repo_config.load_effective(gh, ctx.settings, full_name)).trigger_label
    fast = label == quick.LABEL  # the quick path: one comment, one approval (app/planning/quick.py)
    if label != trigger.lower() and not fast:
        return
    await repo_config.load_and_report(gh, ctx.settings, full_name, number)
    decision = await check_sender(gh, ctx.settings, full_name, sender)
    if not decision.allowed:
        await refuse_once(ctx, gh, full_name, number, sender, "label")
        return
    known = lifecycle.spec_of_issue(ctx.settings, full_name, number)
    if known is not None and lifecycle.status_view(ctx.settings, known)["state"] in lifecycle.RESUMABLE:
        if issue.get("state", "open") == "open":  # a label on a closed issue resumes nothing
            await comments.add_reaction(gh, full_name, issue_number=number, content="eyes")
            await lifecycle.resume(gh, ctx.settings, known, sender.get("login", ""), f"label:{ctx.delivery_id}")
        return

    spec_id, start = start_spec(
        ctx.settings, full_name, number, repository_id=repo.get("id"), installation_id=ctx.installation_id,
        title=issue.get("title", ""), requested_by=sender.get("login", ""),
    )
    if start and fast:
        quick.mark(ctx.settings, spec_id)
    with session_scope(ctx.settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        known_comment, requested_by, state = spec.ack_comment_id, spec.requested_by, spec.state
        fast = quick.is_quick(spec.planning)  # (only a new spec takes the path of the label that started it)

    # no 👀 on the issue: the acknowledgement comment below is the answer, one write instead of two
    body = render(
        "ack.md.j2",
        requested_by=requested_by,
        label=trigger,
        issue_number=number,
        spec_id=spec_id,
        quick=fast,
    )
    result = await comments.upsert(gh, ctx.settings, full_name, number, ACK_MARKER, body, known_id=known_comment)
    with session_scope(ctx.settings.database_url) as s:
        s.get(Spec, spec_id).ack_comment_id = result.comment_id
    # also after a crash between recording the new spec and enqueueing its first stage
    if start or (state == "planning" and not lifecycle.status_view(ctx.settings, spec_id)["stages"]):
        jobs.run_stage(spec_id=spec_id, stage=quick.STAGE if fast else "requirements",
                       request_key=f"label:{ctx.delivery_id}")
    ctx.log.info("issue_acknowledged", issue=number, comment=result.comment_id, action=result.action)


async def _trigger(gh, ctx: EventContext, full_name: str) -> str:
    return (await repo_config.load_effective(gh, ctx.settings, full_name)).trigger_label.lower()


@router.register("issues", action="closed")
async def on_closed(event: sansio.Event, ctx: EventContext) -> None:
    """Closed: stopped, unless the merge of omoi's pull request closed it (then the spec is complete;
    GitHub merges the pull request before it closes the issues it names)."""
    data = event.data
    issue, full_name, user = data["issue"], data["repository"]["full_name"], data["sender"].get("login", "")
    spec_id = None if issue.get("pull_request") else lifecycle.spec_of_issue(ctx.settings, full_name, issue["number"])
    if spec_id is None:
        return
    gh = await ctx.gh()
    merged_by = await lifecycle.merged_by(gh, ctx.settings, spec_id)
    if merged_by is not None:
        await lifecycle.complete(gh, ctx.settings, spec_id, merged_by)
    else:
        await lifecycle.stop(gh, ctx.settings, spec_id, "issue_closed", user)


@router.register("issues", action="unlabeled")
async def on_unlabeled(event: sansio.Event, ctx: EventContext) -> None:
    data = event.data
    issue, full_name, user = data["issue"], data["repository"]["full_name"], data["sender"].get("login", "")
    label = (data.get("label") or {}).get("name", "").lower()
    spec_id = None if issue.get("pull_request") else lifecycle.spec_of_issue(ctx.settings, full_name, issue["number"])
    if spec_id is None or not label:
        return
    gh = await ctx.gh()
    if label == await _trigger(gh, ctx, full_name):
        await lifecycle.stop(gh, ctx.settings, spec_id, "label_removed", user)


@router.register("issues", action="reopened")
async def on_reopened(event: sansio.Event, ctx: EventContext) -> None:
    """Reopened with the trigger label still on it: `/omoi plan` semantics (a stopped spec resumes)."""
    data = event.data
    issue, full_name, sender = data["issue"], data["repository"]["full_name"], data["sender"]
    spec_id = lifecycle.spec_of_issue(ctx.settings, full_name, issue["number"])
    if spec_id is None or lifecycle.status_view(ctx.settings, spec_id)["state"] != "stopped":
        return
    gh = await ctx.gh()
    trigger = await _trigger(gh, ctx, full_name)
    if trigger not in {(lbl.get("name") or "").lower() for lbl in issue.get("labels") or []}:
        return  # stopped by removing the label: adding it again resumes
    if not (await check_sender(gh, ctx.settings, full_name, sender)).allowed:
        await refuse_once(ctx, gh, full_name, issue["number"], sender, "reopen")
        return
    await lifecycle.resume(gh, ctx.settings, spec_id, sender.get("login", ""), f"reopen:{ctx.delivery_id}")


@router.register("issues", action="edited")
async def on_edited(event: sansio.Event, ctx: EventContext) -> None:
    """The body changed (not just the title): approved stages become stale, with one notice."""
    data = event.data
    issue, full_name = data["issue"], data["repository"]["full_name"]
    if issue.get("pull_request"):
        return
    spec_id = lifecycle.spec_of_issue(ctx.settings, full_name, issue["number"])
    if spec_id is None:
        return
    issue_copy.forget(ctx.settings, spec_id)  # title or body: the next stage reads the issue again
    if "body" not in (data.get("changes") or {}):
        return
    stale, waits = revisions.mark_edit_stale(ctx.settings, spec_id)
    if not stale:
        return
    gh = await ctx.gh()
    await lifecycle.edited(gh, ctx.settings, spec_id, stale, waits)
