"""`POST /webhooks/github`: verify the signature, store the delivery, answer.

GitHub waits at most 10 s for an answer and considers anything else a failed delivery, so the
handler does the least that makes the delivery durable (app/web/delivery_writer.py: stored, then
enqueued) and returns 202. The rules of a stored delivery are in app/web/delivery.py.
"""
from __future__ import annotations

import asyncio
import json
import re
import time

from aiohttp import web
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from app.observability.logs import get_logger
from app.observability.metrics import ACK_SECONDS, DELIVERIES
from app.web.delivery import (
    HANDLED_EVENTS,
    delivery_columns,
    not_json,
    payload_text,
    too_deep,
    verify_signature,
)
from app.web.keys import SETTINGS_KEY, WRITER_KEY

log = get_logger("omoi.web")


# GitHub's headers: an event name is a lower-case word, a delivery id a GUID. Anything else (other
# bytes, other lengths) is refused before it can reach a log line, a metric label or the database.
EVENT_NAME = re.compile(r"[a-z0-9_]{1,64}")
DELIVERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def json_answer(http_status: int, **body) -> web.Response:
    return web.json_response(body, status=http_status)


def _label(event: str) -> str:
    """A metric label from a fixed set: the events omoi handles, else "other" (no unbounded series)."""
    return event if event in HANDLED_EVENTS else "other"


_COUNTERS: dict = {}


def _count(label: str, outcome: str) -> None:
    """DELIVERIES[label, outcome] += 1; the labelled child looked up once (labels() costs more than inc())."""
    counter = _COUNTERS.get((label, outcome))
    if counter is None:
        counter = _COUNTERS[(label, outcome)] = DELIVERIES.labels(label, outcome)
    counter.inc()


def _utf8_text(body: bytes) -> str | None:
    """The body as text when it is plain UTF-8 JSON text (what GitHub sends); None otherwise (a
    BOM, UTF-16/32, invalid UTF-8), for json.loads to detect and payload_text to re-serialise."""
    # "{" or "[" then no NUL: no BOM, not UTF-16/32 (json.detect_encoding's own test)
    if body[:1] in (b"{", b"[") and body[1:2] != b"\x00":
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _ids(delivery_id: str) -> dict:
    # passed per line rather than bound as contextvars for the request: cheaper on the hot path
    return {"delivery_id": delivery_id[:64]}


# the answers of the hot path, serialised once
_DUPLICATE = json.dumps({"status": "duplicate"})
_OUTCOME_BODIES = {o: json.dumps({"status": o}) for o in ("queued", "stored")}


def _closing(response: web.Response) -> web.Response:
    """An answer given before the body was read: the connection cannot be reused, so it is closed."""
    response.force_close()
    return response


def _too_large(settings) -> web.Response:
    _count("-", "too_large")
    return _closing(json_answer(413, error=f"payload larger than {settings.max_webhook_bytes} bytes"))


def _answer_body(http_status: int, body: str) -> web.Response:
    return web.Response(text=body, status=http_status, content_type="application/json")


async def webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    settings = request.app[SETTINGS_KEY]
    event = request.headers.get("X-GitHub-Event", "")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    if (request.content_length or 0) > settings.max_webhook_bytes:  # refused from the header, unread
        return _too_large(settings)
    try:
        if request.content.is_eof():  # the whole body came with the headers (nearly always): no timer
            body = await request.read()
        else:
            async with asyncio.timeout(settings.webhook_body_timeout_seconds):
                body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # chunked, or a Content-Length that understated the body
        return _too_large(settings)
    except TimeoutError:
        _count("-", "body_timeout")
        log.info("webhook_body_timeout", remote=request.remote)
        return _closing(json_answer(408, error="request body not received in time"))
    except (ConnectionError, asyncio.IncompleteReadError):  # the sender hung up mid-body: nothing to answer
        _count("-", "hung_up")
        log.info("webhook_sender_hung_up", remote=request.remote)
        return _closing(json_answer(400, error="connection lost before the body was complete"))
    secret = settings.webhook_secret.get_secret_value()
    signature = request.headers.get("X-Hub-Signature-256")
    if not verify_signature(body, signature, secret):
        _count("-", "bad_signature")
        log.warning("webhook_signature_invalid", remote=request.remote, **_ids(delivery_id))
        return json_answer(401, error="invalid or missing X-Hub-Signature-256")
    if not EVENT_NAME.fullmatch(event) or not DELIVERY_ID.fullmatch(delivery_id):
        _count("-", "bad_headers")
        return json_answer(400, error="X-GitHub-Event (a lower-case event name) and X-GitHub-Delivery "
                                      "(a GUID) headers are required")
    try:
        # decoded once: parsed, and (plain UTF-8, nearly always) stored as this very text
        text = _utf8_text(body)
        payload = json.loads(body if text is None else text, parse_constant=not_json)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        _count(_label(event), "bad_json")
        return json_answer(400, error="body is not valid JSON")
    if not isinstance(payload, dict):
        return json_answer(400, error="body must be a JSON object")
    if too_deep(body, payload):  # parsed here, it would still blow the worker's deeper stack
        _count(_label(event), "bad_json")
        return json_answer(400, error="body is nested deeper than any GitHub payload")
    if event == "ping":
        return json_answer(200, status="pong")
    if event not in HANDLED_EVENTS:
        _count("other", "ignored")
        return json_answer(202, status="ignored", reason=f"omoi does not handle {event} events")
    columns = delivery_columns(payload)
    if columns["installation_id"] is None:
        # An App's deliveries always name the installation; without one there is nobody to act as.
        _count(event, "ignored")
        return json_answer(202, status="ignored", reason="the delivery names no installation")
    verbatim = text is not None
    if not verbatim:  # not plain UTF-8 starting with a bracket: payload_text decides (and may re-serialise)
        text, verbatim = payload_text(body, payload)
    row = {
        "delivery_id": delivery_id,
        "event": event,
        **columns,
        "payload": text,
        "status": "queued",
        # What the worker verifies again before routing (app/intake/processing.py): the signature and the
        # bytes signed. Those are the payload column's own text for nearly every delivery (both
        # databases keep a JSON text exactly as given), so the body is not stored twice.
        "raw_body": None if verbatim else body,
        "signature": signature.strip(),
    }
    try:
        outcome = await request.app[WRITER_KEY].store(row)
    except (OperationalError, SQLAlchemyError) as exc:
        # Not stored, so not acknowledged: GitHub (or our redelivery sweep) sends it again.
        _count(event, "db_unavailable")
        log.error("delivery_not_stored", error=str(exc.__class__.__name__), **_ids(delivery_id))
        return json_answer(503, error="database unavailable; please redeliver")
    _count(event, outcome)
    ACK_SECONDS.observe(time.perf_counter() - started)
    if outcome == "duplicate":
        return _answer_body(200, _DUPLICATE)
    log.info("delivery_accepted", action=payload.get("action"), outcome=outcome, **_ids(delivery_id))
    return _answer_body(202, _OUTCOME_BODIES.get(outcome) or json.dumps({"status": outcome}))
