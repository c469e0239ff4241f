"""Budgets that never lose work end to end (issue 16 item 5): a session that reaches the spec's limit
mid-task stops there (its `max_budget_usd` is what the spec had left, app/execution/budgets.py
`Status.remaining`), its change is pushed to the branch as a work-in-progress commit, the run pauses,
and `/omoi budget +N` resumes it from that commit. Real web process and Celery worker (with beat), the
real Claude Code CLI against the Anthropic stand-in, git behind the GitHub stand-in.
"""
from __future__ import annotations

import base64
import re
from decimal import Decimal

from sqlalchemy import select

from app.db.models import Spec
from app.db.session import session_scope
from tests.support.agents import Sessions, wait_step, write_step
from tests.support.conversation import comment, implement_check, reply_to, task_commits, tracking
from tests.support.plans import CODE, HELLO
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, ISSUE, BRANCH = APPROVED.repo, APPROVED.issue, APPROVED.branch
PARTIAL = "# hello: work in progress\n"


def overwrite_step(path: str, content: str) -> dict:
    """A Sessions step that replaces a file the session did not read (Claude Code's Write refuses that)."""
    data = base64.b64encode(content.encode()).decode()
    return {"tool": "Bash", "command": f"echo {data} | base64 -d > /workspace/{path}"}


# T1's first session writes part of hello.py, then keeps working (past a dollar cap)
SPENDING = [write_step("hello.py", PARTIAL)] + [wait_step(0.2)] * 12


def run_into_the_cap(procs, fake, fake_anthropic, first_session: list) -> tuple[Sessions, int, list[dict]]:
    """One task, T1: its first session (`first_session`) runs into a cap, the next one writes the whole
    hello.py. Returns once the run paused and T1 is pending again: the script, the spec id and the
    work-in-progress commits on the branch."""
    script = Sessions(fake_anthropic, {"T1": [first_session, [overwrite_step("hello.py", CODE["hello.py"])]]})
    spec_id = approve_plan(procs, [HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "paused_budget", timeout=90)
    wait_for(lambda: tasks_in_db(procs)["T1"].status == "pending", timeout=30, message="T1 back to pending")
    wip = [c for c in fake.commits(REPO, BRANCH) if re.search(r"^Omoi-WIP: ", c["message"], re.M)]
    return script, spec_id, wip


def test_spec_budget_reached_mid_task_keeps_the_diff_and_budget_resumes(approved_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = approved_run(files={".github/omoi.yml": "budgets: {spec_usd: 0.1}\n"})
    # it runs past what the spec has left
    script, spec_id, wip = run_into_the_cap(procs, fake, fake_anthropic, SPENDING)

    # the session was capped by what the spec had left, stopped mid-task, and its change was kept
    assert not any(t == "T1" and n == 0 and done >= 13 for t, n, done, _ in script.seen), "the session was not capped"
    assert len(wip) == 1 and wip[0]["files"] == ["hello.py"] and "spec reached its budget" in wip[0]["message"]
    assert fake.file_at(REPO, BRANCH, "hello.py") == PARTIAL
    assert task_commits(procs) == {}
    db = tasks_in_db(procs)
    assert db["T1"].status == "pending" and db["T1"].attempts == 0 and db["T1"].error == "task/checkpoint"
    assert db["T1"].cost_usd > 0
    with session_scope(procs.database_url) as s:
        spec = s.scalars(select(Spec)).one()
        stop, spent = spec.budget_stop, Decimal(str(spec.budget_stop["spec_spent_usd"]))
    assert stop["limit"] == "spec" and stop["limit_usd"] == "0.10"
    assert spent < Decimal("0.25")  # stopped about at the limit, not a whole task budget ($5) later
    check = implement_check(procs)
    assert check["conclusion"] == "action_required" and "Paused at the spec budget" in check["output"]["title"]
    text = tracking(procs)
    assert "work-in-progress commits; nothing was lost" in text and "`/omoi budget +N`" in text

    c = comment(procs, "/omoi budget +10")
    assert "Raised this spec's budget by $10.00" in wait_for(lambda: reply_to(procs, c), message="budget reply")
    wait_run(procs, "succeeded", timeout=120)
    commits = task_commits(procs)
    assert set(commits) == {f"{spec_id}/T1"}
    by_sha = {x["sha"]: x for x in fake.commits(REPO, BRANCH)}
    assert by_sha[commits[f"{spec_id}/T1"][0]]["parents"] == [wip[0]["sha"]]  # continued from the WIP commit
    assert fake.file_at(REPO, BRANCH, "hello.py") == CODE["hello.py"]
    assert len(script.workdirs["T1"]) == 2 and tasks_in_db(procs)["T1"].attempts == 1
    pushes = [(old, new) for _, ref, old, new in fake.pushes if ref == f"refs/heads/{BRANCH}"]
    assert all(pushes[i][0] == pushes[i - 1][1] for i in range(1, len(pushes)))  # never forced
    assert implement_check(procs)["conclusion"] == "success"
    assert fake.violations == []


def test_task_budget_reached_pauses_instead_of_failing_and_budget_lets_the_task_go_on(approved_run, fake_github,
                                                                                    fake_anthropic):
    fake = fake_github
    procs = approved_run(files={".github/omoi.yml": "budgets: {task_usd: 0.08}\n"})
    script, spec_id, wip = run_into_the_cap(procs, fake, fake_anthropic, SPENDING)
    assert len(wip) == 1 and "task reached its budget" in wip[0]["message"]
    assert fake.file_at(REPO, BRANCH, "hello.py") == PARTIAL
    with session_scope(procs.database_url) as s:
        stop = s.scalars(select(Spec)).one().budget_stop
    assert stop["limit"] == "task" and stop["limit_usd"] == "0.08"
    check = implement_check(procs)
    assert check["conclusion"] == "action_required" and "Paused at the per-task budget" in check["output"]["title"]

    c = comment(procs, "/omoi budget +1")
    assert "Raised this spec's budget by $1.00" in wait_for(lambda: reply_to(procs, c), message="budget reply")
    wait_run(procs, "succeeded", timeout=120)
    commits = task_commits(procs)
    by_sha = {x["sha"]: x for x in fake.commits(REPO, BRANCH)}
    assert by_sha[commits[f"{spec_id}/T1"][0]]["parents"] == [wip[0]["sha"]]
    assert fake.file_at(REPO, BRANCH, "hello.py") == CODE["hello.py"] and len(script.workdirs["T1"]) == 2
    assert fake.violations == []


def test_time_limit_reached_mid_task_keeps_the_diff(approved_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = approved_run(extra_env={"OMOI_AGENT_TIMEOUT_SECONDS": "6"})  # the session's time limit
    script, spec_id, wip = run_into_the_cap(procs, fake, fake_anthropic, [write_step("hello.py", PARTIAL), wait_step(30)])
    assert len(wip) == 1 and "task reached its time limit" in wip[0]["message"]
    assert fake.file_at(REPO, BRANCH, "hello.py") == PARTIAL
    assert "per-task time limit (0.1 min)" in tracking(procs)
    c = comment(procs, "/omoi budget +1")
    wait_for(lambda: reply_to(procs, c), message="budget reply")
    wait_run(procs, "succeeded", timeout=120)
    assert fake.file_at(REPO, BRANCH, "hello.py") == CODE["hello.py"] and len(script.workdirs["T1"]) == 2
    assert set(task_commits(procs)) == {f"{spec_id}/T1"} and fake.violations == []
