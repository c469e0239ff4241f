"""One stage drafted by the model: the prompt (the issue, people's answers and the explore agent's
findings as data), the gate retries and the advisory review. Storing and publishing the result is
app/planning/flow.py's (one stage) or app/planning/quick.py's (all three in one comment)."""
from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, Field

from app.config import Settings
from app.llm.structured import structured_output
from app.observability.logs import get_logger
from app.planning import explore
from app.planning import gates as g
from app.planning.issue_copy import issue_of
from app.planning.schemas import DesignDraft, RequirementsDraft, TasksDraft, assign_ids, assign_task_ids
from app.text.rendering import render, render_line
from app.text.sanitize import sanitize_inline, sanitize_untrusted

log = get_logger("omoi.spec.drafting")
DRAFTS = {"requirements": RequirementsDraft, "design": DesignDraft, "tasks": TasksDraft}
MAX_ANSWER_CHARS = 4000  # per answer comment, in the prompt


# One advisory remark of the reviewer model (an agent's discovery is app/execution/discovery.py's Finding).
# No docstring: it would become part of the JSON schema the model is given.
class ReviewFinding(BaseModel):
    severity: str = Field(description="'warning' for a real problem, 'info' for a suggestion", max_length=16)
    message: str = Field(max_length=500)


class Review(BaseModel):
    findings: list[ReviewFinding] = Field(default_factory=list, max_length=10)


class QuestionsOnly(Exception):
    """The model kept asking questions after its one round of them (reported as a planning failure)."""


@dataclass
class Drafted:
    """What the model wrote for a stage: the document and its gates, or (requirements only) questions."""

    doc: BaseModel | None
    results: list = field(default_factory=list)
    attempts: int = 0
    questions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return g.passed(self.results)


async def issue_context(gh, settings: Settings, spec_id: int, full_name: str, number: int,
                        planning: dict | None) -> dict:
    """The prompt's view of the issue. People's text is data: what GitHub hides (HTML comments, invisible
    characters) is removed and it cannot close its data tags (app/text/sanitize.py)."""
    issue = await issue_of(gh, settings, spec_id, full_name, number)
    planning = planning or {}
    answers = [{"user": sanitize_inline(a.get("user", ""), 60), "text": sanitize_untrusted(a.get("text"),
                                                                                            MAX_ANSWER_CHARS).strip()}
               for a in planning.get("answers") or []]
    return {
        "issue_number": number,
        "title": sanitize_inline(issue.get("title", "")),
        "body": sanitize_untrusted(issue.get("body")).strip() or "(no description)",
        "questions": list(planning.get("questions") or []),
        "answers": answers,
        # the explore agent's own words about the repository: data too, like the digest
        "findings": sanitize_untrusted(explore.findings_of(planning)),
    }


def _finalize(stage: str, draft: BaseModel) -> BaseModel:
    if stage == "requirements":
        return assign_ids(draft)
    if stage == "tasks":
        return assign_task_ids(draft)
    return draft


def run_gates(stage: str, doc: BaseModel, approved: dict, repo_files: set[str]) -> list[g.GateResult]:
    if stage == "requirements":
        return g.check_requirements(doc)
    if stage == "design":
        return g.check_design(doc, approved["requirements"], repo_files)
    return g.check_tasks(doc, approved["requirements"], approved["design"], repo_files)


async def draft(settings: Settings, spec_id: int, stage: str, *, ctx: dict, approved: dict, repo_files: set[str],
                digest: str, planner_model: str, reviewer_model: str, may_ask: bool = False) -> Drafted:
    """Write `stage` (retrying with the gates' findings), then review it. With `may_ask` the model may ask
    clarifying questions instead of writing requirements; without, questions alone are a failed attempt."""
    system = render("prompts/system.j2")
    ctx = {**ctx, "may_ask": may_ask,
           "requirements": approved["requirements"].model_dump_json(indent=1) if "requirements" in approved else "",
           "design": approved["design"].model_dump_json(indent=1) if "design" in approved else ""}
    gate_feedback: list[str] = []
    results: list[g.GateResult] = []
    doc = None
    attempts = 0
    for attempts in range(1, settings.spec_gate_retries + 2):
        prompt = render(f"prompts/{stage}.j2", gate_feedback=gate_feedback, **ctx)
        out = await structured_output(
            prompt, DRAFTS[stage], system=system, context=digest, purpose=stage, spec_id=spec_id,
            model=planner_model,
        )
        if stage == "requirements" and not out.stories:  # questions only (the draft's validator)
            if may_ask:
                log.info("spec_questions", spec_id=spec_id, count=len(out.questions))
                return Drafted(None, attempts=attempts, questions=list(out.questions))
            gate_feedback = [render_line("prompts/requirements_now.j2")]
            continue
        doc = _finalize(stage, out)
        results = run_gates(stage, doc, approved, repo_files)
        if g.passed(results):
            break
        gate_feedback = g.feedback(results)
        log.info("spec_gates_failed", spec_id=spec_id, stage=stage, attempt=attempts, failures=len(gate_feedback))
    if doc is None:  # every attempt asked questions it was no longer allowed to ask
        raise QuestionsOnly(stage)
    results = results + await _review(spec_id, stage, doc, ctx, reviewer_model)
    return Drafted(doc, results, attempts)


async def _review(spec_id: int, stage: str, doc: BaseModel, ctx: dict, model: str) -> list[g.GateResult]:
    """Advisory findings from a second model; never blocks, never fails the phase."""
    try:
        review = await structured_output(
            render("prompts/review.j2", stage=stage, document=doc.model_dump_json(indent=1),
                   issue_number=ctx["issue_number"], title=ctx["title"]),
            Review, model=model, purpose=f"{stage}:review", spec_id=spec_id,
        )
    except Exception as exc:  # noqa: BLE001 - advisory only
        log.warning("spec_review_failed", spec_id=spec_id, stage=stage, error=exc.__class__.__name__)
        return []
    if not review.findings:
        return [g.GateResult("reviewer", True, None, "warning")]
    return [g.GateResult("reviewer", False, f.message, "warning") for f in review.findings]
