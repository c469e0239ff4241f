"""Once-only markers in the database (a unique key per side effect), e.g. 'comment 123 handled'."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.db.models import Job
from app.db.session import session_scope


def status(key: str) -> str | None:
    with session_scope() as s:
        return s.scalars(select(Job.status).where(Job.key == key)).first()


def claim(key: str, kind: str, status_value: str = "pending") -> bool:
    """True if this call created the key (first time), False if it already existed."""
    try:
        with session_scope() as s:
            s.add(Job(kind=kind, key=key, status=status_value))
        return True
    except IntegrityError:
        return False


def finish(key: str) -> None:
    with session_scope() as s:
        job = s.scalars(select(Job).where(Job.key == key)).first()
        if job is not None:
            job.status = "done"
