"""The Celery application. Web and worker both import this; only the worker imports the tasks."""
from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init
from kombu.transport import TRANSPORT_ALIASES

from app.config import Settings, get_settings

# The embedded broker: kombu's filesystem transport, made safe against half-written messages.
TRANSPORT_ALIASES["filesystem"] = "tasks.fs_transport:Transport"


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
        include=["tasks.webhooks", "tasks.spec", "tasks.execution", "tasks.review"],
        beat_schedule={
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


celery_app = make_celery()
app = celery_app  # `celery -A tasks.celery_app` looks for `app` or `celery`


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    # Prefork children inherit the parent's pool; sharing a socket across processes corrupts it.
    from app.db.session import dispose_engines

    dispose_engines(close=False)
