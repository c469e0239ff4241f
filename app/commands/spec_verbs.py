"""The spec verbs: `/omoi plan`, `status`, `approve [stage] [rN] | D<n>`, `revise [stage] <text>`, `reject [text]`,
`decline D<n> [text]`."""
from __future__ import annotations

from datetime import datetime, timedelta

from app import jobs
from app.commands import lifecycle
from app.commands.grammar import Command, split_stage
from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.execution import discovery, orchestrator
from app.github.repo_config import Effective
from app.planning import flow, questions, quick, revisions, scope
from app.planning.flow import Outcome
from app.text.rendering import reason
from app.timeutil import as_utc

PIN_SLACK = timedelta(seconds=1)
ENDED = ("stopped", "complete")  # approve and revise wait for a reopen, a relabel or `/omoi plan`


async def plan(gh, settings: Settings, full_name: str, issue: dict, repository: dict, installation_id: int,
               user: str, request_key: str, flags: dict | None = None) -> Outcome:
    """Start a spec on the issue and queue its requirements (once: a second plan shows the status);
    a stopped spec resumes where it stopped; while clarifying questions wait, planning continues
    (`--ask`: the model may ask another round). `--quick` starts the quick path (app/planning/quick.py)."""
    flags = flags or {}
    spec_id, start = flow.start_spec(settings, full_name, issue["number"], repository_id=repository.get("id"),
                                     installation_id=installation_id, title=issue.get("title", ""),
                                     requested_by=user)
    if flags.get("ask"):
        questions.allow_another_round(settings, spec_id)
    if start:
        if flags.get("quick"):
            quick.mark(settings, spec_id)
        jobs.run_stage(spec_id=spec_id, stage=quick.STAGE if flags.get("quick") else "requirements",
                       request_key=f"{request_key}:plan")
        return Outcome("replies/planning.md.j2", {"quick": bool(flags.get("quick"))})
    if questions.continue_without(settings, spec_id):
        jobs.run_stage(spec_id=spec_id, stage="requirements", request_key=f"{request_key}:continue")
        return Outcome("replies/planning.md.j2", {"quick": False, "continued": True})
    view = lifecycle.status_view(settings, spec_id)
    if view["state"] in lifecycle.RESUMABLE:
        state = await lifecycle.resume(gh, settings, spec_id, user, request_key)
        return Outcome("replies/resumed.md.j2", lifecycle.status_view(settings, spec_id) | {"resumed_to": state})
    return Outcome("replies/already_planning.md.j2", view)


async def on_spec(verb: str, cmd: Command, *, gh, settings: Settings, spec_id: int, user: str, request_key: str,
                  repo_cfg: Effective, written_at: datetime | None = None) -> Outcome:
    """status, approve, revise or reject on the issue's spec."""
    if verb == "status":
        return Outcome("replies/status.md.j2", lifecycle.status_view(settings, spec_id))
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        state, run_state = spec.state, spec.run_state
    if verb in ("approve", "revise") and state in ENDED:
        return Outcome("replies/spec_ended.md.j2", lifecycle.status_view(settings, spec_id))
    if verb in ("approve", "revise") and state == revisions.WRITING:
        # A revision is being written: an approval now could only be of the revision it replaces.
        return Outcome("replies/busy_writing.md.j2", {"verb": verb})
    if verb == "decline":
        declined = discovery.decline_proposal(settings, spec_id, cmd.args["discovery"])
        if declined is None:
            return Outcome("replies/discovery_unknown.md.j2", {"id": cmd.args.get("discovery")})
        await discovery.show_decision(gh, settings, spec_id, declined["id"], user, cmd.args.get("text", ""))
        return Outcome("replies/discovery_declined.md.j2", declined | {"why": cmd.args.get("text", "")})
    if verb == "approve":
        return await _approve(cmd, gh=gh, settings=settings, spec_id=spec_id, user=user, request_key=request_key,
                              repo_cfg=repo_cfg, written_at=written_at)
    if verb == "revise":
        stage, text = split_stage(cmd.args["text"])
        row = revisions.revise_target(settings, spec_id, stage)
        if row is None:
            return Outcome("replies/nothing_to_revise.md.j2", {**flow.status_view(settings, spec_id), "asked": stage})
        flow.mark_revising(settings, spec_id)
        if quick.is_quick(_planning(settings, spec_id)):  # the quick plan is rewritten as a whole
            jobs.run_stage(spec_id=spec_id, stage=quick.STAGE, feedback=cmd.args["text"],
                           request_key=f"{request_key}:revise")
            return Outcome("replies/revising.md.j2", {"stage": "quick", "revision": row.revision + 1})
        jobs.run_stage(spec_id=spec_id, stage=row.stage, feedback=text or cmd.args["text"],
                       request_key=f"{request_key}:revise")
        return Outcome("replies/revising.md.j2", {"stage": row.stage, "revision": row.revision + 1})
    # reject: planning ends, and so does a run that is going
    outcome = flow.reject(settings, spec_id, user, cmd.args.get("text", ""))
    if run_state in lifecycle.LIVE_RUN:
        orchestrator.end_run(settings, spec_id, "cancelled", reason("run/stopped", why="rejected", user=user))
        jobs.schedule(spec_id=spec_id)
        outcome.context["run_stopped"] = True
    await flow.publish(gh, settings, spec_id, list(flow.STAGES))
    return outcome


async def _approve(cmd: Command, *, gh, settings: Settings, spec_id: int, user: str, request_key: str,
                   repo_cfg: Effective, written_at: datetime | None) -> Outcome:
    """Approve the stage under review (or a proposed revision from a discovery); queue what follows.
    While stages are stale after an issue edit, an approval keeps them instead."""
    if repo_cfg.approvers and user.lower() not in {a.lower() for a in repo_cfg.approvers}:
        return Outcome("replies/not_an_approver.md.j2", {"user": user})
    stage, revision = cmd.args.get("stage"), cmd.args.get("revision")
    if revisions.has_edit_stale(settings, spec_id):
        kept, mismatch, start = revisions.keep_stale(settings, spec_id, user, stage, revision)
        if mismatch is None:
            await flow.publish(gh, settings, spec_id, sorted({st for st, _ in kept}))
            if start:
                jobs.start_run(spec_id=spec_id, request_key=f"{request_key}:kept")
            return Outcome("replies/kept.md.j2", {"kept": kept, "start": start})
    waiting = flow.revisable_stage(settings, spec_id)
    if waiting is not None and not revision and written_at is not None \
            and as_utc(waiting.created_at) > written_at + PIN_SLACK:
        # Written after omoi received the comment: the commenter cannot have read it (the slack: the web
        # process and the worker may run on machines whose clocks differ a little).
        return Outcome("replies/approve_unseen.md.j2", {"stage": waiting.stage, "revision": waiting.revision})
    asked = cmd.args.get("discovery")
    if asked is not None or (waiting is None and not stage):
        proposal = discovery.approve_proposal(settings, spec_id, user, asked)
        if proposal is not None:  # a proposed spec revision from a discovery: revise the spec with it
            scope.begin(settings, spec_id, proposal, user)
            await discovery.show_decision(gh, settings, spec_id, proposal["id"], user)
            jobs.run_stage(spec_id=spec_id, stage=scope.STAGE, feedback=proposal["feedback"],
                           request_key=f"{request_key}:discovery")
            return Outcome("replies/discovery_approved.md.j2", proposal)
        if asked is not None:
            return Outcome("replies/discovery_unknown.md.j2", {"id": asked})
    outcome = flow.approve(settings, spec_id, user, stage, revision)
    if outcome.template == "replies/approved.md.j2":
        for done in outcome.context["stages"]:  # the quick path approves all three at once
            await flow.write_spec_file(gh, settings, spec_id, done)
        # the check run is written when the next stage is (one write, not two); the last stage's now
        await flow.publish(gh, settings, spec_id, outcome.context["stages"], check=not outcome.context["next_stage"])
        if outcome.context["next_stage"]:
            jobs.run_stage(spec_id=spec_id, stage=outcome.context["next_stage"], request_key=f"{request_key}:approve")
        else:
            jobs.start_run(spec_id=spec_id, request_key=f"{request_key}:approve")
    return outcome


def _planning(settings: Settings, spec_id: int) -> dict:
    with session_scope(settings.database_url) as s:
        return dict(s.get(Spec, spec_id).planning or {})
