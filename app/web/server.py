"""The web process: verify, record, enqueue, answer. Nothing else happens here.

GitHub waits at most 10 s for an answer and considers anything else a failed delivery, so
the handler does the least that makes the delivery durable and returns 202.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

from aiohttp import web
from kombu.utils.uuid import uuid as _task_id
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import JSON, bindparam, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from app.config import Settings
from app.db.models import WebhookDelivery
from app.db.session import get_engine, ping
from app.intake.delivery_keys import issue_key
from app.events import HANDLED_EVENTS
from app.observability.logs import get_logger
from app.timeutil import utc_now
from app.observability.metrics import ACK_SECONDS, DELIVERIES, database_registry

log = get_logger("omoi.web")
SETTINGS_KEY = web.AppKey("settings", Settings)
CELERY_KEY = web.AppKey("celery", object)
DB_METRICS_KEY = web.AppKey("db_metrics", object)
WRITER_KEY = web.AppKey("delivery_writer", object)


class MissingWebhookSecret(RuntimeError):
    pass


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.strip())


def _json(http_status: int, **body) -> web.Response:
    return web.json_response(body, status=http_status)


def _ids(delivery_id: str) -> dict:
    # passed per line rather than bound as contextvars for the request: cheaper on the hot path
    return {"delivery_id": delivery_id[:64]}


# the answers of the hot path, serialised once
_DUPLICATE = json.dumps({"status": "duplicate"})
_OUTCOME_BODIES = {o: json.dumps({"status": o}) for o in ("queued", "stored")}


def _answer_body(http_status: int, body: str) -> web.Response:
    return web.Response(text=body, status=http_status, content_type="application/json")


def _not_json(name: str):
    raise ValueError(f"{name} is not JSON")  # Python accepts NaN/Infinity; JSON (and PostgreSQL) do not


def _column_str(value, size: int = 64) -> str | None:
    """A payload value for an indexed column: only a string that fits (the payload keeps the rest)."""
    return value if isinstance(value, str) and len(value) <= size and "\x00" not in value else None


def _bigint(value) -> int | None:
    return value if type(value) is int and -(2**63) <= value < 2**63 else None  # bools are not ids


class _PayloadText(TypeDecorator):
    """The payload column, bound from JSON text the handler already validated (not re-serialised)."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect):  # noqa: ANN001 - the value is JSON text already
        return None


def _payload_text(body: bytes, payload: dict) -> tuple[str, bool]:
    """The stored payload, and whether it is the signed body itself: it is when the body is plain
    UTF-8 JSON (it parsed, so it is valid JSON without NaN/Infinity); otherwise (UTF-16/32, a BOM,
    lone surrogates) it is the payload re-serialised with escapes, which every database accepts."""
    if json.detect_encoding(body) == "utf-8":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if not text.startswith("\ufeff"):
                return text, True
    return json.dumps(payload), False


def delivery_columns(payload: dict) -> dict:
    """The columns derived from a payload, as the web process stores them (the worker checks a
    row's against its verified body with this same function)."""
    inst = payload.get("installation")
    if not isinstance(inst, dict):  # signed but odd (a list, a number): store it, never a 500
        inst = {}
    return {
        "action": _column_str(payload.get("action")),
        "installation_id": _bigint(inst.get("id")),
        "issue_key": issue_key(payload),  # commands on one issue are processed in arrival order
    }


# the columns a delivery row carries (the handler builds them), and all the table's columns
_ROW_COLUMNS = ("delivery_id", "event", "action", "installation_id", "issue_key", "payload", "status",
                "raw_body", "signature")
_PG_COLUMNS = {"id", *_ROW_COLUMNS, "attempts", "error", "received_at", "started_at", "finished_at"}


class _Pending:
    __slots__ = ("row", "future", "loop")

    def __init__(self, row: dict, future: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        self.row, self.future, self.loop = row, future, loop


class DeliveryWriter:
    """Stores deliveries in batches from one thread (group commit) and then enqueues them.

    Requests hand their row to the writer and wait. The writer takes every row waiting, inserts
    them in one transaction (`ON CONFLICT (delivery_id) DO NOTHING`: a delivery id already stored
    is a duplicate, exactly once) and commits; then it publishes one task per new row (through one
    pooled producer, pipelined where the broker can) and answers every request of the batch. Under
    light load a batch is one row; under heavy load one commit and one broker round trip serve many.

    A row is committed as `queued` before its message is sent; if sending fails the rows are put
    back to `received` for the sweep (app/intake/processing.py) to enqueue later, and still answered 202.
    Nothing is answered 2xx before its commit; a failed commit answers every request of the batch
    with the error (503 upstream), so GitHub redelivers.
    """

    MAX_BATCH = 200
    PUBLISH_THREADS = 4  # each with its own pooled broker connection

    def __init__(self, settings: Settings, celery) -> None:
        self.settings = settings
        self.celery = celery
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stmt = None
        self._pg_stmt = None
        self._publishers: ThreadPoolExecutor | None = None

    # -- the event-loop side

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                if self._publishers is None:
                    self._publishers = ThreadPoolExecutor(self.PUBLISH_THREADS, thread_name_prefix="omoi-publish")
                self._thread = threading.Thread(target=self._run, name="omoi-delivery-writer", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Finish what is queued, then end the thread (blocking: call it from a thread)."""
        with self._lock:
            thread, self._thread = self._thread, None
            publishers, self._publishers = self._publishers, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)
        if publishers is not None:
            publishers.shutdown(wait=True)  # the last batches are published and answered

    async def store(self, row: dict) -> str:
        """`queued`, `stored` (broker down) or `duplicate`; raises SQLAlchemyError if not stored."""
        if self._thread is None:
            self.start()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Pending(row, future, loop))
        return await future

    # -- the writer thread

    def _run(self) -> None:
        get = self._queue.get
        get_nowait = self._queue.get_nowait
        while True:
            first = get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self.MAX_BATCH:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._write(batch)
            except BaseException as exc:  # noqa: BLE001 - every waiting request gets an answer
                if len(batch) > 1 and not isinstance(exc, OperationalError):
                    # one row the database refuses must not fail the others: one at a time
                    for pending in batch:
                        try:
                            self._write([pending])
                        except BaseException as one:  # noqa: BLE001
                            _answer([pending], [one])
                else:
                    _answer(batch, [exc] * len(batch))
            if stopping:
                return

    def _insert_statement(self, engine):
        if self._stmt is None:
            table = WebhookDelivery.__table__
            dialect_insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
            self._stmt = (
                dialect_insert(table)
                .values(payload=bindparam("payload", type_=_PayloadText()))
                .on_conflict_do_nothing(index_elements=[table.c.delivery_id])
                .returning(table.c.id, table.c.delivery_id)
            )
        return self._stmt

    def _pg_insert_statement(self):
        """PostgreSQL: the batch as one array per column, `unnest`ed: the same statement text for
        any batch size (psycopg parses a multi-row VALUES statement of every new size again, and
        that was a sixth of the web process's CPU), rows numbered in batch order."""
        if self._pg_stmt is None:
            table = WebhookDelivery.__table__
            if set(table.c.keys()) != _PG_COLUMNS:  # the schema moved on: the generic statement
                self._pg_stmt = False
            else:
                self._pg_stmt = text(
                    f"INSERT INTO {table.name} (delivery_id, event, action, installation_id, issue_key, payload,"
                    " status, raw_body, signature, attempts, received_at)"
                    " SELECT t.delivery_id, t.event, t.action, t.installation_id, t.issue_key,"
                    " CAST(t.payload AS json), t.status, t.raw_body, t.signature, 0, :received_at"
                    " FROM unnest(CAST(:delivery_id AS varchar[]), CAST(:event AS varchar[]),"
                    " CAST(:action AS varchar[]), CAST(:installation_id AS bigint[]), CAST(:issue_key AS varchar[]),"
                    " CAST(:payload AS text[]), CAST(:status AS varchar[]), CAST(:raw_body AS bytea[]),"
                    " CAST(:signature AS varchar[]))"
                    " WITH ORDINALITY AS t(delivery_id, event, action, installation_id, issue_key, payload, status,"
                    " raw_body, signature, n)"
                    " ORDER BY t.n"
                    " ON CONFLICT (delivery_id) DO NOTHING"
                    " RETURNING id, delivery_id"
                )
        return self._pg_stmt

    def _insert(self, conn, engine, rows: list[dict]):
        if engine.dialect.name == "postgresql" and self._pg_insert_statement() is not False:
            params = {name: [row[name] for row in rows] for name in _ROW_COLUMNS}
            params["received_at"] = utc_now()
            return conn.execute(self._pg_stmt, params)
        return conn.execute(self._insert_statement(engine), rows)

    def _write(self, batch: list[_Pending]) -> None:
        """Commit the batch, then hand it to a publisher thread and take the next batch: the
        broker's latency (a file per message for the embedded broker) overlaps the next commit."""
        engine = get_engine(self.settings.database_url)
        rows = [p.row for p in batch]
        with engine.begin() as conn:  # one transaction, one commit for the whole batch
            stored = dict((d, pk) for pk, d in self._insert(conn, engine, rows))
        outcomes: list = []
        pks: list[int] = []
        for row in rows:
            pk = stored.pop(row["delivery_id"], None)  # pop: the same id twice in a batch is a duplicate
            outcomes.append("duplicate" if pk is None else "queued")
            if pk is not None:
                pks.append(pk)
        if not pks:
            _answer(batch, outcomes)
            return
        if self._queue.empty():  # nothing waiting to be committed: no hand-off, no thread switch
            self._publish(engine, batch, outcomes, pks)
        else:
            self._publishers.submit(self._publish, engine, batch, outcomes, pks)

    def _publish(self, engine, batch: list[_Pending], outcomes: list, pks: list[int]) -> None:
        try:
            if not self._enqueue(pks):
                self._put_back(engine, pks)
                outcomes = ["stored" if o == "queued" else o for o in outcomes]
        finally:
            _answer(batch, outcomes)  # committed: 202 whatever happened to the message

    def _enqueue(self, pks: list[int]) -> bool:
        celery = self.celery
        try:
            with celery.producer_or_acquire() as producer:  # pooled: no new broker connection
                batch = producer.batch() if hasattr(producer, "batch") else nullcontext()
                with batch:  # Redis: one pipelined round trip for the whole batch
                    # Celery builds the first message (routing, headers, signals; it declares the
                    # queue, once per connection, cached by kombu); the rest are that message with
                    # their own task id and argument, published by kombu directly: Celery's
                    # per-message work (options, routing, argsrepr, AsyncResult) was most of the
                    # publish CPU, and it is the same for every message of the batch.
                    first = _CapturingProducer(producer)
                    celery.send_task(PROCESS_DELIVERY, args=[pks[0]], producer=first)
                    if len(pks) > 1 and _clonable(first.sent):
                        _publish_like(producer, first.sent, pks[1:])
                    else:  # Celery did not publish through `producer.publish`: it builds every one
                        for pk in pks[1:]:
                            celery.send_task(PROCESS_DELIVERY, args=[pk], producer=producer, declare=[])
        except Exception as exc:  # noqa: BLE001
            # Stored durably: the sweep enqueues them when the broker is back. Still 202.
            log.error("enqueue_failed", error=str(exc), deliveries=len(pks))
            return False
        return True

    def _put_back(self, engine, pks: list[int]) -> None:
        table = WebhookDelivery.__table__
        try:
            with engine.begin() as conn:  # only rows no worker has picked up meanwhile
                conn.execute(
                    update(table)
                    .where(table.c.id.in_(pks), table.c.status == "queued")
                    .values(status="received")
                )
        except Exception as exc:  # noqa: BLE001 - `queued` rows are swept too, only later
            log.error("delivery_put_back_failed", error=str(exc.__class__.__name__), deliveries=len(pks))


PROCESS_DELIVERY = "omoi.process_delivery"


class _CapturingProducer:
    """The pooled producer, recording what Celery publishes through it (one message)."""

    __slots__ = ("_producer", "sent")

    def __init__(self, producer) -> None:
        self._producer, self.sent = producer, None

    def __getattr__(self, name: str):
        return getattr(self._producer, name)

    def publish(self, body, **kwargs):
        self.sent = (body, kwargs)
        return self._producer.publish(body, **kwargs)


def _clonable(sent: tuple | None) -> bool:
    """A task message (protocol 2: an (args, kwargs, embed) body, the task id in the headers)."""
    if sent is None:
        return False
    body, kwargs = sent
    headers = kwargs.get("headers")
    return (isinstance(body, tuple) and len(body) == 3 and isinstance(headers, dict)
            and headers.get("task") == PROCESS_DELIVERY and isinstance(headers.get("id"), str))


def _publish_like(producer, sent: tuple, pks: list[int]) -> None:
    """One `omoi.process_delivery` message per pk, each the message Celery built for the batch's
    first pk (`sent`: the body and publish arguments) with its own task id and argument."""
    body, kwargs = sent
    _args, task_kwargs, embed = body
    headers = kwargs["headers"]
    first_id = headers["id"]
    same_root = headers.get("root_id") == first_id
    same_correlation = kwargs.get("correlation_id") == first_id
    kwargs = dict(kwargs, declare=[])  # declared with the first message
    publish = producer.publish
    for pk in pks:
        task_id = _task_id()
        h = dict(headers, id=task_id, argsrepr=repr([pk]))
        if same_root:
            h["root_id"] = task_id
        kw = dict(kwargs, headers=h)
        if same_correlation:
            kw["correlation_id"] = task_id
        publish(([pk], task_kwargs, embed), **kw)


def _answer(batch: list[_Pending], outcomes: list) -> None:
    by_loop: dict = {}
    for pending, outcome in zip(batch, outcomes):
        by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, answers)  # one wake-up per batch
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _resolve(answers: list) -> None:
    for future, outcome in answers:
        if future.done():  # the request was cancelled (client went away)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


async def webhook(request: web.Request) -> web.Response:
    started = time.perf_counter()
    settings = request.app[SETTINGS_KEY]
    event = request.headers.get("X-GitHub-Event", "")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        DELIVERIES.labels("-", "too_large").inc()
        return _json(413, error=f"payload larger than {settings.max_webhook_bytes} bytes")
    secret = settings.webhook_secret.get_secret_value()
    signature = request.headers.get("X-Hub-Signature-256")
    if not verify_signature(body, signature, secret):
        DELIVERIES.labels("-", "bad_signature").inc()
        log.warning("webhook_signature_invalid", remote=request.remote, **_ids(delivery_id))
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
    payload_text, verbatim = _payload_text(body, payload)
    row = {
        "delivery_id": delivery_id,
        "event": event,
        **delivery_columns(payload),
        "payload": payload_text,
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
        DELIVERIES.labels(event, "db_unavailable").inc()
        log.error("delivery_not_stored", error=str(exc.__class__.__name__), **_ids(delivery_id))
        return _json(503, error="database unavailable; please redeliver")
    DELIVERIES.labels(event, outcome).inc()
    ACK_SECONDS.observe(time.perf_counter() - started)
    if outcome == "duplicate":
        return _answer_body(200, _DUPLICATE)
    log.info("delivery_accepted", action=payload.get("action"), outcome=outcome, **_ids(delivery_id))
    return _answer_body(202, _OUTCOME_BODIES.get(outcome) or json.dumps({"status": outcome}))


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
    """`setup=True` (`serve`, `web --setup`) adds the App-registration pages (app/web/setup.py)
    while no App credentials are configured."""
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise MissingWebhookSecret(
            "OMOI_WEBHOOK_SECRET is not set: refusing to accept unverifiable webhooks"
        )
    from tasks.celery_app import make_celery  # a broker client only: the web process runs no tasks

    app = web.Application(client_max_size=settings.max_webhook_bytes)
    app[SETTINGS_KEY] = settings
    app[CELERY_KEY] = make_celery(settings)
    app[WRITER_KEY] = DeliveryWriter(settings, app[CELERY_KEY])
    app.cleanup_ctx.append(_writer_lifetime)
    app.router.add_post("/webhooks/github", webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app[DB_METRICS_KEY] = database_registry(settings.database_url)
    from app.web.status_pages import add_status_routes

    add_status_routes(app)
    if settings.sandbox_provider == "daytona":  # remote sandboxes reach the model only through this
        from app.agent.model_proxy import add_routes as add_model_proxy

        add_model_proxy(app, settings)
    if setup and not settings.has_app_credentials():
        from app.web.setup import add_setup_routes

        add_setup_routes(app, settings)
    return app
