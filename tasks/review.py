"""Thin Celery task for review rounds: the work is in app.execution.review_fix."""
from __future__ import annotations

from app.execution import review_fix
from app.db.locks import Busy
from tasks.celery_app import celery_app


@celery_app.task(name="omoi.address_review", bind=True, max_retries=None)
def address_review(self, installation_id: int, full_name: str, number: int, round_key: str) -> str:
    try:
        return review_fix.run_job(installation_id, full_name, number, round_key)
    except Busy:
        raise self.retry(countdown=2.0)
