"""The spec state machine: REQUIREMENTS -> DESIGN -> TASKS, each gated and approved.

State lives in `specs` and `spec_stages`; the issue comments and the `omoi / spec` check run
are renderings of it, rebuilt from the database after every change.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel
from sqlalchemy import select

from app.github import repo_config
from app.config import Settings
from app.db.models import Spec, SpecStage
from app.db.session import session_scope
from app.github import comments
from app.github.checks import upsert_check_run
from app.github.repo_files import branch_name, ensure_branch, put_file
from app.observability.logs import get_logger
from app.text.rendering import Reason, loaded, reason, render, render_line, stored
from app.text.sanitize import sanitize_untrusted
from app.planning import drafting, explore, questions
from app.planning import gates as g
from app.web.links import spec_status_url
from app.planning.digest import build_digest
from app.planning.revisions import shown_status
from app.planning.documents import (
    COMMENT_BUDGET, diff_summary, doc_hash, render_quick_comment, render_spec_file, render_stage_comment,
)
from app.planning.schemas import DOCUMENT_TYPES, STAGES
from app.timeutil import utc_now
from app.text import markers

log = get_logger("omoi.spec")
CHECK_NAME = "omoi / spec"
ACTIVE = ("waiting", "blocked")  # a stage revision that is waiting for people
ENDED = ("rejected", "cancelled", "stopped", "complete")  # nothing more is written for such a spec


@dataclass
class Outcome:
    """What a command did, for the reply comment (template name + its context)."""

    template: str
    context: dict = field(default_factory=dict)
    # shown elsewhere already (an approval: the stage comment says who approved it, and the next stage
    # or the run follows): no reply comment of its own, the command's 👀 and that edit are its answer
    quiet: bool = False


def stage_marker(stage: str) -> str:
    return markers.SPEC.prefix(stage=stage)



def _load_doc(stage: str, data: dict) -> BaseModel:
    return DOCUMENT_TYPES[stage].model_validate(data)


def _latest(s, spec_id: int, stage: str, statuses: tuple[str, ...] | None = None) -> SpecStage | None:
    q = select(SpecStage).where(SpecStage.spec_id == spec_id, SpecStage.stage == stage)
    if statuses:
        q = q.where(SpecStage.status.in_(statuses))
    return s.scalars(q.order_by(SpecStage.revision.desc()).limit(1)).first()


def _approved_docs(s, spec_id: int) -> dict[str, BaseModel]:
    docs = {}
    for stage in STAGES:
        row = _latest(s, spec_id, stage, ("approved",))
        if row is not None:
            docs[stage] = _load_doc(stage, row.document)
    return docs


def _gate_dicts(results: list[g.GateResult]) -> list[dict]:
    """As stored in spec_stages.gates: the gate's code, and its reason's code and params (`message`,
    `params`; text with params None: the reviewer's words, or rows written before reasons had codes)."""
    rows = []
    for r in results:
        message, params = stored(r.reason) if isinstance(r.reason, Reason) else (r.reason, None)
        rows.append({"name": r.gate, "passed": r.passed, "message": message, "params": params, "severity": r.severity})
    return rows


def _gate_objs(rows: list[dict]) -> list[g.GateResult]:
    return [g.GateResult(r["name"], r["passed"], loaded(r.get("message"), r.get("params")), r.get("severity", "error"))
            for r in rows]


async def _ensure_digest(gh, settings: Settings, spec_id: int) -> tuple[str, set[str]]:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.digest:
            return spec.digest, set(spec.repo_files or [])
        full_name = spec.repo_full_name
    digest = await build_digest(gh, full_name)
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.digest, spec.repo_files, spec.base_sha = digest.text, digest.files, digest.base_sha
    return digest.text, set(digest.files)


async def generate(gh, settings: Settings, spec_id: int, stage: str, user_feedback: str | None = None) -> str:
    """Write a new revision of `stage`, gate it (retrying with the findings), publish it; or, for the
    requirements of an ambiguous issue, post clarifying questions instead (app/planning/questions.py)."""
    digest, repo_files = await _ensure_digest(gh, settings, spec_id)
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.state in ENDED:
            return "skipped"
        approved = _approved_docs(s, spec_id)
        # the revision people last saw: a waiting one, the approved one `/omoi revise <stage>` rewrites, or
        # one an earlier stage's revision made stale (its rewrite shows what changed)
        previous = _latest(s, spec_id, stage, ACTIVE + ("superseded", "approved", "stale"))
        previous_doc = _load_doc(stage, previous.document) if previous else None
        full_name, number = spec.repo_full_name, spec.issue_number
    cfg = await repo_config.load_effective(gh, settings, full_name)  # the per-repo model names
    if stage == "requirements" and user_feedback is None:
        await explore.ensure(gh, settings, spec_id)  # once per spec; its findings go into the prompts
    with session_scope(settings.database_url) as s:
        planning = dict(s.get(Spec, spec_id).planning or {})
    prompt_ctx = await drafting.issue_context(gh, settings, spec_id, full_name, number, planning) | {
        "user_feedback": sanitize_untrusted(user_feedback) if user_feedback else user_feedback,
        "previous": previous_doc.model_dump_json(indent=1) if (previous_doc and user_feedback) else "",
    }
    may_ask = stage == "requirements" and user_feedback is None and questions.may_ask(planning)
    drafted = await drafting.draft(settings, spec_id, stage, ctx=prompt_ctx, approved=approved,
                                   repo_files=repo_files, digest=digest, planner_model=cfg.planner_model,
                                   reviewer_model=cfg.reviewer_model, may_ask=may_ask)
    if drafted.doc is None:
        await questions.post(gh, settings, spec_id, drafted.questions)
        await publish(gh, settings, spec_id, [])  # the check run: waiting for answers
        return "questions"
    doc, results, ok, attempts = drafted.doc, drafted.results, drafted.ok, drafted.attempts
    if stage == "requirements" and planning.get("questions"):
        await questions.mark_answered(gh, settings, spec_id)

    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.state in ENDED:  # stopped or rejected while the model was writing: drop what it wrote
            log.info("stage_dropped", spec_id=spec_id, stage=stage, state=spec.state)
            return "skipped"
        last = _latest(s, spec_id, stage)
        revision = (last.revision + 1) if last else 1
        for row in s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id, SpecStage.stage == stage,
                                                    SpecStage.status.in_(ACTIVE))):
            row.status = "superseded"
        later = STAGES[STAGES.index(stage) + 1:]
        stale = s.scalars(select(SpecStage).where(
            SpecStage.spec_id == spec_id, SpecStage.stage.in_(later), SpecStage.status.in_(ACTIVE + ("approved",))
        )).all()
        for row in stale:
            row.status = "stale"
        row = SpecStage(
            spec_id=spec_id, stage=stage, revision=revision, status="waiting" if ok else "blocked",
            document=doc.model_dump(mode="json"), gates=_gate_dicts(results), content_hash=doc_hash(doc),
            feedback=user_feedback,
            changes=[c.to_json() for c in diff_summary(previous_doc, doc)] if previous_doc else [],
            attempts=attempts,
        )
        s.add(row)
        spec.state = stage if ok else "blocked"
        spec.last_error, spec.last_error_params = stored(
            None if ok else reason("planning/gates_failed", stage=stage, attempts=attempts))
        stale_stages = sorted({r.stage for r in stale})
    await publish(gh, settings, spec_id, [stage, *stale_stages])
    return "waiting" if ok else "blocked"


async def publish(gh, settings: Settings, spec_id: int, stages: list[str], *, check: bool = True) -> None:
    """Re-render the given stage comments and (unless `check` is False: the next stage's publish follows
    soon and says more) the check run from the database."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        full_name, number = spec.repo_full_name, spec.issue_number
        known = dict(spec.stage_comments or {})
        quick = bool((spec.planning or {}).get("quick"))
        findings = explore.findings_of(spec.planning)
        views = []
        for stage in (STAGES if quick else stages):
            row = _latest(s, spec_id, stage)
            if row is None:
                continue
            status = shown_status(row) if row.status != "superseded" else "waiting"
            if spec.state == "rejected" and row.status in ACTIVE:
                status = "rejected"
            views.append((stage, row.revision, _load_doc(stage, row.document), _gate_objs(row.gates),
                          status, row.approved_by, row.changes if row.revision > 1 else None))
        current = _current_view(s, spec)
    if quick and views:
        await _publish_quick(gh, settings, full_name, number, views, known)
        views = []
    for stage, revision, doc, results, status, approved_by, changes in views:
        overflow = await write_spec_file(gh, settings, spec_id, stage, revision) if _overflows(stage, doc) else None
        body = render_stage_comment(stage, doc, revision=revision, gates=results, status=status,
                                    approved_by=approved_by, changes=changes, overflow_url=overflow,
                                    findings=findings if stage == "requirements" else None)
        result = await comments.upsert(gh, settings, full_name, number, stage_marker(stage), body,
                                       known_id=known.get(stage))
        known[stage] = result.comment_id
    check_id = await _publish_check(gh, settings, spec_id, current) if check else current["check_id"]
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.stage_comments = known
        spec.spec_check_run_id = check_id


async def _publish_quick(gh, settings: Settings, full_name: str, number: int, views: list, known: dict) -> None:
    """The quick path's one comment (app/planning/quick.py) in place of the three stage comments."""
    statuses = {v[4] for v in views}
    status = next((st for st in ("rejected", "blocked", "outdated", "waiting") if st in statuses), views[0][4])
    status_text = render_line("spec/status.md.j2", status=status, approved_by=views[0][5], stage="plan")
    parts = [(stage, render_stage_comment(stage, doc, revision=rev, gates=results, status=st, approved_by=by,
                                          changes=changes))
             for stage, rev, doc, results, st, by, changes in views]
    body = render_quick_comment(parts, revision=max(v[1] for v in views), status=status_text)
    result = await comments.upsert(gh, settings, full_name, number, stage_marker("quick"), body,
                                   known_id=known.get("quick"))
    known["quick"] = result.comment_id


def _current_view(s, spec: Spec) -> dict:
    rows = []
    for stage in STAGES:
        row = _latest(s, spec.id, stage)
        if row is not None:
            gates = [{"name": r.name, "passed": r.passed, "severity": r.severity, "message": r.message}
                     for r in _gate_objs(row.gates)]
            rows.append({"stage": stage, "revision": row.revision, "status": shown_status(row), "gates": gates})
    return {"state": spec.state, "stages": rows, "base_sha": spec.base_sha, "check_id": spec.spec_check_run_id,
            "full_name": spec.repo_full_name, "issue_number": spec.issue_number}


async def _publish_check(gh, settings: Settings, spec_id: int, view: dict) -> int | None:
    if not view["base_sha"]:
        return view["check_id"]
    state = view["state"]
    conclusion = {
        "approved": "success", "blocked": "failure", "rejected": "cancelled", "stopped": "cancelled",
        "complete": "success",
    }.get(state)
    if state in STAGES or state in ("stale", "quick", questions.STATE):  # waiting for a person
        conclusion = "action_required"
    summary = render("checks/spec.md.j2", **view)
    title = render("checks/spec_title.j2", **view).strip()
    return await upsert_check_run(
        gh, view["full_name"], check_run_id=view["check_id"], name=CHECK_NAME, head_sha=view["base_sha"],
        title=title, summary=summary, conclusion=conclusion,
        details_url=spec_status_url(settings, view["full_name"], view["issue_number"]),
    )


async def write_spec_file(gh, settings: Settings, spec_id: int, stage: str, revision: int | None = None) -> str:
    """Commit a stage as `.omoi/specs/<issue>/<stage>.md` on the spec's branch; returns its web URL.

    Approved stages are always written (the pull request carries the spec); a waiting revision
    is written only when its comment would exceed GitHub's size limit, so the comment can link it.
    """
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if not spec.branch:
            spec.branch = branch_name(spec.issue_number, spec.title)
        q = select(SpecStage).where(SpecStage.spec_id == spec_id, SpecStage.stage == stage)
        row = (s.scalars(q.where(SpecStage.revision == revision)).one() if revision
               else _latest(s, spec_id, stage, ("approved",)))
        full_name, number, branch, base = spec.repo_full_name, spec.issue_number, spec.branch, spec.base_sha
        doc, rev, status = _load_doc(stage, row.document), row.revision, row.status
    await ensure_branch(gh, full_name, branch, base)
    path = f".omoi/specs/{number}/{stage}.md"
    message = render_line("spec/commit_message.txt.j2", approved=status == "approved", stage=stage, revision=rev,
                          issue_number=number)
    await put_file(gh, full_name, branch, path, render_spec_file(stage, doc), message)
    return f"{settings.github_web_url}/{full_name}/blob/{branch}/{path}"


def _overflows(stage: str, doc: BaseModel) -> bool:
    # The comment holds the same content as the file plus headers and gates; leave room for those.
    return len(render_spec_file(stage, doc)) > COMMENT_BUDGET - 8000


# --- commands ---------------------------------------------------------------------------


def approved_documents_json(s, spec_id: int) -> str:
    return "\n".join(f"{k}: {v.model_dump_json()}" for k, v in _approved_docs(s, spec_id).items())


def find_spec(s, full_name: str, number: int) -> Spec | None:
    return s.scalars(select(Spec).where(Spec.repo_full_name == full_name, Spec.issue_number == number)).one_or_none()


def start_spec(
    settings: Settings, full_name: str, number: int, *, repository_id, installation_id, title: str,
    requested_by: str,
) -> tuple[int, bool]:
    """Create (or restart) the spec of an issue; True when planning should start now."""
    with session_scope(settings.database_url) as s:
        spec = find_spec(s, full_name, number)
        if spec is None:
            spec = Spec(repo_full_name=full_name, issue_number=number, repository_id=repository_id,
                        installation_id=installation_id, title=title, requested_by=requested_by,
                        state="planning")
            s.add(spec)
            s.flush()
            return spec.id, True
        # failed and stopped resume where they were (app/commands/lifecycle.py); blocked is revised
        if spec.state in ("acknowledged", "rejected"):
            spec.state, spec.requested_by, spec.last_error, spec.last_error_params = "planning", requested_by, None, None
            return spec.id, True
        return spec.id, False


def mark_revising(settings: Settings, spec_id: int) -> None:
    with session_scope(settings.database_url) as s:
        s.get(Spec, spec_id).state = "planning"


def approve(settings: Settings, spec_id: int, user: str, stage: str | None, revision: int | None) -> Outcome:
    """Approve the waiting stage; returns what to tell the commenter. Follow-up work is queued."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        waiting = s.scalars(select(SpecStage).where(
            SpecStage.spec_id == spec_id, SpecStage.status.in_(ACTIVE))).first()
        if waiting is None:
            return Outcome("replies/approve_nothing.md.j2", {"state": spec.state})
        if (spec.planning or {}).get("quick"):
            return _approve_quick(s, spec, user)
        if waiting.status == "blocked":
            return Outcome("replies/approve_blocked.md.j2", {"stage": waiting.stage, "revision": waiting.revision})
        if stage and stage != waiting.stage:
            return Outcome("replies/approve_wrong_stage.md.j2",
                           {"asked": stage, "stage": waiting.stage, "revision": waiting.revision})
        if revision and revision != waiting.revision:
            return Outcome("replies/approve_stale.md.j2",
                           {"asked": revision, "stage": waiting.stage, "revision": waiting.revision})
        waiting.status, waiting.approved_by, waiting.approved_at = "approved", user, utc_now()
        idx = STAGES.index(waiting.stage)
        next_stage = STAGES[idx + 1] if idx + 1 < len(STAGES) else None
        spec.state = next_stage or "approved"
        done_stage, done_rev = waiting.stage, waiting.revision
    return Outcome("replies/approved.md.j2", {"stage": done_stage, "revision": done_rev, "next_stage": next_stage,
                                              "stages": [done_stage]}, quiet=True)


def _approve_quick(s, spec: Spec, user: str) -> Outcome:
    """The quick path's one approval: all three waiting stages at once (none may be blocked)."""
    rows = s.scalars(select(SpecStage).where(SpecStage.spec_id == spec.id, SpecStage.status.in_(ACTIVE))
                     .order_by(SpecStage.id)).all()
    blocked = next((r for r in rows if r.status == "blocked"), None)
    if blocked is not None or {r.stage for r in rows} != set(STAGES):
        row = blocked or rows[0]
        return Outcome("replies/approve_blocked.md.j2", {"stage": row.stage, "revision": row.revision})
    for row in rows:
        row.status, row.approved_by, row.approved_at = "approved", user, utc_now()
    spec.state = "approved"
    return Outcome("replies/approved.md.j2", {"stage": "quick", "revision": max(r.revision for r in rows),
                                              "next_stage": None, "stages": list(STAGES)})


def reject(settings: Settings, spec_id: int, user: str, reason: str) -> Outcome:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.state = "rejected"
        for row in s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id, SpecStage.status.in_(ACTIVE))):
            row.status = "rejected"
    return Outcome("replies/rejected.md.j2", {"user": user, "reason": reason})


def revisable_stage(settings: Settings, spec_id: int) -> SpecStage | None:
    with session_scope(settings.database_url) as s:
        return s.scalars(select(SpecStage).where(
            SpecStage.spec_id == spec_id, SpecStage.status.in_(ACTIVE))).first()


def status_view(settings: Settings, spec_id: int) -> dict:
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        return _current_view(s, spec)


# for the quick path (app/planning/quick.py), which stores its three stages itself
ensure_digest, latest, load_doc, gate_dicts = _ensure_digest, _latest, _load_doc, _gate_dicts
