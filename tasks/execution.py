"""Thin Celery tasks for executing approved tasks: the work is in app.execution.task_runner and app.execution.orchestrator."""
from __future__ import annotations

from celery.signals import worker_ready

from app.execution import orchestrator

from app.execution import task_runner
from app.config import get_settings
from tasks.celery_app import celery_app


@celery_app.task(name="omoi.start_run")
def start_run(spec_id: int, request_key: str = "") -> str:
    return task_runner.start_run(spec_id)


@celery_app.task(name="omoi.schedule")
def schedule(spec_id: int) -> str:
    scheduled = task_runner.advance(get_settings(), spec_id)
    return f"{scheduled.state}: claimed {len(scheduled.claimed)}"


@celery_app.task(name="omoi.run_task")
def run_task(spec_id: int, task_id: str, token: str) -> str:
    return task_runner.run_task(spec_id, task_id, token)


@celery_app.task(name="omoi.execution_health")
def execution_health() -> int:
    """Re-queue tasks of dead workers and nudge every running spec (Celery beat; worker start)."""
    from app.execution import monitoring

    running = orchestrator.recover()
    try:
        monitoring.stalls()
        monitoring.orphan_sandboxes()
        monitoring.orphan_commit_clones()
    except Exception:  # noqa: BLE001 - supervision must never stop recovery
        pass
    for spec_id in running:
        schedule.delay(spec_id)
    return len(running)


@celery_app.task(name="omoi.guardian")
def guardian() -> int:
    """LLM judgement of every running task's trajectory; interventions (Celery beat)."""
    from app.execution import monitoring

    if not get_settings().guardian_enabled:
        return 0
    return len(monitoring.guardian())


@celery_app.task(name="omoi.conductor")
def conductor() -> int:
    """Duplicate or conflicting work across a spec's running tasks (Celery beat)."""
    from app.execution import monitoring

    return len(monitoring.conductor())


@worker_ready.connect
def _resume_runs(**_kwargs) -> None:
    execution_health.delay()
