"""New work found by agents during a task.

An agent reports a finding (schema `Finding`) through the `report_discovery` tool (an in-process
MCP tool, `report_tool`, offered in every mode, so read-only exploration tasks can report too), or
by writing `.omoi-discoveries.json` (a list of findings) in its work dir, which
app/execution/task_runner.py downloads and deletes before the diff is taken. `record` (inside the
transaction that records the attempt, so a run cannot be declared finished between the two) stores
every finding and decides:

- a duplicate of an existing task or an earlier discovery (normalised title similarity at least
  `discovery_similarity`, or the same files for the same kind) -> `duplicate`, nothing added;
- a change to the agreed scope (kind `missing_requirement`, or suggested phase requirements or
  design) -> `proposed`: posted on the issue as a proposed spec revision (`post_proposals`); a
  `/omoi approve D<n>` revises the requirements (a missing requirement) or the design with the
  finding, then the stages after it, up to a tasks revision people approve like any other
  (app/planning/scope.py); `/omoi decline D<n>` closes it (`declined`);
- otherwise a new task in the running graph (ids continue after the highest, it depends on the
  reporting task; an `investigation` becomes a read-only exploration task), at most
  `max_discovered_tasks_per_spec` per spec -> `added`, or `over_limit` past that.
"""
from __future__ import annotations

import difflib
import json
import re
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import select, update

from app.config import Settings
from app.db.models import Discovery, Spec, SpecTask
from app.db.session import session_scope
from app.execution.task_ids import task_number
from app.github import comments
from app.observability.logs import get_logger
from app.text.rendering import render, render_line
from app.text import markers

log = get_logger("omoi.discovery")
RESULT_FILE = ".omoi-discoveries.json"
MAX_FINDINGS = 10
TEXTS = "execution/discovery_texts.j2"  # every sentence below, chosen by `part`
POSTING = 0  # comment_id while one advance posts the proposal (GitHub comment ids are positive)


class Finding(BaseModel):
    kind: Literal["missing_requirement", "bug", "refactor", "investigation"]
    title: str = Field(min_length=3, max_length=200)
    description: str = Field("", max_length=4000)
    evidence: str = Field("", max_length=4000)
    suggested_phase: Literal["requirements", "design", "tasks"] = "tasks"
    files: list[str] = Field(default_factory=list, max_length=20)


def parse(raw: bytes | str | None) -> list[Finding]:
    """The valid findings in the agent's file (invalid entries are skipped, never fatal)."""
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return []
    if isinstance(data, dict):
        data = data.get("discoveries") or [data]
    out = []
    for item in data if isinstance(data, list) else []:
        try:
            out.append(_finding(item))
        except ValidationError:
            continue
    return out[:MAX_FINDINGS]


def _finding(item) -> Finding:
    """One validated finding, its files kept only as paths inside the repository."""
    f = Finding.model_validate(item)
    f.files = [p.strip().lstrip("./") for p in f.files
               if isinstance(p, str) and p.strip() and ".." not in p.split("/") and not p.startswith("/")]
    return f


def report_tool(sink: list[Finding]):
    """The `report_discovery` tool for one agent session; valid findings are appended to `sink`."""
    from claude_agent_sdk import tool

    schema = Finding.model_json_schema()

    @tool("report_discovery", render_line(TEXTS, part="tool"), schema)
    async def report_discovery(args: dict) -> dict:
        try:
            finding = _finding(args)
        except ValidationError as exc:
            return {"content": [{"type": "text", "text": render_line(TEXTS, part="invalid", error=exc)}], "is_error": True}
        if len(sink) >= MAX_FINDINGS:
            return {"content": [{"type": "text", "text": render_line(TEXTS, part="too_many", limit=MAX_FINDINGS)}],
                    "is_error": True}
        sink.append(finding)
        return {"content": [{"type": "text", "text": render_line(TEXTS, part="recorded")}]}

    return report_discovery


def normalise(title: str) -> str:
    t = title.lower().strip()
    t = re.sub(r"^(fix|refactor|investigate|write|add|implement)\s*:?\s+", "", t)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", t).split())


def similar(a: str, b: str, threshold: float) -> bool:
    na, nb = normalise(a), normalise(b)
    return bool(na and nb) and difflib.SequenceMatcher(None, na, nb).ratio() >= threshold


def changes_scope(f: Finding) -> bool:
    return f.kind == "missing_requirement" or f.suggested_phase in ("requirements", "design")


def record(s, settings: Settings, spec_id: int, task_id: str, findings: list[Finding]) -> list[Discovery]:
    """Store the findings and add tasks to the graph (call inside the attempt's transaction)."""
    tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id)).all()
    earlier = s.scalars(select(Discovery).where(Discovery.spec_id == spec_id)).all()
    next_number = max((task_number(t.task_id) for t in tasks), default=0) + 1
    added_before = sum(1 for t in tasks if t.origin == "discovery")
    out = []
    for f in findings:
        row = Discovery(spec_id=spec_id, task_id=task_id, kind=f.kind, title=f.title, description=f.description,
                        evidence=f.evidence, suggested_phase=f.suggested_phase, files=list(f.files))
        dup = next((t.task_id for t in tasks if similar(t.title, f.title, settings.discovery_similarity)), None)
        if dup is None:
            prior = next((d for d in earlier if similar(d.title, f.title, settings.discovery_similarity)
                          or (f.files and d.kind == f.kind and sorted(d.files or []) == sorted(f.files))), None)
            dup = f"discovery {prior.id}" if prior is not None else None
        if dup:
            row.status, row.duplicate_of = "duplicate", dup
        elif changes_scope(f):
            row.status = "proposed"
        elif added_before >= settings.max_discovered_tasks_per_spec:
            row.status = "over_limit"
        else:
            new_id = f"T{next_number}"
            next_number += 1
            added_before += 1
            explore = f.kind == "investigation"
            body = render_line(TEXTS, part="task_description", body=f.description or f.title, evidence=f.evidence,
                               task=task_id)
            t = SpecTask(spec_id=spec_id, task_id=new_id, title=render_line(TEXTS, part="task_title", kind=f.kind,
                                                                            title=f.title)[:300],
                         description=body, covers=[], depends_on=[task_id], files=list(f.files), verify=[],
                         origin="discovery", kind="explore" if explore else "implement")
            s.add(t)
            tasks.append(t)
            row.status, row.new_task_id = "added", new_id
        s.add(row)
        earlier.append(row)
        out.append(row)
        log.info("discovery_recorded", spec_id=spec_id, task=task_id, kind=f.kind, status=row.status,
                 new_task=row.new_task_id, duplicate_of=row.duplicate_of)
    s.flush()
    return out


def views(s, spec_id: int) -> list[dict]:
    rows = s.scalars(select(Discovery).where(Discovery.spec_id == spec_id).order_by(Discovery.id)).all()
    return [{"id": d.id, "task": d.task_id, "kind": d.kind, "title": d.title, "status": d.status,
             "new_task": d.new_task_id, "duplicate_of": d.duplicate_of, "phase": d.suggested_phase} for d in rows]


def proposal_marker(discovery_id: int) -> str:
    return markers.DISCOVERY.prefix(id=discovery_id)


async def post_proposals(gh, settings: Settings, spec_id: int) -> int:
    """Post each scope-changing finding once as a proposed spec revision on the issue."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        full_name, number = spec.repo_full_name, spec.issue_number
        todo = [(d.id, {"id": d.id, "task": d.task_id, "kind": d.kind, "title": d.title,
                        "description": d.description, "evidence": d.evidence, "phase": d.suggested_phase,
                        "status": d.status})
                for d in s.scalars(select(Discovery).where(Discovery.spec_id == spec_id, Discovery.status == "proposed",
                                                           Discovery.comment_id.is_(None)))]
    posted_count = 0
    for discovery_id, view in todo:
        # Claimed first (finished tasks advance together, each posting what it finds unposted): one comment.
        with session_scope(settings.database_url) as s:
            if s.execute(update(Discovery).where(Discovery.id == discovery_id, Discovery.comment_id.is_(None))
                         .values(comment_id=POSTING)).rowcount != 1:
                continue
        try:
            posted = await comments.upsert(gh, settings, full_name, number, proposal_marker(discovery_id),
                                           render("execution/discovery_proposal.md.j2", d=view, spec_id=spec_id))
        except BaseException:
            with session_scope(settings.database_url) as s:  # not posted: the next advance tries again
                s.execute(update(Discovery).where(Discovery.id == discovery_id, Discovery.comment_id == POSTING)
                          .values(comment_id=None))
            raise
        with session_scope(settings.database_url) as s:
            s.get(Discovery, discovery_id).comment_id = posted.comment_id
        posted_count += 1
    return posted_count


def approve_proposal(settings: Settings, spec_id: int, user: str, discovery_id: int | None = None) -> dict | None:
    """`/omoi approve D<n>` (or `/omoi approve` with no stage waiting: the oldest proposal): accept a proposed
    spec revision. Returns its view, with the feedback for the revision and the first stage it revises
    (requirements for a missing requirement, else the suggested phase), or None if there is no such proposal."""
    with session_scope(settings.database_url) as s:
        d = _proposal(s, spec_id, discovery_id)
        if d is None:
            return None
        d.status = "approved"
        feedback = render_line(TEXTS, part="feedback", kind=d.kind, task=d.task_id, user=user, title=d.title,
                               description=d.description, evidence=d.evidence)
        start = "requirements" if d.kind == "missing_requirement" else d.suggested_phase
        return {"id": d.id, "title": d.title, "feedback": feedback[:4000], "start": start}


def decline_proposal(settings: Settings, spec_id: int, discovery_id: int | None) -> dict | None:
    """`/omoi decline D<n>` (no id: the oldest proposal): close a proposed spec revision; the plan stays as it
    is (None: no such proposal)."""
    with session_scope(settings.database_url) as s:
        d = _proposal(s, spec_id, discovery_id)
        if d is None:
            return None
        d.status = "declined"
        return {"id": d.id, "title": d.title}


def _proposal(s, spec_id: int, discovery_id: int | None) -> Discovery | None:
    q = select(Discovery).where(Discovery.spec_id == spec_id, Discovery.status == "proposed")
    if discovery_id is not None:
        q = q.where(Discovery.id == discovery_id)
    return s.scalars(q.order_by(Discovery.id).limit(1)).first()


async def show_decision(gh, settings: Settings, spec_id: int, discovery_id: int, user: str, why: str = "") -> None:
    """Edit the proposal's comment to say who approved or declined it (and why)."""
    with session_scope(settings.database_url) as s:
        spec, d = s.get(Spec, spec_id), s.get(Discovery, discovery_id)
        if not d.comment_id:
            return  # never posted (the run ended first), or being posted: the reply is enough
        full_name, number, comment_id = spec.repo_full_name, spec.issue_number, d.comment_id
        view = {"id": d.id, "task": d.task_id, "kind": d.kind, "title": d.title, "description": d.description,
                "evidence": d.evidence, "phase": d.suggested_phase, "status": d.status}
    await comments.upsert(gh, settings, full_name, number, proposal_marker(discovery_id),
                          render("execution/discovery_proposal.md.j2", d=view, spec_id=spec_id, by=user, why=why),
                          known_id=comment_id)
