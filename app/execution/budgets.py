"""Spend limits: per task (dollars and minutes, enforced inside the agent session), per spec, per
repository per calendar month, and per installation per month (`installation_monthly_usd_ceiling`).

Spend is what the database recorded: `spec_tasks.cost_usd` (the SDK result's total cost of every
finished attempt) plus `llm_calls.cost_usd` (planning, reviews, guardian judgements). The
orchestrator asks `check` before it claims each task attempt; a limit reached pauses the run
(`paused_budget`) with `budget_stop` saying which limit, how much was spent and the limit.
`/omoi budget +N` raises this spec's allowance by N dollars (its spec limit, what it may spend past
the repo's monthly limit, and each task's limit) and resumes; the installation ceiling is the operator's and cannot
be raised from a comment.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, select

from app.config import Settings
from app.db.models import LLMCall, Spec, SpecTask
from app.timeutil import utc_now

ZERO = Decimal(0)
LIMITS = ("spec", "monthly", "installation")  # their names are in templates/reasons/_limits.md.j2


def _d(value) -> Decimal:
    return Decimal(str(value or 0))


def month_start(now: datetime | None = None) -> datetime:
    now = now or utc_now()
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _sum(model, *where):
    return select(func.coalesce(func.sum(model.cost_usd), 0)).where(*where).scalar_subquery()


def _month(model, when, *where):
    return (select(func.coalesce(func.sum(model.cost_usd), 0)).join(Spec, Spec.id == model.spec_id)
            .where(*where, when >= bindparam("since")).scalar_subquery())


# A spec's spend: its tasks' sessions and its model calls.
_SPEC_SUMS = (_sum(SpecTask, SpecTask.spec_id == bindparam("spec")), _sum(LLMCall, LLMCall.spec_id == bindparam("spec")))
_SPEC_SPENT = select(*_SPEC_SUMS)
# Every sum `status` needs in one statement, built once: it runs before every task attempt and claim.
_SPENT = select(
    *_SPEC_SUMS,
    _month(SpecTask, SpecTask.started_at, Spec.repo_full_name == bindparam("repo")),
    _month(LLMCall, LLMCall.created_at, Spec.repo_full_name == bindparam("repo")),
    _month(SpecTask, SpecTask.started_at, Spec.installation_id == bindparam("installation")),
    _month(LLMCall, LLMCall.created_at, Spec.installation_id == bindparam("installation")))


def spec_spent(s, spec_id: int) -> Decimal:
    s.flush()  # read on the session's connection: it must see what the session changed
    tasks, calls = s.connection().execute(_SPEC_SPENT, {"spec": spec_id}).one()
    return _d(tasks) + _d(calls)


@dataclass
class Status:
    spec_spent: Decimal
    spec_limit: Decimal
    month_spent: Decimal
    month_limit: Decimal          # the repo's monthly limit plus this spec's granted overage
    installation_spent: Decimal
    installation_limit: Decimal | None
    task_usd: Decimal
    task_minutes: int

    def hit(self) -> dict | None:
        """The first limit reached, as stored in `specs.budget_stop`, or None."""
        for name, spent, limit in (("spec", self.spec_spent, self.spec_limit),
                                   ("monthly", self.month_spent, self.month_limit),
                                   ("installation", self.installation_spent, self.installation_limit)):
            if limit is not None and spent >= limit:
                return {"limit": name, "spent_usd": f"{spent:.2f}",
                        "limit_usd": f"{limit:.2f}", "spec_spent_usd": f"{self.spec_spent:.2f}"}
        return None

    def remaining(self) -> Decimal:
        """What the next attempt may spend at most: the smallest headroom, never above the task limit."""
        room = [self.task_usd, self.spec_limit - self.spec_spent, self.month_limit - self.month_spent]
        if self.installation_limit is not None:
            room.append(self.installation_limit - self.installation_spent)
        return max(ZERO, min(room))

    def view(self) -> dict:
        return {"spec_spent": f"{self.spec_spent:.2f}", "spec_limit": f"{self.spec_limit:.2f}",
                "month_spent": f"{self.month_spent:.2f}", "month_limit": f"{self.month_limit:.2f}",
                "installation_spent": f"{self.installation_spent:.2f}",
                "installation_limit": f"{self.installation_limit:.2f}" if self.installation_limit is not None else None,
                "task_usd": f"{self.task_usd:.2f}", "task_minutes": self.task_minutes}


def status(s, settings: Settings, spec: Spec, budgets) -> Status:
    """`budgets` is the repo's `.github/omoi.yml` budgets (app/repo_config.Budgets)."""
    ceiling = _d(settings.installation_monthly_usd_ceiling) if settings.installation_monthly_usd_ceiling else None
    s.flush()  # the sums are read on the session's connection: they must see what it changed
    spent = [_d(v) for v in s.connection().execute(_SPENT, {
        "spec": spec.id, "repo": spec.repo_full_name, "installation": spec.installation_id,
        "since": month_start()}).one()]
    return Status(
        spec_spent=spent[0] + spent[1],
        spec_limit=_d(spec.budget_usd) if spec.budget_usd is not None else _d(budgets.spec_usd),
        month_spent=spent[2] + spent[3],
        month_limit=_d(budgets.monthly_usd) + _d(spec.budget_overage_usd),
        installation_spent=spent[4] + spent[5],
        installation_limit=ceiling,
        # `/omoi budget +N` also lets each task's session spend N more (a run paused at the task limit resumes)
        task_usd=_d(budgets.task_usd) + _d(spec.budget_overage_usd), task_minutes=budgets.task_minutes,
    )


def raise_budget(s, settings: Settings, spec: Spec, budgets, mode: str, amount: Decimal) -> Status:
    """`/omoi budget +N` (add) or `/omoi budget N` (set this spec's limit to N)."""
    current = status(s, settings, spec, budgets)
    if mode == "add":
        spec.budget_usd = current.spec_limit + amount
        spec.budget_overage_usd = _d(spec.budget_overage_usd) + amount
    else:
        spec.budget_usd = amount
        if current.month_spent >= current.month_limit:  # let a set budget get past a reached monthly limit
            spec.budget_overage_usd = _d(spec.budget_overage_usd) + max(ZERO, amount - current.spec_spent)
    s.flush()
    return status(s, settings, spec, budgets)
