"""What each task attempt left for the next one (app/execution/attempt_feedback.py): the failing verify
output, the agent's own account, the diff stat, the validator's reasons, the side ref that keeps the
failed work, and after the last attempt the diagnosis. Kept apart from app/db/models.py (size limit)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, JSON, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, BigId
from app.timeutil import utc_now


class TaskAttempt(Base):
    """One finished (not lost) attempt of one task."""

    __tablename__ = "task_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    spec_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("specs.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int] = mapped_column(Integer)  # 1, 2, ... over the task's life (a `/omoi retry` continues it)
    ok: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)  # a reason code; error_params its parameters
    error_params: Mapped[dict | None] = mapped_column(JSON)
    # verify (failing output), account (the agent's final message), diffstat, validation (the validator's reasons)
    feedback: Mapped[dict] = mapped_column(JSON, default=dict)
    side_ref: Mapped[str | None] = mapped_column(String(255))  # where the failed work was pushed
    diagnosis: Mapped[str | None] = mapped_column(Text)  # after the last attempt: what went wrong
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now, nullable=False)


def report_rows(s, spec_id: int) -> dict[str, dict]:
    """task id -> the latest attempt's side ref and diagnosis, for the tracking comment."""
    out: dict[str, dict] = {}
    for row in s.scalars(select(TaskAttempt).where(TaskAttempt.spec_id == spec_id).order_by(TaskAttempt.seq)):
        entry = out.setdefault(row.task_id, {"side_refs": [], "diagnosis": None})
        if row.side_ref:
            entry["side_refs"].append(row.side_ref)
        entry["diagnosis"] = row.diagnosis
    return out
