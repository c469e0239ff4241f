"""Revisions after approval (issue 16): an issue edit makes the approved stages stale until a person
keeps them (`/omoi approve`) or revises them (`/omoi revise <stage> <text>`); an approved stage can be
revised, which makes the stages after it stale until the new revision is approved.

An edit-stale stage is still the approved revision (`status` approved, `stale_reason` "edit"): a run
that already started keeps its plan, one that has not started waits (the spec's state is `stale`).
"""
from __future__ import annotations

from sqlalchemy import select

from app.config import Settings
from app.db.models import Spec, SpecStage
from app.db.session import session_scope
from app.observability.logs import get_logger
from app.planning.schemas import STAGES

log = get_logger("omoi.spec.revisions")
WRITING = "planning"  # the spec's state while a revision is being written (flow.mark_revising)


def latest_rows(s, spec_id: int) -> dict[str, SpecStage]:
    """Each stage's newest revision."""
    rows: dict[str, SpecStage] = {}
    for row in s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id).order_by(SpecStage.revision)):
        rows[row.stage] = row
    return rows


def edit_stale_rows(s, spec_id: int) -> list[SpecStage]:
    """The newest revisions that were approved before the issue's body changed, in stage order."""
    rows = latest_rows(s, spec_id)
    return [rows[st] for st in STAGES if st in rows and rows[st].status == "approved" and rows[st].stale_reason]


def shown_status(row: SpecStage) -> str:
    """A stage revision's status as people see it (documents.STATUSES)."""
    return "outdated" if row.status == "approved" and row.stale_reason else row.status


def mark_edit_stale(settings: Settings, spec_id: int) -> tuple[list[tuple[str, int]], bool]:
    """The issue's body changed: every stage whose newest revision is approved becomes edit-stale.
    Returns (the stale stages and revisions, whether a run that has not started now waits). Safe to
    call twice: stages already stale stay as they are."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or spec.state in ("stopped", "complete", "rejected"):
            return [], False
        rows = latest_rows(s, spec_id)
        for row in rows.values():
            if row.status == "approved" and not row.stale_reason:
                row.stale_reason = "edit"
        stale = [(st, rows[st].revision) for st in STAGES if st in rows and rows[st].status == "approved"]
        waits = spec.state == "approved" and spec.run_state is None and bool(stale)
        if waits:
            spec.state = "stale"
    log.info("spec_stale_on_edit", spec_id=spec_id, stages=stale, run_waits=waits)
    return stale, waits


def keep_stale(settings: Settings, spec_id: int, user: str, stage: str | None,
               revision: int | None) -> tuple[list[tuple[str, int]], str | None, bool]:
    """`/omoi approve` while stages are edit-stale: keep them as approved (only `stage`, and only at
    `revision`, when named). Returns (kept stages and revisions, the mismatch if the named stage or
    revision is not a stale one, whether the run should start now)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        rows = edit_stale_rows(s, spec_id)
        if stage:
            rows = [r for r in rows if r.stage == stage]
            if not rows:
                return [], "stage", False
            if revision and rows[0].revision != revision:
                return [], "revision", False
        for row in rows:
            row.stale_reason = None
        kept = [(r.stage, r.revision) for r in rows]
        start = False
        if spec.state == "stale" and not edit_stale_rows(s, spec_id):
            spec.state, start = "approved", spec.run_state is None
    log.info("spec_stale_kept", spec_id=spec_id, user=user, stages=kept)
    return kept, None, start


def has_edit_stale(settings: Settings, spec_id: int) -> bool:
    with session_scope(settings.database_url) as s:
        return bool(edit_stale_rows(s, spec_id))


def revise_target(settings: Settings, spec_id: int, stage: str | None) -> SpecStage | None:
    """The revision `/omoi revise` rewrites: the named stage's newest revision if it is waiting,
    blocked or approved; unnamed, the stage waiting for people, else the first edit-stale one."""
    with session_scope(settings.database_url) as s:
        rows = latest_rows(s, spec_id)
        if stage:
            row = rows.get(stage)
            return row if row is not None and row.status in ("waiting", "blocked", "approved") else None
        waiting = [rows[st] for st in STAGES if st in rows and rows[st].status in ("waiting", "blocked")]
        if waiting:
            return waiting[0]
        stale = edit_stale_rows(s, spec_id)
        return stale[0] if stale else None
