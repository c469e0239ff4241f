"""One fix on one of omoi's pull requests, shared by review fixes (app/execution/review_fix.py) and CI
fixes (app/execution/ci_fix.py): a sandbox at the PR head, the repository's setup steps, the agent,
the policy, the verify commands, then omoi's commit on the PR branch (never forced, on top of any
human commits). A change whose verify fails is never pushed. The session's cost is recorded against
the pull request's spec (an `llm_calls` row), so it counts in the spec's budget (app/execution/budgets.py).
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import or_, select

from app.agent.session import AgentResult, run_agent
from app.config import Settings
from app.db.models import LLMCall, Spec, SpecTask
from app.db.session import session_scope
from app.execution import budgets, gitwork, policy, repo_guidance, task_runner
from app.github import bot_identity, url_with_token
from app.observability.logs import get_logger
from app.sandbox import make_sandbox
from app.text.rendering import Reason, reason, render
from app.text.sanitize import sanitize_untrusted

log = get_logger("omoi.fix")
TAIL = 1500  # characters of a failing command's output kept for the reply


@dataclass
class Fix:
    """What one fix session came to."""

    sha: str | None = None            # the pushed commit
    patch: str = ""
    cost_usd: float = 0.0
    agent: AgentResult | None = None
    report: str | None = None         # the agent's result file, as written
    failure: Reason | None = None     # why nothing was pushed (agent, policy, setup, verify)
    verify_failed: bool = False
    evidence: list[dict] = field(default_factory=list)  # the verify commands' results

    @property
    def tail(self) -> str:
        """The output of the last command run (a failing verify's), trimmed."""
        return (self.evidence[-1]["tail"] if self.evidence else "")[-TAIL:]


def spec_for_pull_request(settings: Settings, full_name: str, pr: dict) -> int | None:
    """The spec whose pull request (or branch) this is."""
    branch = (pr.get("head") or {}).get("ref")
    with session_scope(settings.database_url) as s:
        spec = s.scalars(select(Spec).where(
            Spec.repo_full_name == full_name,
            or_(Spec.pr_number == pr["number"], Spec.branch == branch if branch else False),
        ).order_by(Spec.id.desc())).first()
        return spec.id if spec else None


def verify_commands(settings: Settings, spec_id: int | None, extra: list[str]) -> list[str]:
    """The spec's task verify commands (each once, in task order) and the repository's `ci.verify`."""
    commands: list[str] = []
    if spec_id is not None:
        with session_scope(settings.database_url) as s:
            for t in s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id,
                                                      SpecTask.status != "cancelled").order_by(SpecTask.id)):
                commands += list(t.verify or [])
    commands += list(extra)
    return list(dict.fromkeys(c for c in commands if c and c.strip()))


def budget_left(settings: Settings, spec_id: int | None, cfg) -> tuple[float, dict | None]:
    """(what a fix may spend, the limit reached or None): the review budget, within the spec's headroom."""
    if spec_id is None:
        return settings.review_budget_usd, None
    with session_scope(settings.database_url) as s:
        st = budgets.status(s, settings, s.get(Spec, spec_id), cfg.budgets)
        hit = st.hit()
        room = [st.spec_limit - st.spec_spent, st.month_limit - st.month_spent]
        if st.installation_limit is not None:
            room.append(st.installation_limit - st.installation_spent)
    return float(min([Decimal(str(settings.review_budget_usd)), *room])), hit


def record_cost(settings: Settings, spec_id: int | None, purpose: str, result: AgentResult | None) -> None:
    """The session's cost against the spec, where budgets.spec_spent counts it."""
    if spec_id is None or result is None or not result.cost_usd:
        return
    usage = result.usage or {}
    with session_scope(settings.database_url) as s:
        s.add(LLMCall(spec_id=spec_id, purpose=purpose, model=settings.model_planner,
                      input_tokens=int(usage.get("input_tokens") or 0),
                      output_tokens=int(usage.get("output_tokens") or 0),
                      cache_creation_input_tokens=int(usage.get("cache_creation_input_tokens") or 0),
                      cache_read_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
                      cost_usd=Decimal(str(result.cost_usd)), duration_ms=int(result.duration_s * 1000),
                      ok=result.ok))


async def _read_and_remove(sandbox, path: str) -> str | None:
    try:
        raw = await sandbox.download(path)
    except Exception:  # noqa: BLE001 - no file is a normal outcome
        return None
    finally:
        await sandbox.exec(["rm", "-f", path], timeout=10)  # never part of the commit
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


async def run(gh, settings: Settings, token: str, full_name: str, pr: dict, cfg, *, prompt: str, key: str,
              label: str, message: str, verify: list[str], max_budget_usd: float, result_file: str | None = None) -> Fix:
    """Sandbox + agent at the PR head; verify; commit and push as `key` (its `Omoi-Task:` trailer)."""
    repo = await gh.getitem("/repos/{owner}/{repo}", url_vars=dict(zip(("owner", "repo"), full_name.split("/", 1))))
    branch, head = pr["head"]["ref"], pr["head"]["sha"]
    guidance = await asyncio.to_thread(repo_guidance.read, settings, repo["clone_url"], repo.get("default_branch"), token)
    prompt += render("execution/_repo_guidance.md.j2", repo_guidance=guidance)  # as data, like a task's
    sandbox = await make_sandbox(settings).create(repo_url=url_with_token(repo["clone_url"], token), ref=head,
                                                  label=label)
    fix = Fix()
    limits = policy.Limits.for_repo(cfg)
    try:
        setup_evidence, setup_failure = await task_runner._setup(sandbox, cfg.setup)
        if setup_failure:
            fix.failure, fix.evidence = setup_failure, setup_evidence
            return fix
        fix.agent = await run_agent(mode="implement", prompt=prompt, sandbox=sandbox, settings=settings,
                                    max_turns=settings.review_max_turns, max_budget_usd=max_budget_usd,
                                    timeout_s=settings.review_timeout_seconds)
        fix.cost_usd = fix.agent.cost_usd
        if result_file:
            fix.report = await _read_and_remove(sandbox, result_file)
        fix.patch = await sandbox.diff()
        if not fix.patch.strip():
            if not fix.agent.ok:
                fix.failure = reason("review/agent_stopped", cause=fix.agent.error)
            return fix
        refusal = policy.precheck(fix.patch, limits)
        if refusal is not None:
            fix.failure = refusal.reason
            return fix
        evidence, failure = await task_runner._verify(sandbox, verify, settings)
        fix.evidence = setup_evidence + evidence
        if failure:
            fix.failure, fix.verify_failed = failure, True
            return fix
    finally:
        await sandbox.destroy()
    clone = gitwork.Clone(url=repo["clone_url"], token=token, branch=branch,
                          author=bot_identity(settings.app_name, settings.github_app_id))
    try:
        await asyncio.to_thread(clone.clone)
        pushed = await asyncio.to_thread(gitwork.commit_and_push, clone, base_sha=head, patch=fix.patch,
                                         message=message, task_key=key, limits=limits,
                                         secrets=policy.secrets_from_settings(settings, extra=[token]))
        fix.sha = pushed.sha
    except policy.Refused as exc:  # the applied change broke a rule: nothing was pushed
        fix.failure = exc.reason
    finally:
        clone.cleanup()
    log.info("fix_pushed" if fix.sha else "fix_not_pushed", key=key, sha=fix.sha, cost=fix.cost_usd)
    return fix


_TAGS = re.compile(r"<\s*/?\s*(comment|ci-output|annotation)\b", re.IGNORECASE)


def as_data(text: object, max_chars: int) -> str:
    """People's or CI's text for a prompt: as GitHub shows it, trimmed, unable to close its data tag."""
    return _TAGS.sub(lambda m: "&lt;" + m.group(0)[1:], sanitize_untrusted(text, max_chars))
