"""Thin Celery task for review rounds: the work is in app.review."""
from __future__ import annotations

from app import review
from app.locks import Busy
from tasks.celery_app import celery_app


@celery_app.task(name="omoi.address_review", bind=True, max_retries=None)
def address_review(self, installation_id: int, full_name: str, number: int, round_key: str) -> str:
    try:
        return review.run_job(installation_id, full_name, number, round_key)
    except Busy:
        raise self.retry(countdown=2.0)
