"""Keyed locks in the database: one row per key (table `issue_locks`, named after its first use).

The keys in use:
- `owner/repo#<n>`: commands, spec phases and review rounds on one issue or pull request run one at
  a time (`issue_lock`; a caller that finds it busy re-queues itself: it queues, never cancels);
- `schedule:installation:<id>`: one scheduler per installation (app/execution/scheduler.py);
- `push:<repo>:<branch>`: one pusher per branch (app/execution/task_runner.py);
- `publish:...`: one writer of a run's GitHub view at a time, plus a mark (not a lock) that a newer
  state is wanted, deleted with `clear` (app/execution/run_report.py).

A row insert is atomic on SQLite and PostgreSQL alike; an expired row (its holder died) is taken over.
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
    """Hold `key` (an issue's `owner/repo#<n>`; None: no lock) for the block, or raise `Busy`."""
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
