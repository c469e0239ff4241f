"""Revisions after approval (issue 16), end to end through omoi's real processes and the stand-ins:
an issue edit makes the approved stages stale with one notice (and a run that has not started waits);
`/omoi revise <stage> <text>` rewrites an approved stage and the stages after it become stale until
the new revision is approved; an approval arriving while a revision is being written is refused.
"""
from __future__ import annotations

import pytest

from tests.fakes.anthropic import request_text
from tests.support.agents import Agent
from tests.support.conversation import comment, label, reply_to
from tests.support.lifecycle import edit_issue, notices, spec_row, stage_rows
from tests.support.plans import CODE, GREETER_FILES, GREETER_REQUIREMENTS, GREETER_TASKS, greeter_design, task
from tests.support.waits import wait_for, wait_run
from tests.support.world import APPROVED, Issue, Site, approve_plan

REPO = "octo/greeter"
SITE = Site(REPO, 91, GREETER_FILES, people={"alice": "maintain"},
            issues={5: Issue("Greet users", "Print Hello when run.", "alice")})


@pytest.fixture
def planning(fake_github, fake_anthropic, omoi_world):
    def requirements(req):
        return {**GREETER_REQUIREMENTS, "summary": "With a --name flag."} if "<feedback>" in request_text(req) \
            else GREETER_REQUIREMENTS
    fake_anthropic.on_tool("emit_requirements_draft", requirements, once=False)
    fake_anthropic.on_tool("emit_design_draft", lambda req: greeter_design(), once=False)
    fake_anthropic.on_tool("emit_tasks_draft", GREETER_TASKS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)
    return omoi_world(github=fake_github, anthropic=fake_anthropic, site=SITE)


def _stage(fake, stage):
    found = [c for c in fake.issue_comments(REPO, 5) if c["body"].startswith(f"<!-- omoi:spec stage={stage} ")]
    assert len(found) <= 1, f"duplicate {stage} comments"
    return found[0]["body"] if found else ""


def wait_stage(procs, fake, stage, rev, text):
    return wait_for(lambda: (b := _stage(fake, stage)) and f" rev={rev} " in b and text in b and b, timeout=60,
                    message=lambda: f"{stage} r{rev} {text}\n{procs.log_text('worker')[-3000:]}")


def _asked(fake_anthropic, tool):
    return len([r for r in fake_anthropic.message_requests() if r.get("tool_choice", {}).get("name") == tool])


def test_editing_the_issue_after_an_approval_makes_it_stale_once(planning, fake_github):
    procs, fake = planning, fake_github
    label(procs)
    wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    comment(procs, "/omoi approve requirements r1")
    wait_stage(procs, fake, "design", 1, "waiting for approval")

    edit_issue(procs, title="Greet users nicely")  # the title alone changes nothing
    edit_issue(procs, body="Print Hello and the user's name when run.")
    note = wait_for(lambda: notices(procs, "edited"), timeout=30, message="stale notice")
    assert "The issue changed since requirements r1 was approved" in note[0]
    assert "`/omoi revise requirements <what to change>`" in note[0] and "`/omoi approve`" in note[0]
    wait_stage(procs, fake, "requirements", 1, "stale: the issue changed")
    assert stage_rows(procs) == [("requirements", 1, "approved", "edit"), ("design", 1, "waiting", None)]
    edit_issue(procs, body="Print Hello and the name when run.")  # a second edit: still one notice
    c = comment(procs, "/omoi status")
    assert "| requirements | r1 | outdated |" in wait_for(lambda: reply_to(procs, c), message="status")
    assert len(notices(procs, "edited")) == 1

    c = comment(procs, "/omoi approve")  # keeps the stale stage; the waiting design is not approved by it
    assert "Kept **requirements r1**" in wait_for(lambda: reply_to(procs, c), message="keep reply")
    wait_stage(procs, fake, "requirements", 1, "approved")
    assert stage_rows(procs) == [("requirements", 1, "approved", None), ("design", 1, "waiting", None)]
    c = comment(procs, "/omoi approve design r1")
    wait_stage(procs, fake, "design", 1, "approved by")  # the stage comment is the approval's answer
    assert fake.violations == []


def test_a_run_not_yet_started_waits_for_a_stale_plan(approved_run, fake_github, fake_anthropic):
    procs, fake = approved_run(), fake_github
    Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    approve_plan(procs, [task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello'"])])
    edit_issue(procs, body="Say hello, bye and good night.")
    note = wait_for(lambda: notices(procs, "edited"), timeout=30, message="stale notice")
    assert "requirements r1, design r1, tasks r1 were approved" in note[0] and "The run waits" in note[0]
    assert spec_row(procs).state == "stale"
    c = comment(procs, "/omoi implement")
    assert "the run waits" in wait_for(lambda: reply_to(procs, c), message="implement refused")
    assert spec_row(procs).run_state is None and fake.pull_requests(APPROVED.repo) == []
    c = comment(procs, "/omoi approve")
    assert "Implementing the approved tasks now" in wait_for(lambda: reply_to(procs, c), message="keep reply")
    wait_run(procs, "succeeded")
    assert spec_row(procs).state == "approved"
    assert fake.violations == []


def test_revising_an_approved_stage_makes_the_later_ones_stale(planning, fake_github, fake_anthropic):
    procs, fake = planning, fake_github
    label(procs)
    wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    comment(procs, "/omoi approve")
    wait_stage(procs, fake, "design", 1, "waiting for approval")
    comment(procs, "/omoi approve")
    wait_stage(procs, fake, "tasks", 1, "waiting for approval")
    designs = _asked(fake_anthropic, "emit_design_draft")

    c = comment(procs, "/omoi revise requirements add a --name flag")
    assert "**requirements r2**" in wait_for(lambda: reply_to(procs, c), message="revise reply")
    req = wait_stage(procs, fake, "requirements", 2, "waiting for approval")
    assert "Changes since r1" in req and "--name flag" in req
    wait_stage(procs, fake, "design", 1, "stale: an earlier stage changed")
    wait_stage(procs, fake, "tasks", 1, "stale: an earlier stage changed")
    assert stage_rows(procs) == [
        ("requirements", 1, "approved", None), ("design", 1, "stale", None), ("tasks", 1, "stale", None),
        ("requirements", 2, "waiting", None)]
    assert _asked(fake_anthropic, "emit_design_draft") == designs  # nothing rewritten before the approval
    c = comment(procs, "/omoi approve design")  # a stale stage cannot be approved
    assert "requirements" in wait_for(lambda: reply_to(procs, c), message="wrong stage reply")

    comment(procs, "/omoi approve requirements r2")
    wait_stage(procs, fake, "design", 2, "waiting for approval")
    assert _asked(fake_anthropic, "emit_design_draft") == designs + 1
    assert ("tasks", 1, "stale", None) in stage_rows(procs)  # the tasks wait for the new design
    assert spec_row(procs).state == "design"
    assert fake.violations == []


def test_an_approval_while_a_revision_is_written_is_refused(planning, fake_github, fake_anthropic):
    procs, fake = planning, fake_github
    label(procs)
    wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    fake_anthropic.latency_s = 2  # the revision takes a while to write
    c1 = comment(procs, "/omoi revise please add a --name flag")
    c2 = comment(procs, "/omoi approve")  # written before r2 existed
    assert "requirements r2" in wait_for(lambda: reply_to(procs, c1), message="revise reply")
    refused = wait_for(lambda: reply_to(procs, c2), timeout=60, message="approve reply")
    assert "not approved" in refused or "not applied" in refused
    wait_stage(procs, fake, "requirements", 2, "waiting for approval")
    fake_anthropic.latency_s = 0
    assert [r for r in stage_rows(procs) if r[2] == "approved"] == []  # neither r1 nor r2 was approved
    comment(procs, "/omoi approve requirements r2")
    wait_stage(procs, fake, "requirements", 2, "approved by")  # the pinned approval took
    assert fake.violations == []


def test_plan_after_a_rejection_starts_over(planning, fake_github):
    """`/omoi plan` after `/omoi reject` writes the requirements again, although r1 was approved."""
    procs, fake = planning, fake_github
    label(procs)
    wait_stage(procs, fake, "requirements", 1, "waiting for approval")
    comment(procs, "/omoi approve")
    wait_stage(procs, fake, "design", 1, "waiting for approval")
    c = comment(procs, "/omoi reject")
    assert "rejected" in wait_for(lambda: reply_to(procs, c), message="reject reply")
    c = comment(procs, "/omoi plan")
    wait_stage(procs, fake, "requirements", 2, "waiting for approval")
    assert spec_row(procs).state == "requirements"
    assert stage_rows(procs) == [("requirements", 1, "approved", None), ("design", 1, "rejected", None),
                                 ("requirements", 2, "waiting", None)]
    assert fake.violations == []
