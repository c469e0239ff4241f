"""Celery-side driver of one spec phase: lock the issue, generate, report failures visibly."""
from __future__ import annotations

import asyncio
import traceback

import anthropic
from sqlalchemy import select

from app.config import get_settings
from app.db import claims
from app.db.locks import Busy, issue_lock
from app.db.models import Spec, SpecStage
from app.db.session import session_scope
from app.github import comments
from app.github.client import installation_client
from app.jobs import Result, is_transient
from app.llm.structured import LLMError
from app.observability.logs import get_logger, redact
from app.planning import flow, quick, scope
from app.text.rendering import reason as reason_of, render, stored
from app.text import markers

log = get_logger("omoi.spec.runner")
MAX_ATTEMPTS = 4


def _transient_llm(exc: BaseException) -> bool:
    if isinstance(exc, (anthropic.APIConnectionError, anthropic.APITimeoutError)):
        return True
    return isinstance(exc, anthropic.APIStatusError) and exc.status_code in (429, 500, 502, 503, 529)


def run_stage(spec_id: int, stage: str, feedback: str | None, request_key: str, attempt: int) -> Result:
    settings = get_settings()
    if request_key and claims.status(f"stage:{request_key}") == "done":
        return Result("already-done")
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.state in flow.ENDED:
            return Result("skipped")
        # An approved revision counts unless planning starts over (`/omoi plan` after a rejection).
        written = ("waiting", "blocked") if spec.state == "planning" else ("waiting", "approved", "blocked")
        if feedback is None and s.scalars(select(SpecStage.id).where(
            SpecStage.spec_id == spec_id, SpecStage.stage == stage, SpecStage.status.in_(written),
        )).first():
            return Result("exists")  # a duplicate request for a stage that is already written
        key, installation_id = f"{spec.repo_full_name}#{spec.issue_number}", spec.installation_id
        full_name, number = spec.repo_full_name, spec.issue_number
    bound = log.bind(spec_id=spec_id, stage=stage, issue=key)
    try:
        with issue_lock(key, settings.issue_lock_seconds):
            outcome = asyncio.run(_generate(settings, installation_id, spec_id, stage, feedback))
    except Busy:
        return Result("busy", retry_in=2.0)
    except Exception as exc:  # noqa: BLE001 - every failure ends visibly
        if (is_transient(exc) or _transient_llm(exc)) and attempt < MAX_ATTEMPTS:
            bound.warning("stage_retry", error=exc.__class__.__name__, attempt=attempt)
            return Result("retry", retry_in=min(5 * 2 ** attempt, 120))
        reason = _reason(exc)
        bound.error("stage_failed", error=reason)
        asyncio.run(_report_failure(settings, installation_id, spec_id, full_name, number, stage, reason))
        claims.claim(f"stage:{request_key}", "stage", "done")
        return Result("failed")
    claims.claim(f"stage:{request_key}", "stage", "done")
    bound.info("stage_written", outcome=outcome)
    return Result(outcome)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LLMError):
        return redact(str(exc))[:500]
    return redact("".join(traceback.format_exception_only(type(exc), exc)).strip())[:500]


async def _generate(settings, installation_id: int, spec_id: int, stage: str, feedback: str | None) -> str:
    async with installation_client(settings, installation_id) as gh:
        if stage == quick.STAGE:
            return await quick.generate(gh, settings, spec_id, feedback)
        if stage == scope.STAGE:
            return await scope.revise(gh, settings, spec_id, feedback or "")
        return await flow.generate(gh, settings, spec_id, stage, feedback)


async def _report_failure(settings, installation_id, spec_id, full_name, number, stage, reason) -> None:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.state = "failed"
        spec.last_error, spec.last_error_params = stored(reason_of("planning/error", detail=reason))
    try:
        async with installation_client(settings, installation_id) as gh:
            await comments.upsert(gh, settings, full_name, number, markers.ERROR.prefix(stage=stage),
                                  render("spec/failed.md.j2", stage=stage, reason=reason))
    except Exception as exc:  # noqa: BLE001 - GitHub itself is down; the state is recorded
        log.error("failure_report_failed", spec_id=spec_id, error=exc.__class__.__name__)
