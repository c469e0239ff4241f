"""Keyed locks in the database: one row per key (table `issue_locks`, named after its first use).

The keys in use:
- `owner/repo#<n>`: commands, spec phases and review rounds on one issue or pull request run one at
  a time (`issue_lock`; a caller that finds it busy re-queues itself: it queues, never cancels);
- `schedule:installation:<id>`: one scheduler per installation (app/execution/scheduler.py);
- `push:<repo>:<branch>`: one pusher per branch, who lands every waiting task change (app/execution/integration.py);
- `publish:...`: one writer of a run's GitHub view at a time, plus a mark (not a lock) that a newer
  state is wanted, deleted with `clear` (app/execution/run_report.py).

A row insert is atomic on SQLite and PostgreSQL alike; an expired row (its holder died) is taken over, and so,
at once, is a row whose holder was a process on this host that no longer exists.
"""
from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db.models import IssueLock
from app.db.session import connection
from app.timeutil import utc_now


def _pid_namespace() -> str:
    try:  # the same pid means the same process only within one pid namespace (containers share hostnames rarely, namespaces never)
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


_HERE = f"{socket.gethostname()}:{_pid_namespace()}"


def owner_id() -> str:
    return f"{_HERE}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_is_dead(owner: str) -> bool:
    """True only when the holder ran on this host, in this pid namespace, and its process is gone
    (a worker killed mid-command): its lock need not be waited out until it expires."""
    place, _, rest = owner.rpartition(":")[0].rpartition(":")
    if place != _HERE or not rest.isdigit():
        return False
    try:
        os.kill(int(rest), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists (owned by someone else) or cannot tell
        return False
    return False


def _insert(dialect: str):
    """INSERT ... ON CONFLICT DO NOTHING RETURNING (SQLite and PostgreSQL alike): a taken key returns no
    row, not an exception and a rolled-back transaction (psycopg reports no rowcount for an insert)."""
    return (sqlite_insert if dialect == "sqlite" else pg_insert)(IssueLock).on_conflict_do_nothing(
        index_elements=["key"]).returning(IssueLock.key)


_INSERT = {name: _insert(name) for name in ("sqlite", "postgresql")}
_TAKE_EXPIRED = (update(IssueLock).where(IssueLock.key == bindparam("k"), IssueLock.expires_at < bindparam("now"))
                 .values(owner=bindparam("o"), expires_at=bindparam("until")))
_TAKE_FROM = (update(IssueLock).where(IssueLock.key == bindparam("k"), IssueLock.owner == bindparam("dead"))
              .values(owner=bindparam("o"), expires_at=bindparam("until")))
_HOLDER = select(IssueLock.owner).where(IssueLock.key == bindparam("k"))
_RELEASE = delete(IssueLock).where(IssueLock.key == bindparam("k"), IssueLock.owner == bindparam("o"))
_CLEAR = delete(IssueLock).where(IssueLock.key == bindparam("k"))


def try_acquire(key: str, owner: str, ttl_seconds: int) -> bool:
    now = utc_now()
    until = now + timedelta(seconds=ttl_seconds)
    with connection() as conn:
        if conn.execute(_INSERT[conn.dialect.name], {"key": key, "owner": owner, "expires_at": until}).first():
            return True
        # take over an expired lock, atomically
        if conn.execute(_TAKE_EXPIRED, {"k": key, "now": now, "o": owner, "until": until}).rowcount == 1:
            return True
        holder = conn.execute(_HOLDER, {"k": key}).scalar()
        if holder is None or not _holder_is_dead(holder):
            return False
        # take over a dead holder's lock, atomically: only if that holder still has it
        return conn.execute(_TAKE_FROM, {"k": key, "dead": holder, "o": owner, "until": until}).rowcount == 1


def release(key: str, owner: str) -> None:
    with connection() as conn:
        conn.execute(_RELEASE, {"k": key, "o": owner})


def clear(key: str) -> bool:
    """Delete `key` whoever holds it (a mark, not a lock: app/execution/run_report.py); True if it was there."""
    with connection() as conn:
        return conn.execute(_CLEAR, {"k": key}).rowcount > 0


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
