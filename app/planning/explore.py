"""Explore before specifying (issue 17): before the first requirements of a spec, a read-only agent
(app/agent/session.py mode `explore`: Read, Glob, Grep) looks at the repository in a sandbox, the
same containment as tasks (app/sandbox), bounded in turns, dollars and time. Its findings (relevant
files, existing patterns, constraints) go into the requirements and design prompts as data and are
shown collapsed in the requirements comment. Once per spec; when it is off, no sandbox can be made
or the agent fails, planning goes on with the digest alone (app/planning/digest.py).

On unless the deployment (`OMOI_SPEC_EXPLORE`) or the repository (`.github/omoi.yml`
`explore_first: false`) turns it off.
"""
from __future__ import annotations

from decimal import Decimal

from app.agent.session import run_agent
from app.config import Settings
from app.db.models import LLMCall, Spec
from app.db.session import session_scope
from app.github import repo_config, repo_vars, url_with_token
from app.observability.logs import get_logger
from app.planning.issue_copy import issue_of
from app.sandbox import SandboxError, make_sandbox
from app.text.rendering import explain, render
from app.text.sanitize import sanitize_inline, sanitize_untrusted

log = get_logger("omoi.spec.explore")
MAX_FINDINGS_CHARS = 6000  # the agent's report, in prompts and in the comment


async def enabled(gh, settings: Settings, full_name: str) -> bool:
    explore_first = (await repo_config.load(gh, settings, full_name)).config.explore_first
    return settings.spec_explore if explore_first is None else explore_first


def _record(settings: Settings, spec_id: int, outcome: dict) -> None:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.planning = dict(spec.planning or {}) | {"explore": outcome}


async def ensure(gh, settings: Settings, spec_id: int) -> None:
    """Explore once per spec (when enabled); the outcome is kept in `specs.planning["explore"]`:
    `status` done (with `findings`), off, unavailable (no sandbox) or failed (with `reason`)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if (spec.planning or {}).get("explore") is not None:
            return
        full_name, number, base_sha = spec.repo_full_name, spec.issue_number, spec.base_sha
    if not await enabled(gh, settings, full_name):
        _record(settings, spec_id, {"status": "off"})
        return
    try:
        _record(settings, spec_id, await _explore(gh, settings, spec_id, full_name, number, base_sha))
    except Exception as exc:  # noqa: BLE001 - exploring only helps; planning goes on with the digest
        log.warning("explore_failed", spec_id=spec_id, error=exc.__class__.__name__)
        _record(settings, spec_id, {"status": "failed", "reason": exc.__class__.__name__})


async def _explore(gh, settings: Settings, spec_id: int, full_name: str, number: int, base_sha: str | None) -> dict:
    repo = await gh.getitem("/repos/{owner}/{repo}", url_vars=repo_vars(full_name))
    issue = await issue_of(gh, settings, spec_id, full_name, number)
    provider = make_sandbox(settings)
    try:
        sandbox = await provider.create(repo_url=url_with_token(repo["clone_url"], gh.oauth_token),
                                        ref=base_sha or repo.get("default_branch") or "HEAD",
                                        label=f"spec-{spec_id}/explore")
    except SandboxError as exc:  # fail closed: never explore unconfined; the digest is enough to plan
        log.warning("explore_unavailable", spec_id=spec_id, error=str(exc)[:300])
        return {"status": "unavailable"}
    try:
        prompt = render("prompts/explore.j2", spec_id=spec_id, workdir=sandbox.agent_cwd, issue_number=number,
                        title=sanitize_inline(issue.get("title", "")),
                        body=sanitize_untrusted(issue.get("body")).strip() or "(no description)")
        result = await run_agent(mode="explore", prompt=prompt, sandbox=sandbox, settings=settings,
                                 max_turns=settings.spec_explore_max_turns,
                                 max_budget_usd=settings.spec_explore_budget_usd,
                                 timeout_s=settings.spec_explore_timeout_seconds)
    finally:
        await sandbox.destroy()
    _account(settings, spec_id, result)
    findings = (result.text or "").strip()[:MAX_FINDINGS_CHARS]
    if result.ok and findings:
        outcome = {"status": "done", "findings": findings, "turns": result.num_turns, "cost_usd": result.cost_usd}
    else:
        why = explain(result.error) if result.error else "no findings"
        outcome = {"status": "failed", "reason": why[:300], "cost_usd": result.cost_usd}
    log.info("spec_explored", spec_id=spec_id, status=outcome["status"], turns=result.num_turns,
             cost_usd=result.cost_usd)
    return outcome


def _account(settings: Settings, spec_id: int, result) -> None:
    """The session's cost counts in the spec's budget like the planning calls (app/execution/budgets.py)."""
    usage = result.usage or {}
    with session_scope(settings.database_url) as s:
        s.add(LLMCall(spec_id=spec_id, purpose="explore", model=settings.model_planner,
                      input_tokens=int(usage.get("input_tokens") or 0), output_tokens=int(usage.get("output_tokens") or 0),
                      cost_usd=Decimal(str(result.cost_usd or 0)), duration_ms=int(result.duration_s * 1000),
                      ok=result.ok, error=explain(result.error)[:500] if result.error else None))


def findings_of(planning: dict | None) -> str:
    """The findings to show and to give the model ("" when there are none)."""
    explored = (planning or {}).get("explore") or {}
    return explored.get("findings", "") if explored.get("status") == "done" else ""
