"""Every ending is an ending (issue 16), end to end through omoi's real processes and the stand-ins:
the pull request merged (complete, one closing summary, `omoi:done`), closed unmerged (the run ends,
the work stays on the branch), the issue closed mid-run (nothing left running; reopening resumes),
the label removed mid-planning (what the model was writing is dropped; relabelling resumes).
"""
from __future__ import annotations

import time

import pytest
from app.db.models import SpecStage, SpecTask
from app.db.session import session_scope
from sqlalchemy import select
from tests.fakes.github.rest import people
from tests.support.agents import Agent
from tests.support.conversation import comment, implement_check, reply_to, tracking
from tests.support.lifecycle import (close_issue, close_pr, merge_pr, notices, relabel, reopen_issue, reopen_pr,
                                     spec_row, stage_rows, unlabel)
from tests.support.plans import CODE, GREETER_REQUIREMENTS, task
from tests.support.services import pg_database, postgres_available, redis_available, require_service
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, Issue, Site, approve_plan

REPO = APPROVED.repo
ONE_TASK = [task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello; assert hello.greet() == \"Hello\"'"])]


def _run_to_pr(procs, fake, fake_anthropic, *, slow: float = 0) -> tuple[Agent, int]:
    people.add_label(fake, REPO, APPROVED.issue, "omoi")  # the label that started omoi is on the issue
    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    if slow:
        agent.slow["T1"] = slow
    approve_plan(procs, ONE_TASK)
    comment(procs, "/omoi implement")
    pr = wait_for(lambda: fake.pull_requests(REPO), timeout=60, message="draft PR")[0]
    return agent, pr["number"]


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(request, approved_run):
    """omoi on SQLite and the embedded broker, or on PostgreSQL and Redis (the production pair)."""
    if request.param == "sqlite":
        yield approved_run()
        return
    require_service(postgres_available() and redis_available(), "PostgreSQL and Redis")
    with pg_database() as database:
        procs = approved_run(database=database, broker="redis://127.0.0.1:6379/12")
        yield procs
        procs.stop_all()  # the processes before their database


def test_merged_pull_request_completes_the_spec(stack, fake_github, fake_anthropic):
    procs, fake = stack, fake_github
    _, number = _run_to_pr(procs, fake, fake_anthropic)
    wait_run(procs, "succeeded")
    merge_pr(procs, number)
    summary = wait_for(lambda: notices(procs, "complete"), timeout=60, message="closing summary")
    assert len(summary) == 1 and "merged by @alice" in summary[0] and "1/1 done" in summary[0]
    assert "$" in summary[0]
    wait_for(lambda: "pull request was merged" in tracking(procs), timeout=30, message="tracking says merged")
    spec = spec_row(procs)
    assert (spec.state, spec.run_state) == ("complete", "merged") and spec.completed_at is not None
    assert "omoi:done" in [lbl["name"] for lbl in fake.issue(REPO, 5)["labels"]]
    check = wait_for(lambda: (c := implement_check(procs)) and c["output"]["title"].startswith("Merged") and c,
                     timeout=30, message="check run says merged")
    assert check["conclusion"] == "success" and check.get("actions", []) == []
    # a redelivery (or GitHub closing the issue the PR names) announces nothing twice
    close_issue(procs)
    c = comment(procs, "/omoi status")
    assert "Status: complete" in wait_for(lambda: reply_to(procs, c), message="status reply")
    assert len(notices(procs, "complete")) == 1 and notices(procs, "stopped") == []
    assert spec_row(procs).state == "complete"
    c = comment(procs, "/omoi approve")
    assert "complete" in wait_for(lambda: reply_to(procs, c), message="approve after merge")
    assert fake.violations == []


def test_closed_pull_request_ends_the_run_and_keeps_the_work(approved_run, fake_github, fake_anthropic):
    procs, fake = approved_run(), fake_github
    _, number = _run_to_pr(procs, fake, fake_anthropic)
    wait_run(procs, "succeeded")
    head = fake.branch_sha(REPO, APPROVED.branch)
    close_pr(procs, number, sender="alice")
    note = wait_for(lambda: notices(procs, "closed"), timeout=60, message="closed notice")
    assert len(note) == 1 and "closed without merging" in note[0] and APPROVED.branch in note[0]
    wait_for(lambda: "closed without merging" in tracking(procs), timeout=30, message="tracking says closed")
    spec = spec_row(procs)
    assert (spec.state, spec.run_state) == ("approved", "closed")
    assert fake.branch_sha(REPO, APPROVED.branch) == head  # the work stays on the branch
    assert fake.file_at(REPO, APPROVED.branch, "hello.py") == CODE["hello.py"]
    c = comment(procs, "/omoi implement")
    assert "reopen it" in wait_for(lambda: reply_to(procs, c), message="implement after close")
    c = comment(procs, "/omoi status")
    body = wait_for(lambda: reply_to(procs, c), message="status reply")
    assert "Run: closed" in body and "1/1 tasks done" in body and "reopen the pull request" in body
    reopen_pr(procs, number)  # the run continues (here: every task is already done)
    wait_run(procs, "succeeded")
    assert "was reopened by @alice" in notices(procs, "closed")[0] and len(notices(procs, "closed")) == 1
    assert fake.violations == []


def test_closing_the_issue_mid_run_leaves_nothing_running(approved_run, fake_github, fake_anthropic):
    procs, fake = approved_run(), fake_github
    agent, _ = _run_to_pr(procs, fake, fake_anthropic, slow=40)
    wait_for(lambda: tasks_in_db(procs).get("T1") and tasks_in_db(procs)["T1"].status == "running", timeout=60,
             message="T1 running")
    close_issue(procs)
    note = wait_for(lambda: notices(procs, "stopped"), timeout=60, message="stopped notice")
    assert len(note) == 1 and "closed it" in note[0] and "the run was stopped" in note[0]
    spec = spec_row(procs)
    assert (spec.state, spec.stopped_from, spec.run_state) == ("stopped", "approved", "cancelled")

    def settled():
        with session_scope(procs.database_url) as s:
            rows = s.scalars(select(SpecTask)).all()
            return all(t.status != "running" and t.lease_owner is None for t in rows)
    wait_for(settled, timeout=30, message="no task running")
    wait_for(lambda: implement_check(procs) and implement_check(procs)["conclusion"] == "cancelled", timeout=30,
             message="check run cancelled")
    pushes = len(fake.pushes)
    time.sleep(4)  # a lease period and more: nothing is claimed again, nothing pushed
    assert tasks_in_db(procs)["T1"].status == "cancelled" and len(fake.pushes) == pushes

    agent.slow.clear()
    reopen_issue(procs)  # `/omoi plan` semantics: the spec resumes where it stopped, and so does the run
    wait_run(procs, "succeeded")
    assert spec_row(procs).state == "approved"
    assert "resumed" in notices(procs, "stopped")[0] and len(notices(procs, "stopped")) == 1
    assert fake.file_at(REPO, APPROVED.branch, "hello.py") == CODE["hello.py"]
    assert fake.violations == []


def test_reject_after_approval_stops_the_run(approved_run, fake_github, fake_anthropic):
    procs, fake = approved_run(), fake_github
    _run_to_pr(procs, fake, fake_anthropic, slow=40)
    wait_for(lambda: tasks_in_db(procs).get("T1") and tasks_in_db(procs)["T1"].status == "running", timeout=60,
             message="T1 running")
    c = comment(procs, "/omoi reject not needed after all")
    body = wait_for(lambda: reply_to(procs, c), timeout=30, message="reject reply")
    assert "rejected" in body and "the run was stopped" in body
    spec = spec_row(procs)
    assert (spec.state, spec.run_state, spec.run_error) == ("rejected", "cancelled", "run/stopped")
    wait_for(lambda: all(t.status == "cancelled" and t.lease_owner is None for t in tasks_in_db(procs).values()),
             timeout=30, message="tasks cancelled")
    wait_for(lambda: "plan was rejected" in tracking(procs), timeout=30, message="tracking says why")
    assert fake.violations == []


PLAN_SITE = Site("octo/greeter", 92, {"README.md": "# greeter\n", "greeter.py": "print('hi')\n"},
                 people={"alice": "maintain"}, issues={5: Issue("Greet users", "Print Hello when run.", "alice")})


def test_removing_the_label_mid_planning_stops_it_and_relabelling_resumes(fake_github, fake_anthropic, omoi_world):
    """Commands and phases of one issue never overlap (the issue lock): the removal is handled as soon
    as the stage being written is done, and nothing more is written or asked of the model."""
    fake = fake_github
    fake_anthropic.on_tool("emit_requirements_draft", GREETER_REQUIREMENTS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)
    fake_anthropic.latency_s = 3  # the model is still writing the requirements when the label goes
    procs = omoi_world(github=fake, anthropic=fake_anthropic, site=PLAN_SITE)
    relabel(procs)
    wait_for(lambda: fake_anthropic.message_requests(), timeout=30, message="the model was asked")
    unlabel(procs)
    note = wait_for(lambda: notices(procs, "stopped"), timeout=60, message="stopped notice")
    assert "removed its label" in note[0] and "planning stopped" in note[0]
    asked = len(fake_anthropic.message_requests())
    fake_anthropic.latency_s = 0
    c = comment(procs, "/omoi approve")
    assert "stopped" in wait_for(lambda: reply_to(procs, c), message="approve while stopped")
    time.sleep(2)
    assert len(fake_anthropic.message_requests()) == asked  # nothing more was asked of the model
    spec = spec_row(procs)
    assert (spec.state, spec.stopped_from) == ("stopped", "requirements")
    assert stage_rows(procs) == [("requirements", 1, "waiting", None)]  # the approval was not applied
    spec_check = [r for r in fake.check_runs(REPO) if r["name"] == "omoi / spec"]
    assert spec_check and spec_check[-1]["conclusion"] == "cancelled"

    relabel(procs)  # `/omoi plan` semantics: resumes where it stopped; the waiting stage waits again
    wait_for(lambda: "resumed" in (notices(procs, "stopped") or [""])[0], timeout=30, message="resumed notice")
    assert spec_row(procs).state == "requirements" and len(notices(procs, "stopped")) == 1
    assert stage_rows(procs) == [("requirements", 1, "waiting", None)]
    c = comment(procs, "/omoi status")
    assert "Status: requirements" in wait_for(lambda: reply_to(procs, c), message="status reply")
    assert fake.violations == []
