"""The worker's Celery application: the one app/broker builds, with the task modules registered.

`python -m app worker` / `beat` and `celery -A tasks.celery_app ...` load this module; the web
process and app code never do (they build or share the application through app/broker).
"""
from __future__ import annotations

from celery.signals import worker_process_init

from app.broker import make_celery, shared_celery
from app.db.session import dispose_engines

__all__ = ["app", "celery_app", "make_celery"]

celery_app = shared_celery()  # the same application app/jobs.py enqueues through in this process
celery_app.conf.update(include=["tasks.webhooks", "tasks.spec", "tasks.execution", "tasks.review"])
app = celery_app  # `celery -A tasks.celery_app` looks for `app` or `celery`


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # Prefork children inherit the parent's pool; sharing a socket across processes corrupts it.
    dispose_engines(close=False)
