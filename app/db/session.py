"""Engine and session factory, one per process and database URL."""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


_ENGINES: dict[str, Engine] = {}


def get_engine(url: str) -> Engine:
    engine = _ENGINES.get(url)
    if engine is None:
        engine = _ENGINES[url] = _create_engine(url)
    return engine


def dispose_engines(close: bool = True) -> None:
    """After fork, a child must not reuse the parent's pooled connections (close=False there)."""
    for engine in _ENGINES.values():
        engine.dispose(close=close)


def _create_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pool = {}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            pool = {"pool_size": 20, "max_overflow": 20}
        # Connections to a file are cheap to keep and dearer to reopen (the pragmas below, the WAL's
        # shared memory): a worker's task threads, heartbeats and integrators keep theirs, instead of
        # overflowing the default pool of 5 and reconnecting for every other session.
        engine = create_engine(url, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001
            # WAL lets the web process write while the worker reads; busy_timeout queues writers.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return create_engine(
        url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args={"connect_timeout": 5}
    )


@lru_cache(maxsize=8)
def _factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: commits on success, rolls back on error."""
    if url is None:
        url = get_settings().database_url
    session = _factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def connection(url: str | None = None) -> Iterator[Connection]:
    """A Core connection in a transaction (committed on success), without an ORM session: for the
    small statements that run often (polls, locks, the lease), where a session's bookkeeping costs
    more than the statement."""
    with get_engine(url or get_settings().database_url).begin() as conn:
        yield conn


def ping(url: str) -> None:
    with get_engine(url).connect() as conn:
        conn.execute(text("SELECT 1"))
