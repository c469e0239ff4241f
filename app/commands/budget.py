"""`/omoi budget`: shows spend and limits; `+N` raises this spec's budget by N dollars, `N` sets it;
a run paused at a budget limit resumes."""
from __future__ import annotations

from app import jobs
from app.commands.grammar import Command
from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.execution import budgets, orchestrator
from app.github.repo_config import Effective
from app.planning.flow import Outcome


def budget(cmd: Command, settings: Settings, spec_id: int, repo_cfg: Effective, user: str) -> Outcome:
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
            jobs.schedule(spec_id=spec_id)
    return Outcome("replies/budget.md.j2", {"mode": mode, "amount": f"{amount:.2f}" if amount is not None else None,
                                            "b": st.view(), "hit": hit, "run_state": run_state, "resumed": resumed,
                                            "user": user})
