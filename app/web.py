"""The web process: verify, record, enqueue, answer. Nothing else happens here.

GitHub waits at most 10 s for an answer and considers anything else a failed delivery, so
the handler does the least that makes the delivery durable and returns 202.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from structlog.contextvars import bound_contextvars

from app.config import Settings
from app.db.models import WebhookDelivery
from app.db.session import ping, session_scope
from app.delivery_keys import issue_key
from app.events import HANDLED_EVENTS
from app.logging import get_logger
from app.metrics import ACK_SECONDS, DELIVERIES, database_registry

log = get_logger("omoi.web")
SETTINGS_KEY = web.AppKey("settings", Settings)
CELERY_KEY = web.AppKey("celery", object)
DB_METRICS_KEY = web.AppKey("db_metrics", object)


class MissingWebhookSecret(RuntimeError):
    pass


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.strip())


def _json(http_status: int, **body) -> web.Response:
    return web.json_response(body, status=http_status)


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN/Infinity; JSON (and PostgreSQL) do not


def _column_str(value, size: int = 64) -> str | None:
    """A payload value for an indexed column: only a string that fits (the payload keeps the rest)."""
    return value if isinstance(value, str) and len(value) <= size and "\x00" not in value else None


def _bigint(value) -> int | None:
    return value if type(value) is int and -(2**63) <= value < 2**63 else None  # bools are not ids


def _store_and_enqueue(settings: Settings, celery, delivery_id: str, event: str, payload: dict) -> str:
    """Runs in a thread: the database and the broker clients are synchronous.

    The row is committed as `queued` before the message is sent (one commit on the hot
    path); if sending fails it is put back to `received` for the sweep to enqueue later.
    """
    inst = payload.get("installation")
    if not isinstance(inst, dict):  # signed but odd (a list, a number): store it, never a 500
        inst = {}
    try:
        with session_scope(settings.database_url) as s:
            row = WebhookDelivery(
                delivery_id=delivery_id,
                event=event,
                action=_column_str(payload.get("action")),
                installation_id=_bigint(inst.get("id")),
                issue_key=issue_key(payload),
                payload=payload,
                status="queued",
            )
            s.add(row)
            s.flush()
            pk = row.id
    except IntegrityError:
        return "duplicate"
    try:
        celery.send_task("omoi.process_delivery", args=[pk])
    except Exception as exc:  # noqa: BLE001
        # Stored durably: the sweep enqueues it when the broker is back. Still a 202.
        log.error("enqueue_failed", error=str(exc))
        with session_scope(settings.database_url) as s:
            s.get(WebhookDelivery, pk).status = "received"
        return "stored"
    return "queued"


async def webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    settings = request.app[SETTINGS_KEY]
    event = request.headers.get("X-GitHub-Event", "")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    with bound_contextvars(delivery_id=delivery_id[:64], event=event[:64]):
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            DELIVERIES.labels("-", "too_large").inc()
            return _json(413, error=f"payload larger than {settings.max_webhook_bytes} bytes")
        secret = settings.webhook_secret.get_secret_value()
        if not verify_signature(body, request.headers.get("X-Hub-Signature-256"), secret):
            DELIVERIES.labels("-", "bad_signature").inc()
            log.warning("webhook_signature_invalid", remote=request.remote)
            return _json(401, error="invalid or missing X-Hub-Signature-256")
        if not event or not delivery_id or len(delivery_id) > 64:
            return _json(400, error="X-GitHub-Event and X-GitHub-Delivery headers are required")
        try:
            payload = json.loads(body, parse_constant=_not_json)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            DELIVERIES.labels(event, "bad_json").inc()
            return _json(400, error="body is not valid JSON")
        if not isinstance(payload, dict):
            return _json(400, error="body must be a JSON object")
        if event == "ping":
            return _json(200, status="pong")
        if event not in HANDLED_EVENTS:
            DELIVERIES.labels("other", "ignored").inc()
            return _json(202, status="ignored", reason=f"omoi does not handle {event} events")
        try:
            outcome = await asyncio.to_thread(
                _store_and_enqueue, settings, request.app[CELERY_KEY], delivery_id, event, payload
            )
        except (OperationalError, SQLAlchemyError) as exc:
            # Not stored, so not acknowledged: GitHub (or our redelivery sweep) sends it again.
            DELIVERIES.labels(event, "db_unavailable").inc()
            log.error("delivery_not_stored", error=str(exc.__class__.__name__))
            return _json(503, error="database unavailable; please redeliver")
        DELIVERIES.labels(event, outcome).inc()
        ACK_SECONDS.observe(time.perf_counter() - started)
        if outcome == "duplicate":
            return _json(200, status="duplicate")
        log.info("delivery_accepted", action=payload.get("action"), outcome=outcome)
        return _json(202, status=outcome)


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
    return _json(200 if ok else 503, status="ok" if ok else "degraded", **checks)


def _ping_broker(celery) -> None:
    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


async def metrics(request: web.Request) -> web.Response:
    def _scrape() -> bytes:  # the database gauges query the database: not on the event loop
        return generate_latest() + generate_latest(request.app[DB_METRICS_KEY])

    body = await asyncio.to_thread(_scrape)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(settings: Settings, *, setup: bool = False) -> web.Application:
    """`setup=True` (`serve`, `web --setup`) adds the App-registration pages (app/setup.py)
    while no App credentials are configured."""
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise MissingWebhookSecret(
            "OMOI_WEBHOOK_SECRET is not set: refusing to accept unverifiable webhooks"
        )
    from tasks.celery_app import make_celery  # a broker client only: the web process runs no tasks

    app = web.Application(client_max_size=settings.max_webhook_bytes)
    app[SETTINGS_KEY] = settings
    app[CELERY_KEY] = make_celery(settings)
    app.router.add_post("/webhooks/github", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app[DB_METRICS_KEY] = database_registry(settings.database_url)
    from app.status_pages import add_status_routes

    add_status_routes(app)
    if setup and not settings.has_app_credentials():
        from app.setup import add_setup_routes

        add_setup_routes(app, settings)
    return app
