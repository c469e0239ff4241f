"""Every attempt's transcript of a task, kept for the status page (app/web/run_page.py).

The worker's heartbeat (app/execution/leases.py) copies the running agent's messages to the task row
for the guardian (the last 40, reset when the next attempt starts) and, through `keep`, to this
attempt's `task_transcripts` row, which a retry does not touch. Entries arrive already redacted and
clipped by app/agent/transcript.py.
"""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from app.db.models import TaskTranscript
from app.timeutil import utc_now

KEEP = 120  # the most recent entries kept per attempt (each at most a few KB)


def keep(s, spec_id: int, task_id: str, attempt: int, entries: list[dict], cost_usd: float) -> None:
    """Write (or overwrite) attempt `attempt`'s transcript, in the caller's session. One heartbeat thread
    writes each attempt's row, so a read-then-write is enough."""
    row = s.scalars(select(TaskTranscript).where(
        TaskTranscript.spec_id == spec_id, TaskTranscript.task_id == task_id, TaskTranscript.attempt == attempt)).first()
    if row is None:
        row = TaskTranscript(spec_id=spec_id, task_id=task_id, attempt=attempt)
        s.add(row)
    row.entries, row.total = list(entries[-KEEP:]), len(entries)
    row.cost_usd, row.updated_at = Decimal(str(round(cost_usd or 0, 6))), utc_now()
