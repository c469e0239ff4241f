"""A worker's claim on one task: the lease it adopts, keeps alive and can lose.

`schedule` (app/execution/scheduler.py) claims a task and leaves a lease token; the worker that gets
the Celery message adopts it (`adopt`), then keeps the lease alive from a thread (`Heartbeat`), which
also carries supervision both ways: the agent's recent messages to the task row (the guardian reads
them there) and the guardian's redirects into the running session. A lease is lost when the run is
cancelled or the lease is taken over (the guardian, the conductor, recovery); the worker then stops
and pushes nothing. What the attempt produced (`Attempt`) is recorded by app/execution/orchestrator.py.

Every change to a claimed row is a compare-and-set UPDATE (`update`): the database decides who wins.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, select
from sqlalchemy import update as sql_update

from app.agent.hooks import Checkpoint, FromPerson
from app.config import Settings
from app.db.locks import owner_id
from app.db import transcripts
from app.db.models import Intervention, Spec, SpecTask
from app.db.session import session_scope
from app.observability.logs import get_logger
from app.text.rendering import Reason
from app.timeutil import utc_now

log = get_logger("omoi.task_runner")
TRAJECTORY_KEEP = 40  # the agent's most recent messages kept on the task row for the guardian


def update(model):
    """A compare-and-set UPDATE: the database decides; the WHERE is never evaluated against loaded objects."""
    return sql_update(model).execution_options(synchronize_session=False)


@dataclass
class Lease:
    spec_id: int
    task_id: str
    row_id: int
    owner: str
    attempt: int


@dataclass
class Attempt:
    """What one attempt produced."""

    ok: bool
    reason: Reason | None = None  # why it did not succeed (templates/reasons/task/)
    retryable: bool = True
    commit_sha: str | None = None
    evidence: list[dict] = field(default_factory=list)
    cost_usd: float = 0.0
    duration_s: float = 0.0
    lost: bool = False  # the lease was lost mid-way: record nothing
    budget_stop: bool = False  # not started: a spend limit was reached (the attempt is not counted)
    discoveries: list = field(default_factory=list)  # app.execution.discovery.Finding reported by the agent
    notes: str | None = None  # an exploration task's report


def adopt(settings: Settings, spec_id: int, task_id: str, token: str) -> Lease | None:
    """Take over the claim made by `schedule` (None: not ours any more, e.g. a redelivered message)."""
    mine = f"{token}@{owner_id()}"
    now = utc_now()
    with session_scope(settings.database_url) as s:
        row = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id, SpecTask.task_id == task_id)).first()
        if row is None:
            return None
        won = s.execute(update(SpecTask).where(
            SpecTask.id == row.id, SpecTask.status == "running", SpecTask.lease_owner == token,
        ).values(lease_owner=mine, heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.task_lease_seconds),
                 attempts=SpecTask.attempts + 1, started_at=now, error=None, error_params=None,
                 trajectory=[], trajectory_at=None)).rowcount  # the guardian judges this attempt only
        if won != 1:
            return None
        attempt = s.scalar(select(SpecTask.attempts).where(SpecTask.id == row.id))
    return Lease(spec_id, task_id, row.id, mine, attempt)


def heartbeat(settings: Settings, lease: Lease, checkpoint: threading.Event | None = None) -> bool:
    """Extend the lease; False when it is lost (cancelled, taken over, or the run stopped). A paused run
    sets `checkpoint`: the session ends after its current tool call and its work is kept."""
    with session_scope(settings.database_url) as s:
        return _renew(s, settings, lease, checkpoint)


# Built once: every running task renews its lease every few seconds.
_RENEW = sql_update(SpecTask).where(
    SpecTask.id == bindparam("row"), SpecTask.lease_owner == bindparam("owner"), SpecTask.status == "running",
).values(heartbeat_at=bindparam("now"), lease_expires_at=bindparam("until"))
_RUN_STATE = select(Spec.run_state).where(Spec.id == bindparam("spec"))


def _renew(s, settings: Settings, lease: Lease, checkpoint: threading.Event | None) -> bool:
    now, conn = utc_now(), s.connection()
    kept = conn.execute(_RENEW, {"row": lease.row_id, "owner": lease.owner, "now": now,
                                 "until": now + timedelta(seconds=settings.task_lease_seconds)}).rowcount
    state = conn.execute(_RUN_STATE, {"spec": lease.spec_id}).scalar()
    if checkpoint is not None and state in ("paused", "paused_budget"):
        checkpoint.set()
    # A failed run lets running tasks finish; a paused one checkpoints them (app/execution/checkpoint.py).
    return kept == 1 and state in ("running", "failed", "paused_budget", "paused")


class Heartbeat(threading.Thread):
    """Keeps the lease alive from a thread, so a busy event loop cannot starve it."""

    def __init__(self, settings: Settings, lease: Lease) -> None:
        super().__init__(name=f"heartbeat-{lease.task_id}", daemon=True)
        self.settings, self.lease = settings, lease
        self.lost = threading.Event()
        self.checkpoint = threading.Event()  # the run was paused: end the session after this tool call
        self.checkpointed = False
        self._stop = threading.Event()
        self.transcript: list[dict] = []  # the running agent's messages (app/agent/session.py on_message)
        self._flushed = 0
        self.spent_usd = 0.0  # the running session's cost so far (app/agent/session.py on_cost)
        # Supervisor messages for the running session (interventions with action "redirect"):
        # fetched here, handed to the agent's hook by `next_redirect`, marked delivered here.
        self._redirects: list[tuple[int, str]] = []
        self._handed: list[int] = []
        self._known: set[int] = set()
        self._lock = threading.Lock()

    def poll_redirects(self, s=None) -> None:
        """Mark the messages handed to the session delivered and fetch new ones (in the session `s`
        when given: the heartbeat's own transaction)."""
        if s is None:
            with session_scope(self.settings.database_url) as s:
                return self.poll_redirects(s)
        with self._lock:
            handed, self._handed = self._handed, []
        if handed:
            s.execute(update(Intervention).where(Intervention.id.in_(handed)).values(delivered_at=utc_now()))
        rows = s.execute(select(Intervention.id, Intervention.guidance, Intervention.source,
                                Intervention.reason_params).where(
            Intervention.spec_id == self.lease.spec_id, Intervention.task_id == self.lease.task_id,
            Intervention.attempt == self.lease.attempt, Intervention.action == "redirect",
            Intervention.delivered_at.is_(None))).all()
        with self._lock:
            for rid, text, source, params in rows:
                if rid not in self._known:
                    self._known.add(rid)
                    if source == "person":  # `/omoi tell`: worded as the person's message
                        text = FromPerson(text or "")
                        text.user = str((params or {}).get("user") or "")
                    self._redirects.append((rid, text or ""))

    def next_redirect(self) -> str | None:
        """Called from the agent's PostToolUse hook: the oldest undelivered supervisor message, or a
        `Checkpoint` when the run was paused."""
        if self.checkpoint.is_set():
            self.checkpointed = True  # the hook ends the session now: its work is kept (app/execution/checkpoint.py)
            return Checkpoint()
        with self._lock:
            if not self._redirects:
                return None
            rid, text = self._redirects.pop(0)
            self._handed.append(rid)
        return text

    def flush_trajectory(self) -> None:
        """Copy the agent's recent messages to the task row (the guardian reads them from there)."""
        size = len(self.transcript)
        if size == self._flushed:
            return
        with session_scope(self.settings.database_url) as s:
            if s.execute(update(SpecTask).where(SpecTask.id == self.lease.row_id, SpecTask.lease_owner == self.lease.owner)
                         .values(trajectory=list(self.transcript[-TRAJECTORY_KEEP:]), trajectory_at=utc_now())).rowcount:
                # the whole attempt, kept after a retry resets the row (the status page shows every attempt)
                transcripts.keep(s, self.lease.spec_id, self.lease.task_id, self.lease.attempt, self.transcript,
                                 self.spent_usd)
        self._flushed = size

    def run(self) -> None:
        while not self._stop.wait(self.settings.task_heartbeat_seconds):
            try:
                self.flush_trajectory()
                with session_scope(self.settings.database_url) as s:  # one transaction per beat
                    self.poll_redirects(s)
                    kept = _renew(s, self.settings, self.lease, self.checkpoint)
                if not kept:
                    self.lost.set()
                    return
            except Exception as exc:  # noqa: BLE001 - a database hiccup; the lease has slack
                log.warning("heartbeat_failed", task=self.lease.task_id, error=exc.__class__.__name__)

    def stop(self) -> None:
        self._stop.set()
        try:
            self.flush_trajectory()  # the session's last messages
            with self._lock:
                handed = bool(self._handed)
            if handed:
                self.poll_redirects()  # record the last delivered message
        except Exception:  # noqa: BLE001
            pass

    def confirm(self) -> bool:
        """Renew the lease now: False (and `lost` set) if the run was cancelled or taken over."""
        if not self.lost.is_set() and not heartbeat(self.settings, self.lease):
            self.lost.set()
        return not self.lost.is_set()
