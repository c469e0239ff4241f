"""What each slash command does: `run` sends a command to its verb family. Every command ends in an
Outcome that is shown to people.

help and invalid commands are answered here, `ask` in app/commands/ask.py, `address-review` queues
a review round; the spec verbs are in app/commands/spec_verbs.py, the run verbs in
app/commands/run_verbs.py, `budget` in app/commands/budget.py.
"""
from __future__ import annotations

from datetime import datetime

from app import jobs
from app.commands import ask, budget, run_verbs, spec_verbs
from app.commands.grammar import VERBS, Command, InvalidCommand
from app.config import Settings
from app.db.session import session_scope
from app.github.repo_config import Effective
from app.planning import flow
from app.planning.flow import Outcome

SPEC_VERBS = {"plan", "approve", "revise", "reject", "status", "decline"}
RUN_VERBS = run_verbs.VERBS
BUDGET_VERBS = {"budget"}


async def run(cmd: Command | InvalidCommand, *, gh, settings: Settings, full_name: str, issue: dict,
              repository: dict, installation_id: int, user: str, request_key: str,
              repo_cfg: Effective, written_at: datetime | None = None) -> Outcome:
    """Run one command; `request_key` makes the work it queues happen once per command; `written_at`
    (when the comment was written) pins an approval to the revisions that existed then."""
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
        text = cmd.args.get("text")  # `/omoi fix <what to change>` on the PR conversation
        jobs.address_review(installation_id=installation_id, full_name=full_name, number=issue["number"],
                            round_key=f"review-{request_key}",
                            notes=[{"author": user, "body": text, "source": "comment"}] if text else None)
        return Outcome("replies/reviewing.md.j2")
    if verb not in SPEC_VERBS | RUN_VERBS | BUDGET_VERBS:
        return Outcome("replies/unavailable.md.j2", {"verb": verb})
    if issue.get("pull_request"):
        return Outcome("replies/pr_only_spec.md.j2", {"verb": verb})
    if verb == "plan":
        return await spec_verbs.plan(gh, settings, full_name, issue, repository, installation_id, user, request_key,
                                     flags=cmd.args)
    with session_scope(settings.database_url) as s:
        spec = flow.find_spec(s, full_name, issue["number"])
        spec_id = spec.id if spec else None
    if spec_id is None:
        return Outcome("replies/no_spec.md.j2", {"label": repo_cfg.trigger_label})
    if verb in RUN_VERBS:
        return run_verbs.run(verb, cmd, settings, spec_id, user, request_key)
    if verb == "budget":
        return budget.budget(cmd, settings, spec_id, repo_cfg, user)
    return await spec_verbs.on_spec(verb, cmd, gh=gh, settings=settings, spec_id=spec_id, user=user,
                                    request_key=request_key, repo_cfg=repo_cfg, written_at=written_at)
