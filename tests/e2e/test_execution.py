"""Execution end to end: approved tasks -> agent sessions in sandboxes -> omoi's commits on the branch
-> `omoi / implement` check run -> draft pull request, through the real web process, real Celery
workers, the real Claude Code CLI (against the Anthropic stand-in) and real git behind the GitHub
stand-in. People act by commenting in the stand-in or pressing check-run buttons (webhooks).
"""
from __future__ import annotations

import time

import pytest

from tests.support.agents import Agent
from tests.support.conversation import comment, implement_check, press_button, reply_to, task_commits, tracking
from tests.support.plans import CODE, HAPPY, task
from tests.support.services import pg_database, postgres_available, redis_available, require_service
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, BRANCH = APPROVED.repo, APPROVED.branch


@pytest.fixture
def running(request, approved_run, tmp_path):
    """omoi running against the stand-ins; SQLite and the embedded broker unless a test asks for
    `postgresql` (PostgreSQL and Redis, the production pair) through indirect parametrisation."""
    # The embedded broker (the README's default), with beat firing every second: this is what caught
    # kombu's half-written message files (fixed in tasks/fs_transport.py).
    sandboxes = {"OMOI_SANDBOX_DIR": str(tmp_path / "sandboxes")}
    if getattr(request, "param", "sqlite") != "postgresql":
        yield approved_run(extra_env=sandboxes)
        return
    require_service(postgres_available() and redis_available(), "PostgreSQL and Redis")
    with pg_database() as database:
        procs = approved_run(database=database, broker="redis://127.0.0.1:6379/13", extra_env=sandboxes)
        yield procs
        procs.stop_all()  # the processes before their database


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("running", ["sqlite", "postgresql"], indirect=True)
def test_approved_tasks_become_commits_check_run_and_pull_request(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"]),
                           "T3": ("main.py", CODE["main.py"])})
    spec_id = approve_plan(procs, HAPPY)
    c = comment(procs, "/omoi implement")
    assert "Implementing the approved tasks" in wait_for(lambda: reply_to(procs, c), message="implement reply")
    # the draft PR opens early, before any task finished
    pr = wait_for(lambda: fake.pull_requests(REPO), message="draft PR")[0]
    assert pr["draft"] is True and pr["head"]["ref"] == BRANCH and pr["base"]["ref"] == "main"
    wait_run(procs, "succeeded")

    # one commit per task, by omoi, with the trailer, each with exactly the task's file
    commits = task_commits(procs)
    assert {k: len(v) for k, v in commits.items()} == {f"{spec_id}/T1": 1, f"{spec_id}/T2": 1, f"{spec_id}/T3": 1}
    by_sha = {c["sha"]: c for c in fake.commits(REPO, BRANCH)}
    for tid, path in (("T1", "hello.py"), ("T2", "bye.py"), ("T3", "main.py")):
        commit = by_sha[commits[f"{spec_id}/{tid}"][0]]
        assert commit["files"] == [path] and commit["author"].startswith("omoi[bot] <")
        assert commit["message"].startswith(f"{tid}: Write {path} (#5)")
        assert fake.file_at(REPO, BRANCH, path) == CODE[path]
    assert all(ref == f"refs/heads/{BRANCH}" for _, ref, _, _ in fake.pushes)  # never main, never forced
    db = tasks_in_db(procs)
    assert {t.status for t in db.values()} == {"done"}
    assert all(t.evidence and t.evidence[-1]["exit_code"] == 0 for t in db.values())
    # T3 ran from T1's and T2's commits (its dependencies; it may start as soon as both landed, before their
    # workers recorded them): its own verify, run in its sandbox before its push, imports both
    first_checks = [e for e in db["T3"].evidence if not e.get("rerun")]
    assert first_checks and "python3 main.py" in first_checks[0]["command"] and first_checks[0]["exit_code"] == 0
    assert db["T3"].started_at >= max(db["T1"].started_at, db["T2"].started_at)

    check = implement_check(procs)
    assert check["conclusion"] == "success" and "All 3 tasks done" in check["output"]["title"]
    assert "T3" in check["output"]["summary"]
    body = fake.pull_request(REPO, pr["number"])["body"]
    assert body.startswith("Closes #5")
    for rid, tid in (("R1.1", "T1"), ("R1.2", "T2"), ("R1.3", "T3")):
        row = next(line for line in body.splitlines() if line.startswith(f"| **{rid}**"))
        assert tid in row and commits[f"{spec_id}/{tid}"][0][:7] in row and "✅" in row
    assert "python3 main.py | grep -q 'Hello Bye'" in body
    # every task done and verified: the draft became a pull request ready for review (GraphQL)
    wait_for(lambda: fake.pull_request(REPO, pr["number"])["draft"] is False, message="PR ready for review")
    assert len(fake.pull_requests(REPO)) == 1 and fake.calls_matching("POST", r"^/graphql$")
    assert "All 3 tasks are done" in tracking(procs)
    # buttons: Cancel while running, none once it succeeded
    posted = [call.json for call in fake.calls if call.method in ("POST", "PATCH") and "/check-runs" in call.path
              and isinstance(call.json, dict) and "actions" in call.json]
    assert any(a["identifier"] == "cancel" for p in posted for a in p["actions"])
    assert posted[-1]["actions"] == []
    assert fake.violations == []
    assert fake_anthropic.unhandled == []


def test_failing_verify_is_retried_reported_and_resumed(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    plan = [task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello; assert hello.greet() == \"Hello\"'"])]
    agent = Agent(fake_anthropic, {"T1": ("hello.py", "def greet():\n    return 'Howdy'\n")})
    approve_plan(procs, plan)
    comment(procs, "/omoi implement")
    wait_run(procs, "failed")
    t1 = tasks_in_db(procs)["T1"]
    assert t1.status == "failed" and t1.attempts == 2
    assert t1.error == "task/verify_failed" and t1.error_params["exit_code"] == 1  # a reason code and its params
    assert implement_check(procs)["conclusion"] == "failure"
    text = tracking(procs)
    assert "The run stopped" in text and "T1" in text and "`/omoi retry`" in text and "after 2 attempts" in text
    assert task_commits(procs) == {} and fake.pull_requests(REPO)[0]["draft"] is True

    agent.writes["T1"] = ("hello.py", CODE["hello.py"])  # the next session gets it right
    c = comment(procs, "/omoi retry T1")
    assert "Retrying T1" in wait_for(lambda: reply_to(procs, c), message="retry reply")
    wait_run(procs, "succeeded")
    assert len(task_commits(procs)) == 1 and implement_check(procs)["conclusion"] == "success"
    assert fake.violations == []


def test_killed_worker_is_recovered_without_duplicate_commits(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    agent.slow["T1"] = 30  # the first session is busy in `sleep` when its worker is killed
    agent.slow_command = "sleep {seconds}"
    spec_id = approve_plan(procs, HAPPY[:1])
    comment(procs, "/omoi implement")
    wait_for(lambda: (tasks_in_db(procs).get("T1") and tasks_in_db(procs)["T1"].heartbeat_at is not None
                      and agent.seen), timeout=60, message=lambda: "T1 running\n" + procs.log_text("worker")[-3000:])
    procs.start("worker2", "worker", "--beat")
    procs.stop("worker", 9)  # SIGKILL: no clean-up, no message ack, the lease just stops being renewed
    # recovery waits for the lease to lapse and the next health sweep; slow on a loaded 2-core machine
    wait_run(procs, "succeeded", timeout=180)
    t1 = tasks_in_db(procs)["T1"]
    assert t1.attempts == 2 and t1.status == "done"
    assert {k: len(v) for k, v in task_commits(procs).items()} == {f"{spec_id}/T1": 1}
    assert fake.violations == []


def test_change_to_workflows_is_refused(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    plan = [task("ci", ["R1.1"], ".github/workflows/ci.yml", [])]
    Agent(fake_anthropic, {"T1": (".github/workflows/ci.yml", "on: push\njobs: {}\n")})
    approve_plan(procs, plan)
    comment(procs, "/omoi implement")
    wait_run(procs, "failed")
    t1 = tasks_in_db(procs)["T1"]
    assert t1.attempts == 1 and t1.error == "task/refused"
    assert t1.error_params["cause"]["code"] == "policy/blocked_path"
    assert t1.error_params["cause"]["params"]["pattern"] == ".github/**"
    assert ".github/workflows/ci.yml" in tracking(procs) and implement_check(procs)["conclusion"] == "failure"
    assert task_commits(procs) == {} and fake.file_at(REPO, BRANCH, ".github/workflows/ci.yml") is None
    assert fake.violations == []


def test_cancel_button_stops_the_run(running, fake_github, fake_anthropic):
    procs, fake = running, fake_github
    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    agent.slow["T1"] = 60
    fake.set_permission(REPO, "rita", "read")
    approve_plan(procs, HAPPY[:1])
    comment(procs, "/omoi implement")
    wait_for(lambda: agent.seen and implement_check(procs), timeout=60, message="T1 in its slow session")
    press_button(procs, implement_check(procs), "cancel")
    wait_run(procs, "cancelled", timeout=30)
    assert tasks_in_db(procs)["T1"].status == "cancelled"
    # the stopped session never sent its result message, but what it spent counts against the budgets
    wait_for(lambda: tasks_in_db(procs)["T1"].cost_usd > 0, timeout=20, message="the cancelled session's cost")
    assert implement_check(procs)["conclusion"] == "cancelled"
    assert "cancelled" in tracking(procs) and "`/omoi retry`" in tracking(procs)
    assert task_commits(procs) == {}
    # someone with only read access presses Retry: refused, the run stays cancelled
    press_button(procs, implement_check(procs), "retry", sender="rita")
    wait_for(lambda: fake.calls_matching("GET", r"/collaborators/rita/permission$"), message="permission check")
    time.sleep(2)
    assert tasks_in_db(procs)["T1"].status == "cancelled" and implement_check(procs)["conclusion"] == "cancelled"
    assert task_commits(procs) == {}
    assert fake.violations == []


def test_a_run_with_nothing_new_writes_nothing_to_github(running, fake_github, fake_anthropic):
    """While a task works and nothing changes, the health ticks (every second here) and heartbeats send
    GitHub no write: no clock in any body, and a publish that would send the same body again sends
    nothing. The tracking comment says when the run started, and once it ends how long it took."""
    procs, fake = running, fake_github
    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})
    agent.slow["T1"] = 10
    approve_plan(procs, HAPPY[:1])
    comment(procs, "/omoi implement")
    wait_for(lambda: agent.seen and implement_check(procs) and "Started:" in (tracking(procs) or ""), timeout=60,
             message="T1 in its slow session, reported")
    time.sleep(1.5)  # the start of the run settles (PR, check run, tracking comment)
    before = len(fake.calls)
    time.sleep(4.5)  # health ticks every second, heartbeats every half second
    writes = [(c.method, c.path) for c in fake.calls[before:]
              if c.method in ("POST", "PATCH", "PUT", "DELETE") and ".git/" not in c.path]
    assert writes == []
    assert tasks_in_db(procs)["T1"].status == "running"
    wait_run(procs, "succeeded", timeout=120)
    assert "Took:" in tracking(procs) and "Started:" not in tracking(procs)
    assert fake.violations == []
