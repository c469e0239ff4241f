"""Thin Celery tasks for executing approved tasks: the work is in app.execution (orchestrator, task_runner, supervision)."""
from __future__ import annotations

from celery.signals import worker_init, worker_ready

from app import jobs
from app.config import get_settings
from app.execution import orchestrator, run_report, supervision, task_runner, warm
from tasks.celery_app import celery_app


@worker_init.connect
def _warm(**_kwargs) -> None:
    # In the parent, before the pool forks: no task waits for the agent SDK's imports.
    try:
        warm.warm_up()
    except Exception as exc:  # noqa: BLE001 - a cold worker still works, only its first task is slower
        warm.log.warning("worker_warm_failed", error=str(exc)[:300])


@celery_app.task(name="omoi.start_run")
def start_run(spec_id: int, request_key: str = "") -> str:
    return orchestrator.start_run(spec_id)


@celery_app.task(name="omoi.schedule")
def schedule(spec_id: int) -> str:
    scheduled = orchestrator.advance(get_settings(), spec_id)
    return f"{scheduled.state}: claimed {len(scheduled.claimed)}"


@celery_app.task(name="omoi.run_task")
def run_task(spec_id: int, task_id: str, lease_token: str) -> str:
    return task_runner.run_task(spec_id, task_id, lease_token)


@celery_app.task(name="omoi.execution_health")
def execution_health() -> int:
    """Re-queue tasks of dead workers and nudge every running spec (Celery beat; worker start)."""
    running = orchestrator.recover()
    wanted = []
    try:
        wanted = run_report.publishes_wanted(get_settings())
        supervision.stalls()
        supervision.orphan_sandboxes()
        supervision.orphan_commit_clones()
    except Exception:  # noqa: BLE001 - supervision must never stop recovery
        pass
    for spec_id in sorted(set(running) | set(wanted)):  # scheduling ends in a publish, finished runs too
        jobs.schedule(spec_id=spec_id)
    return len(running)


@celery_app.task(name="omoi.guardian")
def guardian() -> int:
    """LLM judgement of every running task's trajectory; interventions (Celery beat)."""
    if not get_settings().guardian_enabled:
        return 0
    return len(supervision.guardian())


@celery_app.task(name="omoi.conductor")
def conductor() -> int:
    """Duplicate or conflicting work across a spec's running tasks (Celery beat)."""
    return len(supervision.conductor())


@worker_ready.connect
def _resume_runs(**_kwargs) -> None:
    jobs.execution_health()
