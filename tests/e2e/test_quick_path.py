"""The quick path (issue 17 item 9), through the real web process and worker, the real agent CLI
against the Anthropic stand-in and real git behind the GitHub stand-in: an issue labelled
`omoi:quick` (or `/omoi plan --quick`) gets ONE comment with requirements, design and tasks, each
through its gates; one `/omoi approve` approves the three and starts the run, which ends in a PR."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Spec, SpecStage
from app.db.session import session_scope
from tests.fakes.anthropic import request_text
from tests.fakes.webhooks import issues_labeled_payload
from tests.support.agents import Agent
from tests.support.conversation import comment, deliver, omoi_comments, reply_to
from tests.support.plans import GREETER_FILES, GREETER_REQUIREMENTS, QUICK_CODE, QUICK_DESIGN, QUICK_TASKS
from tests.support.waits import wait_for
from tests.support.world import RUN_ENV, Issue, Site

REPO = "octo/greeter"
SITE = Site(REPO, 91, GREETER_FILES, people={"alice": "maintain"},
            issues={5: Issue("Greet users", "Print Hello when run.", "alice")})


@pytest.fixture
def quick_world(fake_github, fake_anthropic, omoi_world, tmp_path):
    fake_anthropic.on_tool("emit_requirements_draft", GREETER_REQUIREMENTS, once=False)
    fake_anthropic.on_tool("emit_design_draft", lambda req: {
        **QUICK_DESIGN, "overview": QUICK_DESIGN["overview"] + (" Uses f-strings." if "<feedback>" in request_text(req)
                                                                 else "")}, once=False)
    fake_anthropic.on_tool("emit_tasks_draft", QUICK_TASKS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)
    return omoi_world(github=fake_github, anthropic=fake_anthropic, site=SITE, beat=True,
                      extra_env=RUN_ENV | {"OMOI_SANDBOX_DIR": str(tmp_path / "sandboxes")})


def spec_comments(world) -> list[str]:
    return [c["body"] for c in omoi_comments(world, "<!-- omoi:spec ")]


def quick_comment(world, rev: int, status: str) -> str:
    def ready():
        found = spec_comments(world)
        assert len(found) <= 1, "one comment for the quick plan"
        return found[0] if found and f"rev={rev} " in found[0] and status in found[0] else None
    return wait_for(ready, timeout=60, message=lambda: world.log_text("worker")[-3000:])


def spec_row(world) -> Spec:
    with session_scope(world.database_url) as s:
        spec = s.scalars(select(Spec)).one()
        s.expunge(spec)
        return spec


def stage_rows(world):
    with session_scope(world.database_url) as s:
        return [(r.stage, r.revision, r.status, r.approved_by) for r in s.scalars(select(SpecStage).order_by(SpecStage.id))]


def test_quick_label_one_comment_one_approval_then_a_pull_request(quick_world, fake_github, fake_anthropic):
    world, fake = quick_world, fake_github
    Agent(fake_anthropic, QUICK_CODE)
    payload = issues_labeled_payload(installation_id=91, repo_full_name=REPO, issue_number=5, label="omoi:quick",
                                     sender_login="alice")
    assert deliver(world, "issues", payload)[0] == 202
    body = quick_comment(world, 1, "waiting for approval")
    assert body.startswith("<!-- omoi:spec stage=quick rev=1 -->")
    assert "WHEN the user runs greeter" in body and "hello.py" in body and "T1" in body and "T2" in body
    assert "Quality gates" in body and "/omoi approve" in body
    assert "Quick path" in omoi_comments(world, "<!-- omoi:ack")[0]["body"]
    assert [r[:3] for r in stage_rows(world)] == [("requirements", 1, "waiting"), ("design", 1, "waiting"),
                                                  ("tasks", 1, "waiting")]

    c = comment(world, "/omoi approve")
    assert "quick plan r1" in wait_for(lambda: reply_to(world, c), message="approve reply")
    assert stage_rows(world) == [("requirements", 1, "approved", "alice"), ("design", 1, "approved", "alice"),
                                 ("tasks", 1, "approved", "alice")]
    quick_comment(world, 1, "approved")
    wait_for(lambda: spec_row(world).run_state == "succeeded", timeout=90,
             message=lambda: world.log_text("worker")[-3000:])
    branch, pr_number = spec_row(world).branch, spec_row(world).pr_number
    head = fake.branch_sha(REPO, branch)
    check = wait_for(lambda: [r for r in fake.check_runs(REPO) if r["name"] == "omoi / implement"
                              and r["head_sha"] == head and r["status"] == "completed"], message="implement check")
    assert check[-1]["conclusion"] == "success"
    pr = fake.pull_request(REPO, pr_number)
    assert pr["head"]["ref"] == branch and pr["body"].startswith("Closes #5")
    assert fake.file_at(REPO, branch, "hello.py") == QUICK_CODE["T1"][1]
    for stage in ("requirements", "design", "tasks"):  # the approved plan is on the branch, like any other
        assert fake.file_at(REPO, branch, f".omoi/specs/5/{stage}.md")
    assert len(spec_comments(world)) == 1
    assert fake.violations == []


def test_plan_quick_command_and_a_revision_of_the_whole_plan(quick_world, fake_anthropic):
    world = quick_world
    c = comment(world, "/omoi plan --quick")
    assert "Quick planning started" in wait_for(lambda: reply_to(world, c), message="plan reply")
    quick_comment(world, 1, "waiting for approval")
    c = comment(world, "/omoi revise use f-strings")
    wait_for(lambda: reply_to(world, c), message="revise reply")
    body = quick_comment(world, 2, "waiting for approval")
    assert "f-strings" in body and "Changes since r1" in body
    assert [r[:3] for r in stage_rows(world)] == [
        ("requirements", 1, "superseded"), ("design", 1, "superseded"), ("tasks", 1, "superseded"),
        ("requirements", 2, "waiting"), ("design", 2, "waiting"), ("tasks", 2, "waiting")]
    asked = [r for r in fake_anthropic.message_requests() if r.get("tool_choice", {}).get("name") ==
             "emit_requirements_draft"]
    first = request_text(asked[0])  # the quick path asks no clarifying questions
    assert "Leave `questions` empty" in first and "clarifying questions in `questions`" not in first
