"""The quick path (issue 17): an issue labelled `omoi:quick`, or `/omoi plan --quick`, gets its
requirements, design and tasks written in one go (the three stage generators of
app/planning/drafting.py, each through its own gates) and shown in ONE comment; one `/omoi approve`
approves all three (app/planning/flow.py `approve`) and starts the run, in the same sandbox as any
other. A stage that fails its gates stops the drafting there: the plan is blocked until revised."""
from __future__ import annotations

from sqlalchemy import select

from app.config import Settings
from app.db.models import Spec, SpecStage
from app.db.session import session_scope
from app.github import repo_config
from app.observability.logs import get_logger
from app.planning import drafting, flow
from app.planning.documents import diff_summary, doc_hash
from app.planning.schemas import STAGES
from app.text.rendering import reason, stored
from app.text.sanitize import sanitize_untrusted

log = get_logger("omoi.spec.quick")
STAGE = "quick"  # the job's stage name (app/planning/runner.py) and the comment's marker stage
LABEL = "omoi:quick"


def is_quick(planning: dict | None) -> bool:
    return bool((planning or {}).get("quick"))


def mark(settings: Settings, spec_id: int) -> None:
    """This spec takes the quick path (no clarifying questions: the person asked for speed)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.planning = dict(spec.planning or {}) | {"quick": True}


async def generate(gh, settings: Settings, spec_id: int, feedback: str | None = None) -> str:
    """Draft the three stages, store each as a revision, publish the one comment."""
    digest, repo_files = await flow.ensure_digest(gh, settings, spec_id)
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.state in flow.ENDED:
            return "skipped"
        full_name, number, planning = spec.repo_full_name, spec.issue_number, dict(spec.planning or {})
        previous = {st: flow.latest(s, spec_id, st, flow.ACTIVE + ("superseded", "approved")) for st in STAGES}
        previous = {st: flow.load_doc(st, row.document) for st, row in previous.items() if row is not None}
    cfg = await repo_config.load_effective(gh, settings, full_name)
    ctx = await drafting.issue_context(gh, settings, spec_id, full_name, number, planning)
    ctx["user_feedback"] = sanitize_untrusted(feedback) if feedback else None
    docs, drafted = {}, {}
    for stage in STAGES:
        prev = previous.get(stage)
        d = await drafting.draft(settings, spec_id, stage, ctx=ctx | {
            "previous": prev.model_dump_json(indent=1) if (prev and feedback) else ""},
            approved=docs, repo_files=repo_files, digest=digest, planner_model=cfg.planner_model,
            reviewer_model=cfg.reviewer_model)
        drafted[stage], docs[stage] = d, d.doc
        if not d.ok:
            break  # the later stages are gated against this one
    ok = all(d.ok for d in drafted.values()) and len(drafted) == len(STAGES)
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.state in flow.ENDED:
            return "skipped"
        for row in s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id,
                                                    SpecStage.status.in_(flow.ACTIVE))):
            row.status = "superseded"
        for stage, d in drafted.items():
            last = flow.latest(s, spec_id, stage)
            prev = previous.get(stage)
            s.add(SpecStage(
                spec_id=spec_id, stage=stage, revision=(last.revision + 1) if last else 1,
                status="waiting" if d.ok else "blocked", document=d.doc.model_dump(mode="json"),
                gates=flow.gate_dicts(d.results), content_hash=doc_hash(d.doc), feedback=feedback,
                changes=[c.to_json() for c in diff_summary(prev, d.doc)] if prev else [], attempts=d.attempts,
            ))
        spec.state = STAGE if ok else "blocked"
        blocked = next((st for st, d in drafted.items() if not d.ok), None)
        spec.last_error, spec.last_error_params = stored(
            None if ok else reason("planning/gates_failed", stage=blocked, attempts=drafted[blocked].attempts))
    log.info("quick_plan_written", spec_id=spec_id, ok=ok, stages=list(drafted))
    await flow.publish(gh, settings, spec_id, list(STAGES))
    return "waiting" if ok else "blocked"
