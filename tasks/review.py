"""Thin Celery tasks for review rounds and CI fixes: the work is in app.execution.review_fix and ci_fix."""
from __future__ import annotations

from app.execution import ci_fix, review_fix
from app.db.locks import Busy
from tasks.celery_app import celery_app


@celery_app.task(name="omoi.address_review", bind=True, max_retries=None)
def address_review(self, installation_id: int, full_name: str, number: int, round_key: str,
                   notes: list | None = None) -> str:
    try:
        return review_fix.run_job(installation_id, full_name, number, round_key, notes)
    except Busy:
        raise self.retry(countdown=2.0)


@celery_app.task(name="omoi.ci_result", bind=True, max_retries=None)
def ci_result(self, spec_id: int, head_sha: str) -> str:
    try:
        return ci_fix.run_job(spec_id, head_sha)
    except Busy:
        raise self.retry(countdown=2.0)
