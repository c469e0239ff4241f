"""The web process's batched delivery writer: many requests, one commit, one broker batch.

A request hands its row (app/web/webhook.py) to the writer's thread and waits; the thread stores
every row waiting in one transaction and then enqueues them together (app/jobs.py).
"""
from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import JSON, bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.types import TypeDecorator

from app import jobs
from app.config import Settings
from app.db.models import WebhookDelivery
from app.db.session import get_engine
from app.observability.logs import get_logger
from app.timeutil import utc_now

log = get_logger("omoi.web")


class _PayloadText(TypeDecorator):
    """The payload column, bound from JSON text the handler already validated (not re-serialised)."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect):  # noqa: ANN001 - the value is JSON text already
        return None


# the columns a delivery row carries (the handler builds them), and all the table's columns
_ROW_COLUMNS = ("delivery_id", "event", "action", "installation_id", "issue_key", "payload", "status",
                "raw_body", "signature")
_ALL_COLUMNS = {"id", *_ROW_COLUMNS, "attempts", "error", "received_at", "started_at", "finished_at"}


# one row (`_insert`, PostgreSQL, when the schema is the one _ALL_COLUMNS names)
_PG_INSERT_ONE = (
    "INSERT INTO webhook_deliveries (delivery_id, event, action, installation_id, issue_key, payload,"
    " status, raw_body, signature, attempts, received_at)"
    " VALUES (%(delivery_id)s, %(event)s, %(action)s, %(installation_id)s, %(issue_key)s,"
    " CAST(%(payload)s AS json), %(status)s, %(raw_body)s, %(signature)s, 0, %(received_at)s)"
    " ON CONFLICT (delivery_id) DO NOTHING"
    " RETURNING id, delivery_id"
)

# a batch of rows (`_sqlite_insert`), `values` one "(?, ...)" per row
_SQLITE_INSERT = (
    "INSERT INTO webhook_deliveries (delivery_id, event, action, installation_id, issue_key, payload,"
    " status, raw_body, signature, attempts, received_at) VALUES {values}"
    " ON CONFLICT (delivery_id) DO NOTHING RETURNING id, delivery_id"
)


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
        self._conn = None  # the writer thread's own database connection
        self._sqlite_binds = None

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
        try:
            self._serve(get, get_nowait)
        finally:
            self._drop_connection()

    def _serve(self, get, get_nowait) -> None:
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
        that was a sixth of the web process's CPU), rows numbered in batch order. The arrays are
        sent in binary (`%(name)b`): as text, psycopg escapes every quote of every payload in
        Python, about 70 us a delivery."""
        if self._pg_stmt is None:
            table = WebhookDelivery.__table__
            if set(table.c.keys()) != _ALL_COLUMNS:  # the schema moved on: the generic statement
                self._pg_stmt = False
            else:
                self._pg_stmt = (
                    f"INSERT INTO {table.name} (delivery_id, event, action, installation_id, issue_key, payload,"
                    " status, raw_body, signature, attempts, received_at)"
                    " SELECT t.delivery_id, t.event, t.action, t.installation_id, t.issue_key,"
                    " CAST(t.payload AS json), t.status, t.raw_body, t.signature, 0, %(received_at)s"
                    " FROM unnest(CAST(%(delivery_id)b AS varchar[]), CAST(%(event)b AS varchar[]),"
                    " CAST(%(action)b AS varchar[]), CAST(%(installation_id)b AS bigint[]),"
                    " CAST(%(issue_key)b AS varchar[]), CAST(%(payload)b AS text[]), CAST(%(status)b AS varchar[]),"
                    " CAST(%(raw_body)b AS bytea[]), CAST(%(signature)b AS varchar[]))"
                    " WITH ORDINALITY AS t(delivery_id, event, action, installation_id, issue_key, payload, status,"
                    " raw_body, signature, n)"
                    " ORDER BY t.n"
                    " ON CONFLICT (delivery_id) DO NOTHING"
                    " RETURNING id, delivery_id"
                )
        return self._pg_stmt

    def _insert(self, conn, engine, rows: list[dict]):
        if engine.dialect.name == "postgresql" and self._pg_insert_statement() is not False:
            if len(rows) == 1:  # light load: plain values (psycopg picks a dumper per array, per call)
                return conn.exec_driver_sql(_PG_INSERT_ONE, dict(rows[0], received_at=utc_now()))
            params = {name: [row[name] for row in rows] for name in _ROW_COLUMNS}
            params["received_at"] = utc_now()
            return conn.exec_driver_sql(self._pg_stmt, params)  # psycopg's own placeholders
        if engine.dialect.name == "sqlite" and set(WebhookDelivery.__table__.c.keys()) == _ALL_COLUMNS:
            return self._sqlite_insert(conn, engine, rows)
        return conn.execute(self._insert_statement(engine), rows)

    def _sqlite_insert(self, conn, engine, rows: list[dict]):
        """SQLite: one multi-row INSERT with the values bound as SQLAlchemy would bind them (its
        own processors for the timestamp and the bytes), without its per-row parameter work."""
        if self._sqlite_binds is None:
            table = WebhookDelivery.__table__
            self._sqlite_binds = tuple(column.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
                                       for column in (table.c.raw_body, table.c.received_at))
        raw_body, timestamp = self._sqlite_binds
        received_at = utc_now() if timestamp is None else timestamp(utc_now())
        params = []
        for row in rows:
            raw = row["raw_body"]
            params += (row["delivery_id"], row["event"], row["action"], row["installation_id"], row["issue_key"],
                       row["payload"], row["status"], raw if raw is None or raw_body is None else raw_body(raw),
                       row["signature"], received_at)
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)"] * len(rows))
        return conn.exec_driver_sql(_SQLITE_INSERT.format(values=values), tuple(params))

    def _write(self, batch: list[_Pending]) -> None:
        """Commit the batch, then hand it to a publisher thread and take the next batch: the
        broker's latency (a file per message for the embedded broker) overlaps the next commit."""
        engine = get_engine(self.settings.database_url)
        rows = [p.row for p in batch]
        stored = self._commit(engine, rows)
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

    def _commit(self, engine, rows: list[dict]) -> dict:
        """Insert the rows in one transaction on the writer's own connection: {delivery_id: pk} of
        the new ones. The connection is kept (no pool checkout and pre-ping per batch); one found
        dead (the database restarted) is replaced and the batch tried once more."""
        for retry in (True, False):
            conn = self._conn
            if conn is None:
                conn = self._conn = engine.connect()
                if engine.dialect.name == "postgresql":
                    # The batch is one INSERT statement (`_insert`), a transaction of its own:
                    # committed (and flushed to the WAL) before its answer, with no BEGIN and
                    # COMMIT round trips around it.
                    conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                with conn.begin():  # one transaction, one commit for the whole batch
                    return dict((d, pk) for pk, d in self._insert(conn, engine, rows))
            except BaseException as exc:
                self._drop_connection()
                if not (retry and isinstance(exc, DBAPIError) and exc.connection_invalidated):
                    raise
        raise AssertionError("unreachable")

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a dead connection: the pool discards it
                pass

    def _publish(self, engine, batch: list[_Pending], outcomes: list, pks: list[int]) -> None:
        try:
            if not self._enqueue(pks):
                self._put_back(engine, pks)
                outcomes = ["stored" if o == "queued" else o for o in outcomes]
        finally:
            _answer(batch, outcomes)  # committed: 202 whatever happened to the message

    def _enqueue(self, pks: list[int]) -> bool:
        try:
            jobs.process_deliveries(self.celery, pks)
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
