"""One queue of content-creating GitHub writes per installation, across every omoi process.

GitHub asks integrators to leave about a second between content-creating requests (comments, reactions,
check runs, pull requests). omoi runs several processes (web, Celery prefork workers) that write for the
same installation, and the database is the one store all of them share in every deployment, so the queue
is a row per installation (table `github_write_slots`) holding when its next write may go.

`reserve` hands out the next slot with one atomic upsert (SQLite and PostgreSQL alike):

    INSERT ... VALUES (:i, :now + :spacing)
    ON CONFLICT (installation_id) DO UPDATE SET next_at = max(next_at, :now) + :spacing
    RETURNING next_at

Writers serialise on the row (PostgreSQL's row lock, SQLite's database write lock), so no two callers get
the same slot. Times are epoch seconds from the caller's clock: the hosts of one deployment keep NTP time,
and a skew of milliseconds only shortens one gap by as much.
"""
from __future__ import annotations

import time

from sqlalchemy import case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from app.db.session import get_engine, session_scope
from app.db.write_slot_models import GitHubWriteSlot

_SLOTS = GitHubWriteSlot.__table__


def reserve(database_url: str, installation_id: int, spacing: float, now: float | None = None) -> float:
    """Take the installation's next write slot; the seconds to wait until it (0 when it is now).

    Blocking (call it off the event loop); raises SQLAlchemyError when the database does not answer."""
    now = time.time() if now is None else now
    insert = pg_insert if get_engine(database_url).dialect.name == "postgresql" else sqlite_insert
    current = _SLOTS.c.next_at
    stmt = (
        insert(_SLOTS)
        .values(installation_id=installation_id, next_at=now + spacing)
        .on_conflict_do_update(
            index_elements=[_SLOTS.c.installation_id],
            # `case`, not max(): max() is an aggregate on PostgreSQL, a scalar only on SQLite
            set_={"next_at": case((current > now, current), else_=now) + spacing},
        )
        .returning(current)
    )
    with session_scope(database_url) as s:
        next_at = s.execute(stmt).scalar_one()
    return max(0.0, next_at - spacing - now)
