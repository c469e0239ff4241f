"""The run part of a spec's status page: the task graph with each task's state, attempts, the latest
attempt's transcript (agent messages and tool calls), costs, supervision, discoveries and people's
messages, read straight from the database (the web process loads no execution code).

Transcripts are each attempt's agent messages and tool calls as the worker's heartbeat keeps them
(`task_transcripts`, app/db/transcripts.py; for an attempt from before those were kept, the task row's
`trajectory`), already redacted by app/agent/transcript.py. They are model output: redacted again here
and always HTML-escaped by the template. `live` (something runs) makes the page update itself.
"""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Callable

from sqlalchemy import select

from app.db.models import Discovery, Intervention, Spec, SpecTask, TaskTranscript
from app.text.rendering import explain
from app.timeutil import as_utc, utc_now

# Seconds between refreshes of a page whose run is going (a <meta> refresh: the pages run no script).
REFRESH_SECONDS = 3
SUPERVISORS = ("guardian", "conductor", "monitor")  # any other intervention source is a person
MAX_ENTRY_CHARS = 2000  # one transcript entry as shown (the worker keeps up to 4000)
MAX_ENTRIES = 60  # the most recent entries shown per attempt (the page is fetched again every few seconds)
_TASK_COLS = (
    SpecTask.task_id, SpecTask.title, SpecTask.description, SpecTask.status, SpecTask.attempts, SpecTask.depends_on,
    SpecTask.files, SpecTask.cost_usd, SpecTask.duration_s, SpecTask.error, SpecTask.error_params,
    SpecTask.evidence, SpecTask.origin, SpecTask.kind, SpecTask.trajectory, SpecTask.trajectory_at,
    SpecTask.guidance, SpecTask.commit_sha, SpecTask.started_at, SpecTask.finished_at, SpecTask.heartbeat_at,
)


def _number(task_id: str) -> tuple[int, str]:
    digits = "".join(ch for ch in task_id if ch.isdigit())
    return (int(digits) if digits else 10**9, task_id)


def _levels(tasks: list[dict]) -> list[list[dict]]:
    """Tasks in columns by depth: a task stands one column right of the deepest task it waits for."""
    by_id = {t["id"]: t for t in tasks}
    depth: dict[str, int] = {}

    def walk(tid: str, seen: frozenset) -> int:
        if tid in depth:
            return depth[tid]
        deps = [d for d in by_id[tid]["depends_on"] if d in by_id and d not in seen]
        depth[tid] = 1 + max((walk(d, seen | {tid}) for d in deps), default=-1)
        return depth[tid]

    for t in tasks:
        walk(t["id"], frozenset())
    columns: list[list[dict]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for t in tasks:
        columns[depth[t["id"]]].append(t)
    return columns


def _entry(clean: Callable[[object], str], raw: object) -> dict | None:
    """One transcript entry as the template shows it: who, what kind, a tool name, the text."""
    if not isinstance(raw, dict):
        return None
    kind = str(raw.get("type") or "")
    role = str(raw.get("role") or "")
    if kind == "tool_use":
        text = raw.get("input")
    elif kind == "tool_result":
        text = raw.get("content")
    elif kind == "error":
        text = raw.get("error")
    elif role == "result":
        text = raw.get("result")
    else:
        text = raw.get("text")
    shown = clean(text if text is not None else "")
    if len(shown) > MAX_ENTRY_CHARS:
        shown = shown[:MAX_ENTRY_CHARS] + " …"
    return {"role": clean(role), "kind": clean(kind), "name": clean(raw.get("name") or ""), "text": shown,
            "is_error": bool(raw.get("is_error"))}


def span(seconds: float) -> str:
    """`3h 05m`, `4m 02s`, `12s`."""
    seconds = max(0, int(round(seconds)))
    hours, rem = divmod(seconds, 3600)
    minutes, secs = divmod(rem, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _attempt(clean: Callable[[object], str], ts: Callable, task, number: int, kept, notes: list[dict]) -> dict:
    """Attempt `number` of a task: what supervisors and people said during it and its transcript (its kept
    row; for the latest attempt written before transcripts were kept, the task row's trajectory)."""
    latest = number == task.attempts
    if kept is not None:
        raw, total, at = kept.entries or [], kept.total or 0, kept.updated_at
    elif latest:
        raw, at = task.trajectory or [], task.trajectory_at
        total = len(raw)
    else:
        raw, total, at = [], 0, None
    entries = [e for e in (_entry(clean, x) for x in raw[-MAX_ENTRIES:]) if e]
    return {"attempt": number, "latest": latest, "notes": notes, "transcript": entries,
            "total": max(total, len(entries)), "at": ts(at),
            "cost": f"{Decimal(kept.cost_usd or 0):.4f}" if kept is not None else ""}


def load_run(s, clean: Callable[[object], str], ts: Callable[[datetime | None], str], spec_id: int,
             web_url: str, repo_full_name: str) -> dict | None:
    """The run of spec `spec_id` (None before any task exists), read in the caller's session."""
    spec = s.execute(select(Spec.run_state, Spec.run_error, Spec.run_error_params, Spec.run_started_at,
                            Spec.run_finished_at, Spec.pr_number, Spec.budget_usd, Spec.budget_stop)
                     .where(Spec.id == spec_id)).one()
    rows = sorted(s.execute(select(*_TASK_COLS).where(SpecTask.spec_id == spec_id)).all(),
                  key=lambda r: _number(r.task_id))
    if not rows and spec.run_state is None:
        return None
    interventions = s.execute(select(
        Intervention.task_id, Intervention.attempt, Intervention.source, Intervention.verdict, Intervention.action,
        Intervention.reason, Intervention.reason_params, Intervention.guidance, Intervention.created_at,
        Intervention.delivered_at).where(Intervention.spec_id == spec_id)
        .order_by(Intervention.created_at, Intervention.id)).all()
    kept = {(k.task_id, k.attempt): k for k in s.execute(select(
        TaskTranscript.task_id, TaskTranscript.attempt, TaskTranscript.entries, TaskTranscript.total,
        TaskTranscript.cost_usd, TaskTranscript.updated_at).where(TaskTranscript.spec_id == spec_id)).all()}
    discoveries = s.execute(select(
        Discovery.task_id, Discovery.kind, Discovery.title, Discovery.description, Discovery.evidence,
        Discovery.status, Discovery.new_task_id, Discovery.duplicate_of, Discovery.created_at)
        .where(Discovery.spec_id == spec_id).order_by(Discovery.created_at, Discovery.id)).all()

    notes = [{
        "task": i.task_id, "attempt": i.attempt, "source": clean(i.source), "verdict": clean(i.verdict),
        "action": clean(i.action), "reason": clean(explain(i.reason, i.reason_params)) if i.reason else "",
        "text": clean(i.guidance) if i.guidance else "", "at": ts(i.created_at),
        "delivered_at": ts(i.delivered_at), "person": i.source not in SUPERVISORS,
        # a person's message names its sender in its parameters (app/commands)
        "sender": clean((i.reason_params.get("user") if isinstance(i.reason_params, dict) else None) or i.source),
    } for i in interventions]
    found = [{
        "task": d.task_id, "kind": clean(d.kind), "title": clean(d.title), "description": clean(d.description),
        "evidence": clean(d.evidence), "status": clean(d.status), "new_task": d.new_task_id or "",
        "duplicate_of": clean(d.duplicate_of) if d.duplicate_of else "", "at": ts(d.created_at),
    } for d in discoveries]

    tasks = []
    for r in rows:
        mine = [n for n in notes if n["task"] == r.task_id]
        tasks.append({
            "id": r.task_id, "title": clean(r.title), "description": clean(r.description), "status": r.status,
            "kind": r.kind, "origin": r.origin, "depends_on": [str(d) for d in (r.depends_on or [])],
            "files": [clean(f) for f in (r.files or [])], "attempts": r.attempts,
            "cost": f"{Decimal(r.cost_usd or 0):.4f}", "duration": span(r.duration_s or 0) if r.duration_s else "",
            "error": clean(explain(r.error, r.error_params)) if r.error else "",
            "guidance": clean(r.guidance) if r.guidance else "",
            "commit": r.commit_sha or "",
            "commit_url": f"{web_url}/{repo_full_name}/commit/{r.commit_sha}" if r.commit_sha else "",
            "started_at": ts(r.started_at), "finished_at": ts(r.finished_at), "heartbeat_at": ts(r.heartbeat_at),
            "evidence": [{"command": clean(e.get("command") or ""), "exit_code": e.get("exit_code"),
                          "tail": clean(e.get("tail") or "")} for e in (r.evidence or []) if isinstance(e, dict)],
            "attempt_rows": [_attempt(clean, ts, r, n, kept.get((r.task_id, n)), [x for x in mine if x["attempt"] == n])
                             for n in sorted({x["attempt"] for x in mine} | {k[1] for k in kept if k[0] == r.task_id}
                                             | ({r.attempts} if r.attempts else set()))],
            "discoveries": [d for d in found if d["task"] == r.task_id],
        })
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    live = spec.run_state == "running" or any(t["status"] == "running" for t in tasks)
    started, finished = spec.run_started_at, spec.run_finished_at
    return {
        "state": spec.run_state or "", "live": live, "refresh_seconds": REFRESH_SECONDS if live else 0,
        "error": clean(explain(spec.run_error, spec.run_error_params)) if spec.run_error else "",
        "started_at": ts(started), "finished_at": ts(finished),
        "duration": span(((as_utc(finished) if finished else utc_now()) - as_utc(started)).total_seconds())
        if started else "",
        "cost": f"{sum((Decimal(r.cost_usd or 0) for r in rows), Decimal(0)):.4f}",
        "budget": f"{Decimal(spec.budget_usd):.2f}" if spec.budget_usd is not None else "",
        "budget_stop": {k: clean(spec.budget_stop.get(k) or "") for k in ("limit", "spent_usd", "limit_usd")}
        if isinstance(spec.budget_stop, dict) else {},
        "pr_url": f"{web_url}/{repo_full_name}/pull/{spec.pr_number}" if spec.pr_number else "",
        "pr_number": spec.pr_number or 0,
        "counts": sorted(counts.items()), "tasks": tasks, "levels": _levels(tasks),
        "supervision": [n for n in notes if not n["person"]], "messages": [n for n in notes if n["person"]],
        "discoveries": found,
    }

