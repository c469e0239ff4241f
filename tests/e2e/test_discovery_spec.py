"""Discovery into the spec (issue 17 item 8), through the real web process and worker: an agent's
proposed scope change (a `discoveries` row in state proposed, as app/execution/discovery.py records
it during a run) is approved with `/omoi approve D<n>`: the requirements and the design are revised
with it (each comment shows the changes), then the tasks, which wait for a person; `/omoi decline
D<n>` closes a proposal with a reply and changes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Discovery, SpecStage
from app.db.session import session_scope
from tests.fakes.anthropic import forced_tool, request_text
from tests.support.conversation import comment, omoi_comments, reply_to
from tests.support.plans import FRENCH_DESIGN, FRENCH_REQUIREMENTS, FRENCH_TASKS, HAPPY
from tests.support.waits import wait_for
from tests.support.world import APPROVED, approve_plan


@pytest.fixture
def world(fake_github, fake_anthropic, omoi_world):
    fake_anthropic.on_tool("emit_requirements_draft", FRENCH_REQUIREMENTS, once=False)
    fake_anthropic.on_tool("emit_design_draft", FRENCH_DESIGN, once=False)
    fake_anthropic.on_tool("emit_tasks_draft", FRENCH_TASKS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)
    return omoi_world(github=fake_github, anthropic=fake_anthropic, site=APPROVED)


def propose(world, spec_id: int, **finding) -> int:
    """What a task's agent reported and omoi recorded as a proposed spec revision; its id (D<n>)."""
    with session_scope(world.database_url) as s:
        row = Discovery(spec_id=spec_id, task_id="T1", status="proposed", files=[], **finding)
        s.add(row)
        s.flush()
        return row.id


def rows(world):
    with session_scope(world.database_url) as s:
        return [(r.stage, r.revision, r.status, r.approved_by) for r in s.scalars(select(SpecStage).order_by(SpecStage.id))]


def statuses(world) -> dict[int, str]:
    with session_scope(world.database_url) as s:
        return {d.id: d.status for d in s.scalars(select(Discovery))}


def asked(fake_anthropic, tool: str) -> list[str]:
    return [request_text(r) for r in fake_anthropic.message_requests() if forced_tool(r) == tool]


def test_decline_then_approve_a_scope_change_revises_requirements_design_and_tasks(world, fake_github, fake_anthropic):
    spec_id = approve_plan(world, HAPPY)
    french = propose(world, spec_id, kind="missing_requirement", title="Greetings in French",
                     description="Users also want Bonjour.", evidence="README mentions French users",
                     suggested_phase="requirements")
    split = propose(world, spec_id, kind="refactor", title="One module for all greetings",
                    description="Put the greetings together.", suggested_phase="design")

    c = comment(world, f"/omoi decline D{split} not worth it")
    body = wait_for(lambda: reply_to(world, c), message="decline reply")
    assert f"Declined the proposed spec revision **One module for all greetings** (D{split}): not worth it" in body
    assert statuses(world) == {french: "proposed", split: "declined"}
    c = comment(world, f"/omoi decline D{split}")  # closed already
    assert f"no open proposed spec revision D{split}" in wait_for(lambda: reply_to(world, c), message="again")

    c = comment(world, f"/omoi approve D{french}")
    assert f"(D{french})" in wait_for(lambda: reply_to(world, c), message="approve reply")
    wait_for(lambda: ("tasks", 2, "waiting", None) in rows(world), timeout=90,
             message=lambda: world.log_text("worker")[-4000:])
    assert rows(world) == [
        ("requirements", 1, "approved", "alice"), ("design", 1, "stale", "alice"), ("tasks", 1, "stale", "alice"),
        ("requirements", 2, "approved", "alice"), ("design", 2, "approved", "alice"), ("tasks", 2, "waiting", None)]
    assert statuses(world) == {french: "approved", split: "declined"}
    # the finding reached each stage's model call as the reviewers' feedback
    for tool in ("emit_requirements_draft", "emit_design_draft", "emit_tasks_draft"):
        text = asked(fake_anthropic, tool)[-1]
        assert "<feedback>" in text and "Greetings in French" in text, tool
    assert "WHEN asked in French" in asked(fake_anthropic, "emit_design_draft")[-1]  # the revised requirements
    # each revised stage shows what changed since the approved revision
    def stage_comments() -> dict:
        return {c["body"].split("stage=", 1)[1].split(" ", 1)[0]: c["body"] for c in omoi_comments(world, "<!-- omoi:spec ")}

    # the comment follows the stage's row (written, then shown on GitHub)
    by_stage = wait_for(lambda: (lambda b: b if "waiting for approval" in b.get("tasks", "") else None)(stage_comments()),
                        message="the tasks comment shows the new revision waiting")
    assert "Changes since r1" in by_stage["requirements"] and "French" in by_stage["requirements"]
    assert "approved" in by_stage["requirements"].split("\n", 2)[1]
    assert "Changes since r1" in by_stage["design"] and "fr.py" in by_stage["design"]
    assert "waiting for approval" in by_stage["tasks"] and "fr.py" in by_stage["tasks"]
    branch = APPROVED.branch
    assert "French" in fake_github.file_at(APPROVED.repo, branch, ".omoi/specs/5/requirements.md")
    assert fake_github.violations == []
