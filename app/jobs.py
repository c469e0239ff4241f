"""Enqueue follow-up work from inside app code without importing the task modules."""
from __future__ import annotations


def enqueue(task_name: str, *args, countdown: float | None = None) -> None:
    from tasks.celery_app import celery_app

    celery_app.send_task(task_name, args=list(args), countdown=countdown)
