"""The Celery application: which broker, how messages are acknowledged, the beat schedule.

Every process builds it from here: the web process as a broker client only (app/web/server.py),
app code to enqueue jobs (app/jobs.py), the worker and beat through tasks/celery_app.py, which
adds the task modules. Nothing here imports a task.
"""
from __future__ import annotations

import threading

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from app.config import Settings, get_settings

# The embedded broker: kombu's filesystem transport, made safe against half-written messages.
TRANSPORT_ALIASES["filesystem"] = "app.broker.fs_transport:Transport"
# Redis: kombu's transport, with one client object per channel (app/broker/redis_transport.py).
TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "app.broker.redis_transport:Transport"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("omoi", broker=settings.resolved_broker_url())
    app.conf.update(
        broker_transport_options=settings.broker_transport_options(),
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        # A task is acknowledged only after it ran, so a killed worker's task is redelivered
        # (brokers that support it); the database sweep covers the ones that do not.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue_name,
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        beat_schedule={  # the periodic jobs (tasks/*.py)
            "sweep-deliveries": {"task": "omoi.sweep_deliveries", "schedule": 60.0},
            "execution-health": {"task": "omoi.execution_health",
                                 "schedule": float(settings.health_interval_seconds)},
            "guardian": {"task": "omoi.guardian", "schedule": float(settings.guardian_interval_seconds)},
            "conductor": {"task": "omoi.conductor", "schedule": float(settings.conductor_interval_seconds)},
        },
    )
    if settings.github_redelivery_interval_seconds > 0:
        # Deliveries GitHub could not hand over (omoi down, 503): app/intake/redelivery.py.
        app.conf.beat_schedule["sweep-github-deliveries"] = {
            "task": "omoi.sweep_github_deliveries", "schedule": float(settings.github_redelivery_interval_seconds)}
    return app


_shared: Celery | None = None
_shared_lock = threading.Lock()


def shared_celery() -> Celery:
    """This process's Celery application, built from the settings on first use: the one a worker
    runs (tasks/celery_app.py) and the one app code enqueues through (app/jobs.py)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = make_celery()
    return _shared
