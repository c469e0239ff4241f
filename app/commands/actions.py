"""What each slash command does. Every command ends in an Outcome that is shown to people."""
from __future__ import annotations

from app.commands import ask
from app.commands.grammar import VERBS, Command, InvalidCommand
from app.config import Settings
from app.db.session import session_scope
from app.jobs import enqueue
from app.github.repo_config import RepoConfig
from app.planning import flow
from app.planning.flow import Outcome

SPEC_VERBS = {"plan", "approve", "revise", "reject", "status"}
RUN_VERBS = {"implement", "retry", "cancel"}
BUDGET_VERBS = {"budget"}


async def run(cmd: Command | InvalidCommand, *, gh, settings: Settings, full_name: str, issue: dict,
              repository: dict, installation_id: int, user: str, request_key: str,
              repo_cfg: RepoConfig) -> Outcome:
    """Run one command; `request_key` makes the work it queues happen once per command."""
    if isinstance(cmd, InvalidCommand):
        return Outcome("replies/invalid.md.j2", {"raw": cmd.raw, "error": cmd.error, "verbs": VERBS})
    verb = cmd.verb
    if verb == "help":
        return Outcome("replies/help.md.j2", {"verbs": VERBS})
    if verb == "ask":
        text = await ask.answer(gh, settings, full_name, issue, cmd.args["text"])
        return Outcome("replies/answer.md.j2", {"question": cmd.args["text"], "answer": text})
    if verb == "address-review":
        if not issue.get("pull_request"):
            return Outcome("replies/review_on_pr_only.md.j2")
        enqueue("omoi.address_review", installation_id, full_name, issue["number"], f"review-{request_key}")
        return Outcome("replies/reviewing.md.j2")
    if verb not in SPEC_VERBS | RUN_VERBS | BUDGET_VERBS:
        return Outcome("replies/unavailable.md.j2", {"verb": verb})
    if issue.get("pull_request"):
        return Outcome("replies/pr_only_spec.md.j2", {"verb": verb})
    number = issue["number"]
    if verb == "plan":
        spec_id, start = flow.start_spec(settings, full_name, number, repository_id=repository.get("id"),
                                    installation_id=installation_id, title=issue.get("title", ""),
                                    requested_by=user)
        if not start:
            return Outcome("replies/already_planning.md.j2", flow.status_view(settings, spec_id))
        enqueue("omoi.run_stage", spec_id, "requirements", None, f"{request_key}:plan")
        return Outcome("replies/planning.md.j2")
    with session_scope(settings.database_url) as s:
        spec = flow.find_spec(s, full_name, number)
        spec_id = spec.id if spec else None
    if spec_id is None:
        return Outcome("replies/no_spec.md.j2", {"label": repo_cfg.trigger_label or settings.trigger_label})
    if verb == "status":
        return Outcome("replies/status.md.j2", flow.status_view(settings, spec_id))
    if verb == "budget":
        return _budget_command(cmd, settings, spec_id, repo_cfg, user)
    if verb == "approve":
        if repo_cfg.approvers and user.lower() not in {a.lower() for a in repo_cfg.approvers}:
            return Outcome("replies/not_an_approver.md.j2", {"user": user})
        if flow.revisable_stage(settings, spec_id) is None and not cmd.args.get("stage"):
            from app.execution import discovery

            proposal = discovery.approve_proposal(settings, spec_id, user)
            if proposal is not None:  # a proposed spec revision from a discovery: revise the tasks stage
                enqueue("omoi.run_stage", spec_id, "tasks", proposal["feedback"], f"{request_key}:discovery")
                return Outcome("replies/discovery_approved.md.j2", proposal)
        outcome = flow.approve(settings, spec_id, user, cmd.args.get("stage"), cmd.args.get("revision"))
        if outcome.template == "replies/approved.md.j2":
            await flow.write_spec_file(gh, settings, spec_id, outcome.context["stage"])
            await flow.publish(gh, settings, spec_id, [outcome.context["stage"]])
            if outcome.context["next_stage"]:
                enqueue("omoi.run_stage", spec_id, outcome.context["next_stage"], None, f"{request_key}:approve")
            else:
                enqueue("omoi.start_run", spec_id, f"{request_key}:approve")
        return outcome
    if verb in RUN_VERBS:
        return _run_command(verb, cmd, settings, spec_id, user, request_key)
    if verb == "revise":
        row = flow.revisable_stage(settings, spec_id)
        if row is None:
            return Outcome("replies/nothing_to_revise.md.j2", flow.status_view(settings, spec_id))
        flow.mark_revising(settings, spec_id)
        enqueue("omoi.run_stage", spec_id, row.stage, cmd.args["text"], f"{request_key}:revise")
        return Outcome("replies/revising.md.j2", {"stage": row.stage, "revision": row.revision + 1})
    # reject
    outcome = flow.reject(settings, spec_id, user, cmd.args.get("text", ""))
    await flow.publish(gh, settings, spec_id, list(flow.STAGES))
    return outcome


def _run_command(verb: str, cmd: Command, settings: Settings, spec_id: int, user: str, request_key: str) -> Outcome:
    """`/omoi implement`, `/omoi retry [task]`, `/omoi cancel`: the state changes now, the work is queued."""
    from app.execution import orchestrator
    from app.db.models import Spec

    if verb == "cancel":
        state = orchestrator.cancel_run(settings, spec_id, user)
        if state != "cancelled":
            return Outcome("execution/reply_run_state.md.j2", {"state": state, "task": None})
        enqueue("omoi.schedule", spec_id)
        return Outcome("execution/reply_cancelled.md.j2")
    task = (cmd.args.get("task") or "").upper() or None
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        approved, run_state = spec.state == "approved", spec.run_state
    if not approved:
        return Outcome("execution/reply_run_state.md.j2", {"state": "not-approved", "task": task})
    if run_state is None and verb == "implement":
        enqueue("omoi.start_run", spec_id, f"{request_key}:implement")
        return Outcome("execution/reply_run_started.md.j2", {"tasks": []})
    state, reset = orchestrator.request_retry(settings, spec_id, task if verb == "retry" else None)
    if state != "retrying":
        return Outcome("execution/reply_run_state.md.j2", {"state": state, "task": task})
    enqueue("omoi.start_run", spec_id, f"{request_key}:{verb}")
    return Outcome("execution/reply_retrying.md.j2", {"tasks": reset})


def _budget_command(cmd: Command, settings: Settings, spec_id: int, repo_cfg: RepoConfig, user: str) -> Outcome:
    """`/omoi budget` shows spend and limits; `+N` raises this spec's budget by N dollars, `N` sets it;
    a run paused at a budget limit resumes."""
    from app.execution import budgets
    from app.execution import orchestrator
    from app.db.models import Spec

    mode, amount = cmd.args.get("mode", "show"), cmd.args.get("amount")
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if mode == "show":
            st = budgets.status(s, settings, spec, repo_cfg.budgets)
        else:
            st = budgets.raise_budget(s, settings, spec, repo_cfg.budgets, mode, amount)
        hit = st.hit()
        run_state = spec.run_state
    resumed = False
    if mode != "show" and run_state == "paused_budget" and hit is None:
        resumed = orchestrator.resume_after_budget(settings, spec_id)
        if resumed:
            enqueue("omoi.schedule", spec_id)
    return Outcome("replies/budget.md.j2", {"mode": mode, "amount": f"{amount:.2f}" if amount is not None else None,
                                            "b": st.view(), "hit": hit, "run_state": run_state, "resumed": resumed,
                                            "user": user})
