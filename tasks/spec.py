"""Thin Celery task for spec phases: the work is in app.planning.runner."""
from __future__ import annotations

from app.planning import runner
from tasks.celery_app import celery_app


@celery_app.task(name="omoi.run_stage", bind=True, max_retries=None)
def run_stage(self, spec_id: int, stage: str, feedback: str | None = None, request_key: str = "") -> str:
    result = runner.run_stage(spec_id, stage, feedback, request_key, attempt=self.request.retries)
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in)
    return result.outcome
