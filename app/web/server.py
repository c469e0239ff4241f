"""The web process: create_app (the routes), health and metrics. Verify, record, enqueue, answer:
nothing else happens here (app/web/webhook.py, app/web/delivery_writer.py).

It loads no domain code (planning, execution, agents, sandboxes, models): it reads the database
and renders pages; the worker does the work.
"""
from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.broker import make_celery
from app.config import Settings
from app.db.session import ping
from app.observability.metrics import database_registry
from app.web.delivery_writer import DeliveryWriter
from app.web.keys import CELERY_KEY, DB_METRICS_KEY, SETTINGS_KEY, WRITER_KEY
from app.web.setup import add_setup_routes
from app.web.status_pages import add_status_routes
from app.web.webhook import json_answer, webhook


class MissingWebhookSecret(RuntimeError):
    pass


async def _writer_lifetime(app: web.Application):
    writer = app[WRITER_KEY]
    writer.start()
    yield
    await asyncio.to_thread(writer.stop)  # answers what is queued before the process ends


async def healthz(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    checks = {}
    try:
        await asyncio.to_thread(ping, settings.database_url)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["database"] = f"error: {exc.__class__.__name__}"
    try:
        await asyncio.to_thread(_ping_broker, request.app[CELERY_KEY])
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {exc.__class__.__name__}"
    ok = all(v == "ok" for v in checks.values())
    return json_answer(200 if ok else 503, status="ok" if ok else "degraded", **checks)


def _ping_broker(celery) -> None:
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


async def metrics(request: web.Request) -> web.Response:
    def _scrape() -> bytes:  # the database gauges query the database: not on the event loop
        return generate_latest() + generate_latest(request.app[DB_METRICS_KEY])

    body = await asyncio.to_thread(_scrape)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings, *, setup: bool = False) -> web.Application:
    """`setup=True` (`serve`, `web --setup`) adds the App-registration pages (app/web/setup.py)
    while no App credentials are configured."""
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise MissingWebhookSecret(
            "OMOI_WEBHOOK_SECRET is not set: refusing to accept unverifiable webhooks"
        )
    app = web.Application(client_max_size=settings.max_webhook_bytes)
    app[SETTINGS_KEY] = settings
    app[CELERY_KEY] = make_celery(settings)  # a broker client only: the web process runs no tasks
    app[WRITER_KEY] = DeliveryWriter(settings, app[CELERY_KEY])
    app.cleanup_ctx.append(_writer_lifetime)
    app.router.add_post("/webhooks/github", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app[DB_METRICS_KEY] = database_registry(settings.database_url)
    add_status_routes(app)
    if settings.sandbox_provider == "daytona":  # remote sandboxes reach the model only through this
        # lazy: the model proxy is agent code, loaded only by a web process that serves Daytona sandboxes
        from app.agent.model_proxy import add_routes as add_model_proxy

        add_model_proxy(app, settings)
    if setup and not settings.has_app_credentials():
        add_setup_routes(app, settings)
    return app
