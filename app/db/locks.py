"""A per-issue lock in the database, so commands on one issue run one at a time.

A row insert is atomic on SQLite and PostgreSQL alike; an expired row (its holder died)
is taken over. Callers that find the lock busy re-queue themselves: it queues, never cancels.
"""
from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from app.db.models import IssueLock
from app.db.session import session_scope
from app.timeutil import utc_now


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def try_acquire(key: str, owner: str, ttl_seconds: int) -> bool:
    now = utc_now()
    try:
        with session_scope() as s:
            s.add(IssueLock(key=key, owner=owner, expires_at=now + timedelta(seconds=ttl_seconds)))
        return True
    except IntegrityError:
        pass
    with session_scope() as s:  # take over an expired lock, atomically
        taken = s.execute(
            update(IssueLock)
            .where(IssueLock.key == key, IssueLock.expires_at < now)
            .values(owner=owner, expires_at=now + timedelta(seconds=ttl_seconds))
        ).rowcount
    return taken == 1


def release(key: str, owner: str) -> None:
    with session_scope() as s:
        s.execute(delete(IssueLock).where(IssueLock.key == key, IssueLock.owner == owner))


def clear(key: str) -> bool:
    """Delete `key` whoever holds it (a mark, not a lock: app/execution/run_report.py); True if it was there."""
    with session_scope() as s:
        return s.execute(delete(IssueLock).where(IssueLock.key == key)).rowcount > 0


class Busy(Exception):
    pass


@contextmanager
def issue_lock(key: str | None, ttl_seconds: int) -> Iterator[None]:
    if key is None:
        yield
        return
    owner = owner_id()
    if not try_acquire(key, owner, ttl_seconds):
        raise Busy(key)
    try:
        yield
    finally:
        release(key, owner)
