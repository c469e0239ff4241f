"""Read-only status pages: one spec (`/status/{owner}/{repo}/{issue}`: its stages and, once tasks
exist, its run, app/web/run_page.py) and one installation's specs (`/status/installations/{id}`).
Reachable only through signed, expiring links (app/web/links.py); anything else is 403. Every text
shown passes through redaction and is HTML-escaped. While something runs, a spec's page updates itself
with the link it was opened with (its own nonce-allowed script; a refresh without scripts).
"""
from __future__ import annotations

import asyncio
import secrets
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import Installation, LLMCall, Spec, SpecStage
from app.db.session import session_scope
from app.observability.logs import redact
from app.text.rendering import explain, render_line
from app.timeutil import as_utc, utc_now
from app.web.keys import SETTINGS_KEY
from app.web.links import installation_status_path, sign_path, spec_status_path, verify
from app.web.pages import error_page, page
from app.web.run_page import load_run

MAX_LLM_ROWS = 500
MAX_SPEC_ROWS = 500
# Only the columns these pages show (explicit, so a newer model column never breaks a read).
_SPEC_COLS = (
    Spec.id, Spec.installation_id, Spec.repo_full_name, Spec.issue_number, Spec.title, Spec.state,
    Spec.requested_by, Spec.base_sha, Spec.branch, Spec.last_error, Spec.last_error_params,
    Spec.run_state, Spec.created_at, Spec.updated_at,
)


def _clean(settings: Settings, text: object) -> str:
    s = "" if text is None else str(text)
    for secret in settings.secret_values():
        if secret and len(secret) >= 6:
            s = s.replace(secret, "[REDACTED]")
    return redact(s)


def _duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    seconds = int((as_utc(end) - as_utc(start)).total_seconds())
    if seconds < 0:
        return ""
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _ts(value: datetime | None) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


def load_spec_view(settings: Settings, repo_full_name: str, issue_number: int) -> dict | None:
    with session_scope(settings.database_url) as s:
        spec = s.execute(
            select(*_SPEC_COLS).where(
                func.lower(Spec.repo_full_name) == repo_full_name.lower(), Spec.issue_number == issue_number
            )
        ).first()
        if spec is None:
            return None
        stages = s.execute(
            select(
                SpecStage.stage, SpecStage.revision, SpecStage.status, SpecStage.gates, SpecStage.attempts,
                SpecStage.feedback, SpecStage.approved_by, SpecStage.approved_at, SpecStage.created_at,
            ).where(SpecStage.spec_id == spec.id).order_by(SpecStage.created_at, SpecStage.id)
        ).all()
        calls = s.execute(
            select(
                LLMCall.purpose, LLMCall.model, LLMCall.input_tokens, LLMCall.output_tokens,
                LLMCall.cache_creation_input_tokens, LLMCall.cache_read_input_tokens, LLMCall.cost_usd,
                LLMCall.duration_ms, LLMCall.ok, LLMCall.error, LLMCall.created_at,
            ).where(LLMCall.spec_id == spec.id).order_by(LLMCall.created_at, LLMCall.id).limit(MAX_LLM_ROWS)
        ).all()
        totals = s.execute(
            select(
                func.count(LLMCall.id), func.coalesce(func.sum(LLMCall.input_tokens), 0),
                func.coalesce(func.sum(LLMCall.output_tokens), 0),
                func.coalesce(func.sum(LLMCall.cache_creation_input_tokens), 0),
                func.coalesce(func.sum(LLMCall.cache_read_input_tokens), 0),
                func.coalesce(func.sum(LLMCall.cost_usd), 0), func.coalesce(func.sum(LLMCall.duration_ms), 0),
            ).where(LLMCall.spec_id == spec.id)
        ).one()
        run = load_run(s, lambda text: _clean(settings, text), _ts, spec.id, settings.github_web_url,
                       spec.repo_full_name)

    stage_rows = []
    first_at: dict[str, datetime] = {}
    approved_at: dict[str, datetime] = {}
    for st in stages:
        first_at.setdefault(st.stage, st.created_at)
        if st.approved_at is not None:
            approved_at[st.stage] = st.approved_at
        gates = [g for g in (st.gates or []) if isinstance(g, dict)]
        stage_rows.append({
            "stage": st.stage,
            "revision": st.revision,
            "status": st.status,
            "attempts": st.attempts,
            "gates": [{
                "name": _clean(settings, render_line("spec/gate_name.md.j2", gate=g.get("name") or "")),
                "passed": bool(g.get("passed")),
                "severity": g.get("severity", "error"),
                "message": _clean(settings, explain(g.get("message") or "", g.get("params"))),
            } for g in gates],
            "gates_failed": sum(1 for g in gates if not g.get("passed")),
            "feedback": _clean(settings, st.feedback) if st.feedback else "",
            "approved_by": _clean(settings, st.approved_by) if st.approved_by else "",
            "approved_at": _ts(st.approved_at),
            "created_at": _ts(st.created_at),
        })

    # `what` is the step (templates/web/status_spec.html.j2 words it): requested, written, approved, changed
    timings = [{"what": "requested", "stage": None, "at": _ts(spec.created_at), "after": ""}]
    for stage in ("requirements", "design", "tasks"):
        if stage in first_at:
            timings.append({"what": "written", "stage": stage, "at": _ts(first_at[stage]),
                            "after": _duration(spec.created_at, first_at[stage])})
        if stage in approved_at:
            timings.append({"what": "approved", "stage": stage, "at": _ts(approved_at[stage]),
                            "after": _duration(spec.created_at, approved_at[stage])})
    timings.append({"what": "changed", "stage": None, "at": _ts(spec.updated_at),
                    "after": _duration(spec.created_at, spec.updated_at)})

    return {
        "repo_full_name": spec.repo_full_name,
        "issue_number": spec.issue_number,
        "issue_url": f"{settings.github_web_url}/{spec.repo_full_name}/issues/{spec.issue_number}",
        "title": _clean(settings, spec.title),
        "state": spec.state,
        "requested_by": _clean(settings, spec.requested_by),
        "base_sha": spec.base_sha or "",
        "branch": spec.branch or "",
        "last_error": _clean(settings, explain(spec.last_error, spec.last_error_params)) if spec.last_error else "",
        "created_at": _ts(spec.created_at),
        "updated_at": _ts(spec.updated_at),
        "age": _duration(spec.created_at, utc_now()),
        "installation_id": spec.installation_id,
        "run": run,
        "stages": stage_rows,
        "approvals": [r for r in stage_rows if r["approved_by"]],
        "timings": timings,
        "llm_calls": [{
            "purpose": _clean(settings, c.purpose),
            "model": c.model,
            "input_tokens": c.input_tokens,
            "output_tokens": c.output_tokens,
            "cache_write": c.cache_creation_input_tokens,
            "cache_read": c.cache_read_input_tokens,
            "cost": f"{Decimal(c.cost_usd or 0):.4f}",
            "duration": f"{(c.duration_ms or 0) / 1000:.1f}s",
            "ok": c.ok,
            "error": _clean(settings, c.error)[:500] if c.error else "",
            "at": _ts(c.created_at),
        } for c in calls],
        "llm_truncated": totals[0] > len(calls),
        "llm_totals": {
            "calls": totals[0], "input_tokens": int(totals[1]), "output_tokens": int(totals[2]),
            "cache_write": int(totals[3]), "cache_read": int(totals[4]),
            "cost": f"{Decimal(totals[5] or 0):.4f}", "duration": f"{int(totals[6]) / 1000:.1f}s",
        },
    }


def load_installation_view(settings: Settings, installation_id: int) -> dict:
    with session_scope(settings.database_url) as s:
        inst = s.execute(
            select(Installation.account_login, Installation.account_type, Installation.suspended,
                   Installation.deleted).where(Installation.id == installation_id)
        ).first()
        specs = s.execute(
            select(*_SPEC_COLS).where(Spec.installation_id == installation_id)
            .order_by(Spec.updated_at.desc(), Spec.id.desc()).limit(MAX_SPEC_ROWS)
        ).all()
        costs = dict(s.execute(
            select(LLMCall.spec_id, func.coalesce(func.sum(LLMCall.cost_usd), 0))
            .where(LLMCall.spec_id.in_([sp.id for sp in specs] or [-1])).group_by(LLMCall.spec_id)
        ).all())
    return {
        "installation_id": installation_id,
        "account_login": _clean(settings, inst.account_login) if inst else "",
        "account_type": inst.account_type if inst else "",
        "suspended": bool(inst.suspended) if inst else False,
        "deleted": bool(inst.deleted) if inst else False,
        "known": inst is not None,
        "specs": [{
            "repo_full_name": sp.repo_full_name,
            "issue_number": sp.issue_number,
            "title": _clean(settings, sp.title),
            "state": sp.state,
            "run_state": sp.run_state or "",
            "updated_at": _ts(sp.updated_at),
            "cost": f"{Decimal(costs.get(sp.id, 0) or 0):.4f}",
            "link": sign_path(settings, spec_status_path(sp.repo_full_name, sp.issue_number)),
        } for sp in specs],
    }


def _settings(request: web.Request) -> Settings:
    return request.app[SETTINGS_KEY]


async def spec_status(request: web.Request) -> web.Response:
    settings = _settings(request)
    owner, repo, issue = (request.match_info[k] for k in ("owner", "repo", "issue"))
    if not issue.isdigit() or len(issue) > 9:
        return error_page(403, "forbidden")
    full_name = f"{owner}/{repo}"
    if not verify(settings, spec_status_path(full_name, int(issue)), request.query):
        return error_page(403, "forbidden")
    view = await asyncio.to_thread(load_spec_view, settings, full_name, int(issue))
    if view is None:
        return error_page(404, "not_found")
    if view["installation_id"] is not None:
        view["installation_link"] = sign_path(settings, installation_status_path(view["installation_id"]))
    else:
        view["installation_link"] = ""
    # While something runs the page updates itself (its own script, or a refresh without scripts) with
    # the very link it was opened with, so the link still expires when it says.
    live = bool(view["run"] and view["run"]["live"])
    refresh_url = spec_status_path(full_name, int(issue)) + "?" + urlencode(
        {"exp": request.query["exp"], "sig": request.query["sig"]})
    return page("status_spec.html.j2", script_nonce=secrets.token_urlsafe(18) if live else None,
                refresh_url=refresh_url, **view)


async def installation_status(request: web.Request) -> web.Response:
    settings = _settings(request)
    raw = request.match_info["installation_id"]
    if not raw.isdigit() or len(raw) > 18:
        return error_page(403, "forbidden")
    if not verify(settings, installation_status_path(int(raw)), request.query):
        return error_page(403, "forbidden")
    view = await asyncio.to_thread(load_installation_view, settings, int(raw))
    if not view["known"] and not view["specs"]:
        return error_page(404, "not_found")
    return page("status_installation.html.j2", **view)


def add_status_routes(app: web.Application) -> None:
    # The installations route is more specific and must win over {owner}/{repo}/{issue}.
    app.router.add_get("/status/installations/{installation_id}", installation_status)
    app.router.add_get("/status/{owner}/{repo}/{issue}", spec_status)
