"""Housekeeping of running work (the health loop, Celery beat; tasks/execution.py).

- `stalls`: a running spec with no progress (no task started or finished, no agent message) for
  `stall_minutes` is flagged; the tracking comment says so until progress resumes.
- `orphan_sandboxes`: local sandbox directories older than any attempt could live (agent timeout +
  verify timeout + slack) have no owner any more and are deleted; Daytona sandboxes no running task
  owns are found by label and deleted.
- `orphan_commit_clones`: omoi's own commit clones a worker that died mid-attempt left behind.
"""
from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from app.config import Settings, get_settings
from app.db.models import Spec, SpecTask
from app.db.session import session_scope
from app.execution.gitwork import private_parent
from app.observability.logs import get_logger
from app.sandbox import disposal
from app.sandbox.base import label_slug
from app.sandbox.daytona import DaytonaSandboxProvider
from app.sandbox.local import sandbox_base_dir
from app.timeutil import as_utc, utc_now

log = get_logger("omoi.monitoring")


def stalls(settings: Settings | None = None) -> list[int]:
    """Flag (or un-flag) running specs without progress; returns the specs whose state changed."""
    settings = settings or get_settings()
    now, changed = utc_now(), []
    with session_scope(settings.database_url) as s:
        for spec in s.scalars(select(Spec).where(Spec.run_state == "running")):
            tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec.id)).all()
            moments = [spec.run_started_at, spec.run_resumed_at] + [t.started_at for t in tasks] + [t.finished_at for t in tasks] \
                + [t.trajectory_at for t in tasks]
            last = max((as_utc(m) for m in moments if m is not None), default=now)
            idle = (now - last).total_seconds()
            if idle >= settings.stall_minutes * 60 and spec.stall_reported_at is None:
                spec.stall_reported_at = now
                changed.append(spec.id)
                log.warning("run_stalled", spec_id=spec.id, idle_s=round(idle))
            elif idle < settings.stall_minutes * 60 and spec.stall_reported_at is not None:
                spec.stall_reported_at = None
                changed.append(spec.id)
                log.info("run_progress_resumed", spec_id=spec.id)
        # A run that ended while stalled must not show the old notice when it is retried or resumed.
        for spec in s.scalars(select(Spec).where(Spec.run_state != "running", Spec.stall_reported_at.is_not(None))):
            spec.stall_reported_at = None
            changed.append(spec.id)
    return changed


def attempt_lifetime(settings: Settings) -> float:
    """The longest an attempt can keep its sandbox: its agent session, verify commands, and slack."""
    return settings.agent_timeout_seconds + settings.verify_timeout_seconds + 300


def running_task_labels(settings: Settings) -> set[str]:
    """The sandbox labels (as app/execution/task_runner.py gives them, slugged) of the tasks running now."""
    with session_scope(settings.database_url) as s:
        live = s.execute(select(SpecTask.spec_id, SpecTask.task_id).where(SpecTask.status == "running")).all()
    return {label_slug(f"{kind}-{spec_id}/{task_id}") for spec_id, task_id in live for kind in ("spec", "verify")}


def orphan_sandboxes(settings: Settings | None = None, base_dir: str | Path | None = None) -> list[str]:
    """Delete local sandbox directories no attempt can still own (older than an attempt can last).

    An attempt with several verify commands can outlive that bound, so the sandboxes of tasks that
    are running now (app/execution/task_runner.py labels them `spec-<spec>/<task>` and `verify-<spec>/<task>`)
    are never removed, however old."""
    settings = settings or get_settings()
    if settings.sandbox_provider == "daytona" and base_dir is None:
        return _daytona_orphans(settings)
    if settings.sandbox_provider != "local":
        return []
    base = Path(base_dir) if base_dir else sandbox_base_dir(settings)
    max_age = attempt_lifetime(settings)
    disposal.sweep(base)  # sandboxes destroyed by a process that died before removing them
    old = []
    for path in base.glob("omoi-sb-*"):
        try:
            if path.is_dir() and time.time() - path.stat().st_mtime > max_age:
                old.append(path)
        except OSError:
            continue
    if not old:
        return []
    prefixes = tuple(f"omoi-sb-{label}-" for label in running_task_labels(settings))
    removed = []
    for path in old:
        if prefixes and path.name.startswith(prefixes):
            continue  # its task is running: the attempt is still using it
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    if removed:
        log.warning("orphan_sandboxes_removed", count=len(removed))
    return removed


def orphan_commit_clones(settings: Settings | None = None, parent: Path | None = None) -> list[str]:
    """Delete omoi's own commit clones (app/execution/gitwork.py) left by a worker that died mid-attempt: older than
    twice the longest an attempt can last, so a clone still in use is never touched."""
    settings = settings or get_settings()
    max_age = 2 * attempt_lifetime(settings)
    removed = []
    disposal.sweep(parent or private_parent())  # clones cleaned up by a process that died before removing them
    for path in (parent or private_parent()).glob("omoi-commit-*"):
        try:
            if path.is_dir() and not path.is_symlink() and time.time() - path.stat().st_mtime > max_age:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(str(path))
        except OSError:
            continue
    if removed:
        log.warning("orphan_commit_clones_removed", count=len(removed))
    return removed


def _daytona_orphans(settings: Settings) -> list[str]:
    """Daytona sandboxes no running task owns (found by label), deleted; see DaytonaSandboxProvider.reap."""
    labels = running_task_labels(settings)
    try:
        return asyncio.run(DaytonaSandboxProvider(settings).reap(labels, min_age_s=attempt_lifetime(settings)))
    except Exception as exc:  # noqa: BLE001 - Daytona unreachable: the next sweep tries again
        log.warning("daytona_reap_failed", error=str(exc))
        return []
