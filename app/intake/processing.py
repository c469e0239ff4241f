"""Worker side of a delivery: load it from the database, verify it, route it, record the outcome.

The database row is the source of truth, not the broker message: a delivery is done only
when its row says so, and anything stored but unfinished is re-enqueued by the sweep.

A row is not a command by itself: before routing, the worker checks the row's stored body against
the X-Hub-Signature-256 the web process verified (HMAC-SHA256 with the webhook secret, again) and
routes the payload parsed from that body. Whoever can write to the database but does not hold the
webhook secret cannot make omoi act: such a row ends `failed` ("integrity check failed").

Poison deliveries: every try is counted and committed before the payload is read, so a delivery
whose processing crashes, however (an exception, the worker process killed), ends `failed` after
MAX_ATTEMPTS tries, by the next try or by the sweep, and is never queued again.
"""
from __future__ import annotations

import asyncio
import json
import traceback
from datetime import timedelta
from typing import Callable

import aiohttp
from gidgethub import sansio
from sqlalchemy import Text, cast, func, select, update

from app.config import get_settings
from app.db.locks import Busy, issue_lock
from app.db.models import WebhookDelivery
from app.db.session import session_scope
from app.events import router
from app.events.context import EventContext
from app.events.records import remember
from app.jobs import Result, is_transient
from app.observability.logs import get_logger, redact
from app.observability.metrics import EVENTS_PROCESSED
from app.timeutil import utc_now
from app.web.delivery import HANDLED_EVENTS, delivery_columns, not_json, verify_signature

log = get_logger("omoi.worker")
MAX_ATTEMPTS = 5
INTEGRITY_FAILED = "integrity check failed"


def _older_unfinished(s, delivery_pk: int, key: str) -> bool:
    """An earlier delivery about the same issue still waits: this one must wait behind it."""
    return s.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.issue_key == key, WebhookDelivery.id < delivery_pk,
        WebhookDelivery.status.in_(("received", "queued", "processing")),
        WebhookDelivery.attempts < MAX_ATTEMPTS,
    ).limit(1)).first() is not None


def verified_payload(d: WebhookDelivery, payload_text: str | None, secret: str | None) -> tuple[dict | None, str]:
    """The payload to route, parsed from the bytes GitHub signed once the row's stored signature
    checks out with the webhook secret and the row's other columns agree with them; otherwise None
    and why (for the log). The signed bytes are `raw_body`, or, when that is NULL (nearly always:
    the web process stores a UTF-8 body once), the payload column's own text (`payload_text`,
    kept exactly as written by both databases). The `event` column cannot be checked: GitHub does
    not sign headers; it must be one the web process stores."""
    if not secret:
        return None, "no_webhook_secret"
    if d.event not in HANDLED_EVENTS:
        return None, "event_not_handled"
    if not d.signature:
        return None, "no_signature"
    if d.raw_body is not None:
        signed = bytes(d.raw_body)
    elif payload_text is not None:
        signed = payload_text.encode("utf-8", "surrogatepass")
    else:
        return None, "no_signed_body"
    if not verify_signature(signed, d.signature, secret):
        return None, "bad_signature"
    try:
        payload = json.loads(signed, parse_constant=not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "not_json"
    if not isinstance(payload, dict):
        return None, "not_json"
    if d.payload != payload:  # only a stored raw_body can differ from the column; a changed column cannot verify
        return None, "payload_differs"
    columns = delivery_columns(payload)
    if (d.action, d.installation_id, d.issue_key) != (
            columns["action"], columns["installation_id"], columns["issue_key"]):
        return None, "columns_differ"
    return payload, ""


def process_delivery(delivery_pk: int) -> Result:
    """One try at a stored delivery. The attempt is counted and committed before anything reads
    its payload (`_claim`), so a delivery whose processing crashes, even by killing the worker
    process, uses up its tries: after MAX_ATTEMPTS it ends `failed` and is never queued again."""
    settings = get_settings()
    table = WebhookDelivery.__table__
    with session_scope(settings.database_url) as s:
        # the columns only: the payload is loaded once the attempt is counted
        row = s.execute(select(table.c.status, table.c.issue_key).where(table.c.id == delivery_pk)).one_or_none()
        if row is None:
            return Result("missing")
        status, key = row
        if status in _FINISHED:
            return Result("already-" + status)  # redelivered broker message: nothing twice
        if key and _older_unfinished(s, delivery_pk, key):
            return Result("waiting", retry_in=1.0)  # commands on one issue run in arrival order
    try:
        with issue_lock(key, settings.issue_lock_seconds):
            return _process_locked(settings, delivery_pk)
    except Busy:
        return Result("busy", retry_in=1.0)  # queues behind the holder; never cancels it


_FINISHED = ("done", "ignored", "failed")
GAVE_UP = f"gave_up: attempts={MAX_ATTEMPTS}"  # started that many times, never finished


def _claim(url: str, delivery_pk: int) -> tuple[str, int]:
    """Count this attempt and commit it: ("processing", its number); or the row's finished status,
    or "gave_up" once MAX_ATTEMPTS earlier attempts never finished (the row is then `failed`)."""
    table = WebhookDelivery.__table__
    with session_scope(url) as s:
        status, attempts = s.execute(select(table.c.status, table.c.attempts).where(table.c.id == delivery_pk)).one()
        if status in _FINISHED:
            return status, attempts
        if attempts >= MAX_ATTEMPTS:
            s.execute(update(table).where(table.c.id == delivery_pk).values(
                status="failed", error=GAVE_UP, finished_at=utc_now()))
            return "gave_up", attempts
        s.execute(update(table).where(table.c.id == delivery_pk).values(
            status="processing", attempts=table.c.attempts + 1))
    return "processing", attempts + 1


def _gave_up(delivery_pk: int, attempts: int) -> Result:
    log.error("delivery_gave_up", delivery_pk=delivery_pk, attempts=attempts)
    EVENTS_PROCESSED.labels("-", "gave_up").inc()
    return Result("failed")


def _integrity_failed(delivery_pk: int, delivery_id: str | None, why: str, *, mark: bool = True) -> Result:
    """A row that failed verification: `failed` (never routed, never retried), and a warning."""
    if mark:
        table = WebhookDelivery.__table__
        with session_scope() as s:  # Core: the row's payload may not even load
            s.execute(update(table).where(table.c.id == delivery_pk).values(
                status="failed", error=INTEGRITY_FAILED, finished_at=utc_now()))
    log.warning("delivery_integrity_failed", delivery_id=str(delivery_id)[:64], delivery_pk=delivery_pk, reason=why)
    EVENTS_PROCESSED.labels("-", "integrity_failed").inc()
    return Result("failed")


def _process_locked(settings, delivery_pk: int) -> Result:
    status, attempts = _claim(settings.database_url, delivery_pk)
    if status == "gave_up":
        return _gave_up(delivery_pk, attempts)
    if status != "processing":
        return Result("already-" + status)
    try:
        return _verify_and_route(settings, delivery_pk, attempts)
    except Exception as exc:  # noqa: BLE001 - outside the handlers (loading, checking, recording): counted, retried
        error = redact("".join(traceback.format_exception_only(type(exc), exc)).strip())
        log.error("delivery_crashed", delivery_pk=delivery_pk, error=error, attempt=attempts)
        EVENTS_PROCESSED.labels("-", "crashed").inc()
        if attempts < MAX_ATTEMPTS:
            _set_status(delivery_pk, "queued", error)
            return Result("retry", retry_in=min(2 ** attempts, 60))
        _set_status(delivery_pk, "failed", error)
        return Result("failed")


def _verify_and_route(settings, delivery_pk: int, attempts: int) -> Result:
    with session_scope(settings.database_url) as s:
        try:
            d = s.get(WebhookDelivery, delivery_pk)
        except (ValueError, RecursionError):  # a payload column that is not JSON (or absurdly deep): not a row omoi wrote
            d = None
        if d is not None:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            payload_text = None
            if d.raw_body is None:  # the column's text as stored, not parsed and serialised again
                payload_text = s.scalar(
                    select(cast(WebhookDelivery.payload, Text)).where(WebhookDelivery.id == delivery_pk))
            payload, why = verified_payload(d, payload_text, secret)
            if payload is None:  # never routed; not retried either: the row will not become genuine
                d.status, d.error, d.finished_at = "failed", INTEGRITY_FAILED, utc_now()
            else:
                d.started_at = utc_now()
                event_name = d.event
                remember(s, payload)
            delivery_id = d.delivery_id
    if d is None:
        with session_scope(settings.database_url) as s:
            delivery_id = s.scalar(select(WebhookDelivery.delivery_id).where(WebhookDelivery.id == delivery_pk))
        return _integrity_failed(delivery_pk, delivery_id, "payload_not_json")
    if payload is None:
        return _integrity_failed(delivery_pk, delivery_id, why, mark=False)

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
    table = WebhookDelivery.__table__
    values = {"status": status, "error": error}
    if status in ("done", "failed"):
        values["finished_at"] = utc_now()
    with session_scope() as s:  # Core: the row's payload is not loaded again
        s.execute(update(table).where(table.c.id == delivery_pk).values(**values))


def sweep_deliveries(enqueue: Callable[[int], object], older_than: timedelta | None = None) -> int:
    """Re-enqueue deliveries that were stored but never finished (lost message, killed worker), and
    end `failed` those already started MAX_ATTEMPTS times (the poison-delivery rule): never again."""
    settings = get_settings()
    cutoff = utc_now() - (older_than or timedelta(seconds=settings.delivery_stale_seconds))
    table = WebhookDelivery.__table__
    unfinished = (table.c.status.in_(("received", "queued", "processing")),
                  func.coalesce(table.c.started_at, table.c.received_at) < cutoff)  # not one running now
    with session_scope(settings.database_url) as s:
        gave_up = s.scalars(update(table).where(*unfinished, table.c.attempts >= MAX_ATTEMPTS).values(
            status="failed", error=GAVE_UP, finished_at=utc_now()).returning(table.c.id)).all()
        stale = s.scalars(select(table.c.id).where(*unfinished, table.c.attempts < MAX_ATTEMPTS)).all()
    for pk in gave_up:
        _gave_up(pk, MAX_ATTEMPTS)
    for pk in stale:
        enqueue(pk)
    if stale:
        log.info("deliveries_resumed", count=len(stale))
    return len(stale)
