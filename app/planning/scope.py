"""An approved scope change from a discovery (issue 17): `/omoi approve D<n>` revises the spec from
the stage the finding changes (the requirements for a missing requirement, else the design), then
each later stage, with the finding as feedback. The requirements and design revisions are approved
by that approval (each comment shows its changes since the previous revision); the tasks revision
waits for a person like any other, and its approval merges the new work into the run. A revision
that fails its gates stops the chain there, blocked until revised (`/omoi revise`)."""
from __future__ import annotations

from app.config import Settings
from app.db.models import Spec
from app.db.session import session_scope
from app.observability.logs import get_logger
from app.planning import flow
from app.planning.schemas import STAGES

log = get_logger("omoi.spec.scope")
STAGE = "scope"  # the job's stage name (app/planning/runner.py)


def begin(settings: Settings, spec_id: int, proposal: dict, user: str) -> None:
    """Remember where the revision starts and who approved the change, for the job."""
    start = proposal["start"] if proposal["start"] in STAGES else "tasks"
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.planning = dict(spec.planning or {}) | {"scope": {"discovery": proposal["id"], "user": user,
                                                               "start": start}}
        spec.state = "planning"  # approvals wait until the revisions are written


async def revise(gh, settings: Settings, spec_id: int, feedback: str) -> str:
    with session_scope(settings.database_url) as s:
        scope = dict((s.get(Spec, spec_id).planning or {}).get("scope") or {})
    start, user = scope.get("start", "tasks"), scope.get("user", "")
    outcome = "skipped"
    for stage in STAGES[STAGES.index(start):]:
        outcome = await flow.generate(gh, settings, spec_id, stage, feedback)
        if outcome != "waiting" or stage == STAGES[-1]:
            break
        approved = flow.approve(settings, spec_id, user, stage, None)
        if approved.template != "replies/approved.md.j2":
            break
        await flow.write_spec_file(gh, settings, spec_id, stage)
        await flow.publish(gh, settings, spec_id, [stage])
    log.info("scope_revised", spec_id=spec_id, discovery=scope.get("discovery"), start=start, outcome=outcome)
    return outcome
