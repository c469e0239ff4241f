"""The checks of other apps (CI) on a spec's pull request head, as omoi judges them.

`read` lists the head commit's latest check runs and leaves out omoi's own (its App id). The head
counts as passing when every one of them completed as success, neutral or skipped, and every
required check is among them: the repository's `ci.required_checks`, and every check that failed
in an earlier CI round of this spec (once a check failed, it must pass again before the pull request
is ready). `allow_ready` is what app/execution/run_report.py asks before it marks a finished run's
draft ready; when the head is failing it queues the CI fix (app/execution/ci_fix.py).
`feedback` is what a failing check said (output and annotations), as data for the fix agent.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from app import jobs
from app.config import Settings
from app.db.models import CIRound
from app.db.session import session_scope
from app.github import repo_config, repo_vars
from app.observability.logs import get_logger, redact

log = get_logger("omoi.ci")
PASSING = frozenset({"success", "neutral", "skipped"})
FAILING = frozenset({"failure", "timed_out", "startup_failure"})
MAX_ANNOTATIONS = 50


@dataclass
class Checks:
    head: str
    failing: list[dict] = field(default_factory=list)   # completed as failure, timed_out, startup_failure
    running: list[dict] = field(default_factory=list)   # not completed yet
    missing: list[str] = field(default_factory=list)    # required, not reported on this head
    other: list[dict] = field(default_factory=list)     # completed otherwise (cancelled, action_required, stale)
    passing: list[dict] = field(default_factory=list)

    @property
    def state(self) -> str:
        """failing (and nothing else still running: time to fix) | waiting | blocked | passing."""
        if self.failing:
            return "waiting" if self.running else "failing"
        if self.running or self.missing:
            return "waiting"
        return "blocked" if self.other else "passing"


def summary(run: dict) -> dict:
    """A check run as stored in a CI round and shown in the CI comment."""
    return {"id": run["id"], "name": run.get("name", ""), "conclusion": run.get("conclusion"),
            "title": ((run.get("output") or {}).get("title") or "")[:200],
            "url": run.get("html_url") or run.get("details_url") or "",
            "app": (run.get("app") or {}).get("slug") or ""}


def required_names(settings: Settings, spec_id: int, configured: list[str]) -> list[str]:
    with session_scope(settings.database_url) as s:
        seen = [c.get("name") for r in s.scalars(select(CIRound).where(CIRound.spec_id == spec_id))
                for c in (r.checks or [])]
    return list(dict.fromkeys([*configured, *(n for n in seen if n)]))


async def read(gh, settings: Settings, full_name: str, head: str, required: list[str]) -> Checks:
    checks = Checks(head)
    names = set()
    async for run in gh.getiter("/repos/{owner}/{repo}/commits/{ref}/check-runs{?filter}",
                                url_vars={**repo_vars(full_name), "ref": head, "filter": "latest"},
                                iterable_key="check_runs"):
        if settings.github_app_id and str((run.get("app") or {}).get("id")) == str(settings.github_app_id):
            continue  # omoi's own check runs (omoi / implement, omoi / spec)
        names.add(run.get("name"))
        if run.get("status") != "completed":
            checks.running.append(summary(run))
        elif run.get("conclusion") in FAILING:
            checks.failing.append(summary(run))
        elif run.get("conclusion") in PASSING:
            checks.passing.append(summary(run))
        else:
            checks.other.append(summary(run))
    checks.missing = [n for n in required if n not in names]
    return checks


async def allow_ready(gh, settings: Settings, spec_id: int, full_name: str, head: str) -> bool:
    """May the finished run's draft become ready for review? Queues a CI fix when the head is failing."""
    ci = (await repo_config.load(gh, settings, full_name)).config.ci
    checks = await read(gh, settings, full_name, head, required_names(settings, spec_id, list(ci.required_checks)))
    if checks.state == "failing":
        jobs.ci_result(spec_id=spec_id, head_sha=head)
    log.info("ci_gate", spec_id=spec_id, head=head[:12], state=checks.state)
    return checks.state == "passing"


async def feedback(gh, full_name: str, failing: list[dict]) -> list[dict]:
    """Each failing check's output and annotations, redacted and trimmed (they are data, never orders)."""
    out = []
    for check in failing[:10]:
        run = await gh.getitem("/repos/{owner}/{repo}/check-runs/{check_run_id}",
                               url_vars={**repo_vars(full_name), "check_run_id": check["id"]})
        output = run.get("output") or {}
        notes = []
        if output.get("annotations_count"):
            async for a in gh.getiter("/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations",
                                      url_vars={**repo_vars(full_name), "check_run_id": check["id"]}):
                notes.append({"path": a.get("path", ""), "line": a.get("start_line"),
                              "level": a.get("annotation_level", ""), "title": redact(a.get("title") or "")[:200],
                              "message": redact(a.get("message") or "")[:1000]})
                if len(notes) >= MAX_ANNOTATIONS:
                    break
        out.append({"name": run.get("name", ""), "conclusion": run.get("conclusion"),
                    "title": redact(output.get("title") or "")[:300],
                    "summary": redact(output.get("summary") or "")[-3000:],
                    "text": redact(output.get("text") or "")[-6000:], "annotations": notes})
    return out
