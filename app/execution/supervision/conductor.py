"""The conductor (Celery beat, every `conductor_interval_seconds`): no two running tasks doing one job.

Two running tasks of one spec doing the same work (similar intent, or writing the same files) -> the
later one is paused: back to pending, depending on the other, so it starts again once the first
finished. The pause is an intervention (a row in `interventions`).
"""
from __future__ import annotations

import json
import re

from sqlalchemy import select

from app.config import Settings, get_settings
from app.db.models import Intervention, Spec, SpecTask
from app.db.session import session_scope
from app.execution.discovery import similar
from app.execution.leases import update
from app.execution.task_ids import task_number
from app.observability.logs import get_logger
from app.text.rendering import reason

log = get_logger("omoi.monitoring")


_PATH_FIELD = re.compile(r'"(?:file_path|notebook_path)":\s*"((?:[^"\\]|\\.)*)"')
# The agent's work dir: `/workspace` in a local jail (app/sandbox/jail.py); an unconfined local sandbox's
# <base>/omoi-sb-<label>-XXXX/work.
_LOCAL_WORKDIR = re.compile(r"^(?:/workspace/|.*/omoi-sb-[^/]+/work/)")


def _written(trajectory: list[dict]) -> set[str]:
    """The files a trajectory's Write/Edit calls wrote, relative to the sandbox's work dir.

    A tool call's input is kept as JSON clipped to a few KB (app/agent/transcript.py), so a Write of a larger
    file is not valid JSON any more: its path (the first field) is read from the text instead."""
    paths = set()
    for e in trajectory:
        if e.get("type") != "tool_use" or e.get("name") not in ("Write", "Edit", "MultiEdit", "NotebookEdit"):
            continue
        m = _PATH_FIELD.search(str(e.get("input") or ""))
        if not m:
            continue
        try:
            path = json.loads(f'"{m.group(1)}"')
        except ValueError:
            continue
        # Local sandboxes differ per attempt (the work dir's parent is unique); Daytona's are all alike.
        paths.add(_LOCAL_WORKDIR.sub("", path))
    return paths


def conductor(settings: Settings | None = None) -> list[dict]:
    """Pause the later of two running tasks of a spec that duplicate or conflict with each other."""
    settings = settings or get_settings()
    paused = []
    with session_scope(settings.database_url) as s:
        running = s.scalars(select(SpecTask).join(Spec, Spec.id == SpecTask.spec_id).where(
            SpecTask.status == "running", Spec.run_state == "running")).all()
        by_spec: dict[int, list[SpecTask]] = {}
        for t in running:
            by_spec.setdefault(t.spec_id, []).append(t)
        for spec_id, tasks in by_spec.items():
            tasks.sort(key=lambda t: task_number(t.task_id))
            stopped: set[str] = set()
            for i, a in enumerate(tasks):
                for b in tasks[i + 1:]:
                    if a.task_id in stopped or b.task_id in stopped:
                        continue
                    overlap = (set(a.files or []) & set(b.files or [])) | (_written(a.trajectory or [])
                                                                           & _written(b.trajectory or []))
                    same = similar(a.title, b.title, settings.discovery_similarity)
                    if not overlap and not same:
                        continue
                    why = (reason("supervision/duplicates", task=b.task_id, other=a.task_id) if same else
                           reason("supervision/both_write", task=b.task_id, other=a.task_id, files=sorted(overlap)[:3]))
                    paused_why = reason("task/conductor_paused", cause=why)
                    won = s.execute(update(SpecTask).where(
                        SpecTask.id == b.id, SpecTask.status == "running", SpecTask.lease_owner == b.lease_owner,
                    ).values(status="pending", lease_owner=None, lease_expires_at=None, heartbeat_at=None,
                             attempts=max(0, b.attempts - 1), depends_on=sorted(set(b.depends_on or []) | {a.task_id}),
                             error=paused_why.code, error_params=paused_why.json_params())).rowcount
                    if won == 1:
                        stopped.add(b.task_id)
                        noted = reason("supervision/runs_after", cause=why, after=a.task_id)
                        s.add(Intervention(spec_id=spec_id, task_id=b.task_id, attempt=b.attempts, source="conductor",
                                           verdict="duplicate", action="pause", reason=noted.code,
                                           reason_params=noted.json_params()))
                        paused.append({"spec_id": spec_id, "task": b.task_id, "after": a.task_id})
    for p in paused:
        log.warning("conductor_paused", **p)
    return paused
