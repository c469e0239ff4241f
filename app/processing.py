"""Worker side of a delivery: load it from the database, route it, record the outcome.

The database row is the source of truth, not the broker message: a delivery is done only
when its row says so, and anything stored but unfinished is re-enqueued by the sweep.
"""
from __future__ import annotations

import asyncio
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import aiohttp
import gidgethub
from gidgethub import sansio
from sqlalchemy import select

from app.config import get_settings
from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.events import router
from app.events.context import EventContext
from app.events.records import remember
from app.delivery_keys import issue_key
from app.locks import Busy, issue_lock
from app.logging import get_logger, redact
from app.metrics import EVENTS_PROCESSED
from app.timeutil import utc_now

log = get_logger("omoi.worker")
MAX_ATTEMPTS = 5


@dataclass
class Result:
    outcome: str
    retry_in: float | None = None


def _older_unfinished(s, delivery_pk: int, key: str) -> bool:
    """An earlier delivery about the same issue still waits: this one must wait behind it."""
    return s.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.issue_key == key, WebhookDelivery.id < delivery_pk,
        WebhookDelivery.status.in_(("received", "queued", "processing")),
        WebhookDelivery.attempts < MAX_ATTEMPTS,
    ).limit(1)).first() is not None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, gidgethub.GitHubBroken)):
        return True
    return isinstance(exc, gidgethub.HTTPException) and exc.status_code in (429, 500, 502, 503, 504)


def process_delivery(delivery_pk: int) -> Result:
    settings = get_settings()
    with session_scope(settings.database_url) as s:
        d = s.get(WebhookDelivery, delivery_pk)
        if d is None:
            return Result("missing")
        if d.status in ("done", "ignored", "failed"):
            return Result("already-" + d.status)  # redelivered broker message: nothing twice
        key = d.issue_key or issue_key(d.payload)
        if key and _older_unfinished(s, delivery_pk, key):
            return Result("waiting", retry_in=1.0)  # commands on one issue run in arrival order
    try:
        with issue_lock(key, settings.issue_lock_seconds):
            return _process_locked(settings, delivery_pk)
    except Busy:
        return Result("busy", retry_in=1.0)  # queues behind the holder; never cancels it


def _process_locked(settings, delivery_pk: int) -> Result:
    with session_scope(settings.database_url) as s:
        d = s.get(WebhookDelivery, delivery_pk)
        if d.status in ("done", "ignored", "failed"):
            return Result("already-" + d.status)
        d.status, d.attempts, d.started_at = "processing", d.attempts + 1, utc_now()
        event_name, payload, delivery_id, attempts = d.event, d.payload, d.delivery_id, d.attempts
        remember(s, payload)

    bound = log.bind(delivery_id=delivery_id, event=event_name, action=payload.get("action"))
    inst = payload.get("installation")
    installation_id = inst.get("id") if isinstance(inst, dict) else None  # signed but malformed: no crash
    try:
        asyncio.run(_dispatch(event_name, payload, delivery_id, installation_id, bound))
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, then retried or ended
        error = redact("".join(traceback.format_exception_only(type(exc), exc)).strip())
        if is_transient(exc) and attempts < MAX_ATTEMPTS:
            bound.warning("delivery_retry", error=error, attempt=attempts)
            _set_status(delivery_pk, "queued", error)
            EVENTS_PROCESSED.labels(event_name, "retry").inc()
            return Result("retry", retry_in=min(2 ** attempts, 60))
        bound.error("delivery_failed", error=error, attempt=attempts)
        _set_status(delivery_pk, "failed", error)
        EVENTS_PROCESSED.labels(event_name, "failed").inc()
        return Result("failed")
    _set_status(delivery_pk, "done")
    EVENTS_PROCESSED.labels(event_name, "done").inc()
    return Result("done")


async def _dispatch(event_name: str, payload: dict, delivery_id: str, installation_id, bound) -> None:
    settings = get_settings()
    event = sansio.Event(payload, event=event_name, delivery_id=delivery_id)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        ctx = EventContext(settings, session, delivery_id, installation_id, bound)
        await router.dispatch(event, ctx)


def _set_status(delivery_pk: int, status: str, error: str | None = None) -> None:
    with session_scope() as s:
        d = s.get(WebhookDelivery, delivery_pk)
        d.status, d.error = status, error
        if status in ("done", "failed"):
            d.finished_at = utc_now()


def sweep_deliveries(enqueue: Callable[[int], object], older_than: timedelta | None = None) -> int:
    """Re-enqueue deliveries that were stored but never finished (lost message, killed worker)."""
    settings = get_settings()
    cutoff = utc_now() - (older_than or timedelta(seconds=settings.delivery_stale_seconds))
    with session_scope(settings.database_url) as s:
        stale = s.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.status.in_(("received", "queued", "processing")),
                WebhookDelivery.received_at < cutoff,
                WebhookDelivery.attempts < MAX_ATTEMPTS,
            )
        ).all()
    for pk in stale:
        enqueue(pk)
    if stale:
        log.info("deliveries_resumed", count=len(stale))
    return len(stale)
