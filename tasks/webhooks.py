"""Thin Celery tasks for webhook deliveries: all the work is in app.intake."""
from __future__ import annotations

from celery.signals import worker_ready

from app import jobs
from app.config import get_settings
from app.intake import processing
from app.intake.redelivery import sweep_github_deliveries as sweep_github
from tasks.celery_app import celery_app


@celery_app.task(name="omoi.process_delivery", bind=True, max_retries=None)
def process_delivery(self, delivery_pk: int) -> str:
    result = processing.process_delivery(delivery_pk)
    if result.retry_in is not None:
        raise self.retry(countdown=result.retry_in)
    return result.outcome


@celery_app.task(name="omoi.sweep_deliveries")
def sweep_deliveries() -> int:
    return processing.sweep_deliveries(enqueue=lambda pk: jobs.process_delivery(delivery_pk=pk))


@celery_app.task(name="omoi.sweep_github_deliveries")
def sweep_github_deliveries() -> dict:
    """Ask GitHub to redeliver failed deliveries omoi never stored (app/intake/redelivery.py; never raises)."""
    return sweep_github(get_settings()).as_dict()


@worker_ready.connect
def _resume_on_start(**_kwargs) -> None:
    # A worker that starts after a crash picks up deliveries stored but never finished.
    jobs.sweep_deliveries()
