"""The spec verbs: `/omoi plan`, `status`, `approve [stage] [rN]`, `revise <text>`, `reject [text]`."""
from __future__ import annotations

from app import jobs
from app.commands.grammar import Command
from app.config import Settings
from app.execution import discovery
from app.github.repo_config import Effective
from app.planning import flow
from app.planning.flow import Outcome


def plan(settings: Settings, full_name: str, issue: dict, repository: dict, installation_id: int, user: str,
         request_key: str) -> Outcome:
    """Start a spec on the issue and queue its requirements (once: a second plan shows the status)."""
    spec_id, start = flow.start_spec(settings, full_name, issue["number"], repository_id=repository.get("id"),
                                     installation_id=installation_id, title=issue.get("title", ""),
                                     requested_by=user)
    if not start:
        return Outcome("replies/already_planning.md.j2", flow.status_view(settings, spec_id))
    jobs.run_stage(spec_id=spec_id, stage="requirements", request_key=f"{request_key}:plan")
    return Outcome("replies/planning.md.j2")


async def on_spec(verb: str, cmd: Command, *, gh, settings: Settings, spec_id: int, user: str, request_key: str,
                  repo_cfg: Effective) -> Outcome:
    """status, approve, revise or reject on the issue's spec."""
    if verb == "status":
        return Outcome("replies/status.md.j2", flow.status_view(settings, spec_id))
    if verb == "approve":
        return await _approve(cmd, gh=gh, settings=settings, spec_id=spec_id, user=user, request_key=request_key,
                              repo_cfg=repo_cfg)
    if verb == "revise":
        row = flow.revisable_stage(settings, spec_id)
        if row is None:
            return Outcome("replies/nothing_to_revise.md.j2", flow.status_view(settings, spec_id))
        flow.mark_revising(settings, spec_id)
        jobs.run_stage(spec_id=spec_id, stage=row.stage, feedback=cmd.args["text"], request_key=f"{request_key}:revise")
        return Outcome("replies/revising.md.j2", {"stage": row.stage, "revision": row.revision + 1})
    # reject
    outcome = flow.reject(settings, spec_id, user, cmd.args.get("text", ""))
    await flow.publish(gh, settings, spec_id, list(flow.STAGES))
    return outcome


async def _approve(cmd: Command, *, gh, settings: Settings, spec_id: int, user: str, request_key: str,
                   repo_cfg: Effective) -> Outcome:
    """Approve the stage under review (or a proposed revision from a discovery); queue what follows."""
    if repo_cfg.approvers and user.lower() not in {a.lower() for a in repo_cfg.approvers}:
        return Outcome("replies/not_an_approver.md.j2", {"user": user})
    if flow.revisable_stage(settings, spec_id) is None and not cmd.args.get("stage"):
        proposal = discovery.approve_proposal(settings, spec_id, user)
        if proposal is not None:  # a proposed spec revision from a discovery: revise the tasks stage
            jobs.run_stage(spec_id=spec_id, stage="tasks", feedback=proposal["feedback"],
                           request_key=f"{request_key}:discovery")
            return Outcome("replies/discovery_approved.md.j2", proposal)
    outcome = flow.approve(settings, spec_id, user, cmd.args.get("stage"), cmd.args.get("revision"))
    if outcome.template == "replies/approved.md.j2":
        await flow.write_spec_file(gh, settings, spec_id, outcome.context["stage"])
        await flow.publish(gh, settings, spec_id, [outcome.context["stage"]])
        if outcome.context["next_stage"]:
            jobs.run_stage(spec_id=spec_id, stage=outcome.context["next_stage"], request_key=f"{request_key}:approve")
        else:
            jobs.start_run(spec_id=spec_id, request_key=f"{request_key}:approve")
    return outcome
