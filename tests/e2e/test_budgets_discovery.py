"""Budgets, discovery and supervision end to end (issue 6), like tests/e2e/test_execution.py: the real
web process and Celery worker (with beat), the real Claude Code CLI against the Anthropic stand-in
(scripted per task: tests/support/agents.py Script), git behind the GitHub stand-in.
"""
from __future__ import annotations

import json

from sqlalchemy import select

from app.db.models import Discovery, Intervention, SpecStage
from app.db.session import session_scope
from tests.fakes.anthropic import request_text, tool_results
from tests.support.agents import GUIDANCE, REDIRECT, Script
from tests.support.conversation import comment, implement_check, reply_to, task_commits, tracking
from tests.support.plans import BYE_AFTER_HELLO, CODE, FRENCH_DESIGN, HAPPY_REQUIREMENTS_DRAFT, HELLO, task
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, ISSUE, BRANCH = APPROVED.repo, APPROVED.issue, APPROVED.branch


def test_budget_pauses_run_and_budget_command_resumes_it(supervised_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = supervised_run({".github/omoi.yml": "budgets: {spec_usd: 0.001}\n"})
    script = Script(fake_anthropic)
    script.writes = {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"])}
    spec_id = approve_plan(procs, [HELLO, BYE_AFTER_HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "paused_budget")
    wait_for(lambda: tasks_in_db(procs)["T1"].status == "pending", timeout=30, message="T1 back to pending")
    db = tasks_in_db(procs)
    # T1 started under the limit; its session was capped at what the spec had left (issue 16), so it stopped
    # there, whatever it had changed kept on the branch as a work-in-progress commit; T2 never started
    assert db["T1"].status == "pending" and db["T1"].cost_usd > 0
    assert db["T2"].status == "pending" and db["T2"].attempts == 0
    assert task_commits(procs) == {}
    check = implement_check(procs)
    assert check["conclusion"] == "action_required" and "Paused at the spec budget" in check["output"]["title"]
    text = tracking(procs)
    assert "spec budget was reached" in text and "of $0.00" in text and "`/omoi budget +N`" in text

    c = comment(procs, "/omoi budget")
    shown = wait_for(lambda: reply_to(procs, c), message="budget reply")
    assert "| this spec |" in shown and "$0.00 |" in shown

    c = comment(procs, "/omoi budget +10")
    assert "Raised this spec's budget by $10.00" in wait_for(lambda: reply_to(procs, c), message="budget +10 reply")
    wait_run(procs, "succeeded")
    # T1 finished from where it stopped (a next session with nothing to add: its WIP commit is its change)
    assert f"{spec_id}/T2" in task_commits(procs) and tasks_in_db(procs)["T1"].status == "done"
    assert fake.file_at(REPO, BRANCH, "hello.py") == CODE["hello.py"]
    assert implement_check(procs)["conclusion"] == "success"
    assert fake.violations == []


def test_discoveries_add_a_task_and_propose_a_revision(supervised_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = supervised_run()
    script = Script(fake_anthropic)
    script.writes = {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"])}
    script.findings["T1"] = [
        {"kind": "bug", "title": "bye module is missing", "description": "main needs bye.bye().",
         "evidence": "ImportError: No module named bye", "suggested_phase": "tasks", "files": ["bye.py"]},
        {"kind": "missing_requirement", "title": "Greetings in French", "description": "Users also want Bonjour.",
         "evidence": "README mentions French users", "suggested_phase": "requirements"},
        {"kind": "refactor", "title": "Write hello.py", "description": "same as the task itself"},
    ]
    fake_anthropic.on_tool("emit_tasks_draft", {"tasks": [HELLO, task("fr", ["R1.2", "R1.3"], "fr.py", [])]})
    # an approved scope change revises the requirements and design first (app/planning/scope.py)
    fake_anthropic.on_tool("emit_requirements_draft", HAPPY_REQUIREMENTS_DRAFT)
    fake_anthropic.on_tool("emit_design_draft", FRENCH_DESIGN)
    spec_id = approve_plan(procs, [HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded", timeout=120)

    db = tasks_in_db(procs)
    assert db["T2"].origin == "discovery" and db["T2"].depends_on == ["T1"] and db["T2"].title == "Fix: bye module is missing"
    assert db["T2"].status == "done" and db["T2"].started_at >= db["T1"].finished_at
    commits = task_commits(procs)
    assert set(commits) == {f"{spec_id}/T1", f"{spec_id}/T2"}
    assert fake.file_at(REPO, BRANCH, "bye.py") == CODE["bye.py"]
    assert fake.file_at(REPO, BRANCH, ".omoi-discoveries.json") is None  # never committed
    assert "omoi-discoveries.json" in script.prompts["T1"][0]  # the prompt tells the agent how to report
    with session_scope(procs.database_url) as s:
        found = {d.title: (d.status, d.new_task_id, d.duplicate_of) for d in s.scalars(select(Discovery))}
    assert found == {"bye module is missing": ("added", "T2", None),
                     "Greetings in French": ("proposed", None, None),
                     "Write hello.py": ("duplicate", None, "T1")}
    text = tracking(procs)
    assert "#### Discoveries" in text and "added as T2" in text and "duplicate of T1" in text
    assert "proposed as a spec revision" in text

    proposal = wait_for(lambda: next((c for c in fake.issue_comments(REPO, ISSUE)
                                      if c["body"].startswith("<!-- omoi:discovery id=")), None), message="proposal")
    assert "Proposed spec revision" in proposal["body"] and "Greetings in French" in proposal["body"]
    assert "`/omoi approve`" in proposal["body"]
    assert "T3" not in db  # a scope change is never added to the run by itself

    c = comment(procs, "/omoi approve")
    assert "Approved the proposed spec revision" in wait_for(lambda: reply_to(procs, c), message="approve reply")

    def revision():
        with session_scope(procs.database_url) as s:
            return s.scalars(select(SpecStage).where(SpecStage.stage == "tasks", SpecStage.revision == 2)).first()
    r2 = wait_for(revision, timeout=60, message="tasks r2")
    assert "Greetings in French" in (r2.feedback or "") and r2.status == "waiting"

    # Approving r2 merges its new task into the run that already finished: same branch, same PR.
    script.writes["T3"] = ("fr.py", "def bonjour():\n    return 'Bonjour'\n")
    comment(procs, "/omoi approve")  # answered by 👀 and the tasks comment, then the run takes T3
    wait_for(lambda: "T3" in tasks_in_db(procs), timeout=60, message="T3 merged into the run")
    wait_run(procs, "succeeded", timeout=120)
    db = tasks_in_db(procs)
    assert set(db) == {"T1", "T2", "T3"}  # hello matched T1; T2 (discovered) kept; fr is new, numbered after it
    assert db["T3"].origin == "revision" and db["T3"].title == "Write fr.py" and db["T3"].depends_on == []
    assert db["T3"].status == "done" and db["T1"].attempts == 1  # finished work was not redone
    assert set(task_commits(procs)) == {f"{spec_id}/T1", f"{spec_id}/T2", f"{spec_id}/T3"}
    assert fake.file_at(REPO, BRANCH, "fr.py").startswith("def bonjour")
    assert len(fake.pull_requests(REPO)) == 1
    assert implement_check(procs)["conclusion"] == "success"
    assert fake.violations == []


def test_exploration_reports_through_the_tool_and_its_finding_is_fixed(supervised_run, fake_github, fake_anthropic):
    """T1 reports something uncertain -> an exploration task (read-only) -> it reports a bug through
    the report_discovery tool -> a task that fixes it, after the exploration."""
    fake = fake_github
    procs = supervised_run()
    script = Script(fake_anthropic)
    script.writes = {"T1": ("hello.py", CODE["hello.py"]), "T3": ("bye.py", CODE["bye.py"])}
    script.reported["T1"] = [{"kind": "investigation", "title": "Why does main.py crash on start",
                              "description": "main.py imports something that may not exist.",
                              "evidence": "main.py: from bye import bye"}]
    script.reported["T2"] = [{"kind": "bug", "title": "bye module is missing", "description": "Create bye.py.",
                              "evidence": "no bye.py in the repository", "suggested_phase": "tasks",
                              "files": ["bye.py"]},
                             {"kind": "bug", "title": ""}]  # invalid: refused by the tool, nothing recorded
    spec_id = approve_plan(procs, [HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded", timeout=150)

    db = tasks_in_db(procs)
    assert (db["T2"].kind, db["T2"].origin, db["T2"].depends_on) == ("explore", "discovery", ["T1"])
    assert db["T2"].title == "Investigate: Why does main.py crash on start"
    assert (db["T3"].kind, db["T3"].title, db["T3"].depends_on) == ("implement", "Fix: bye module is missing", ["T2"])
    assert db["T3"].started_at >= db["T2"].finished_at and all(t.status == "done" for t in db.values())
    # the exploration changed nothing and made no commit; T1 and T3 did
    assert set(task_commits(procs)) == {f"{spec_id}/T1", f"{spec_id}/T3"}
    assert "report_discovery" in script.prompts["T2"][0]
    explore_requests = [r for r in fake_anthropic.message_requests() if "omoi-task: T2" in request_text(r)]
    offered = {t["name"] for t in explore_requests[0]["tools"]}
    assert "mcp__omoi__report_discovery" in offered and not offered & {"Write", "Edit", "Bash"}
    refused = [r for req in explore_requests for r in tool_results(req) if r.get("is_error")]
    assert len(refused) == 1 and "too short" in json.dumps(refused[0])  # the tool's schema refused it
    with session_scope(procs.database_url) as s:
        found = [(d.task_id, d.kind, d.status, d.new_task_id) for d in s.scalars(select(Discovery).order_by(Discovery.id))]
    assert found == [("T1", "investigation", "added", "T2"), ("T2", "bug", "added", "T3")]
    text = tracking(procs)
    assert "added as T2" in text and "added as T3" in text
    assert fake.violations == []


def test_guardian_redirects_a_drifting_agent_inside_its_session(supervised_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = supervised_run()
    script = Script(fake_anthropic)
    script.writes = {"T1": ("hello.py", CODE["hello.py"])}
    script.drift_until_redirected.add("T1")
    script.verdicts = ["drifting", "on_track"]
    spec_id = approve_plan(procs, [HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded", timeout=120)

    t1 = tasks_in_db(procs)["T1"]
    assert t1.status == "done" and t1.attempts == 1  # the same session went on: nothing was restarted
    assert len(script.prompts["T1"]) == 1 and REDIRECT in script.redirected["T1"]
    with session_scope(procs.database_url) as s:
        rows = [(i.source, i.task_id, i.attempt, i.verdict, i.action, i.guidance, i.delivered_at is not None)
                for i in s.scalars(select(Intervention))]
    assert rows == [("guardian", "T1", 1, "drifting", "redirect", REDIRECT, True)]
    summary = implement_check(procs)["output"]["summary"]
    assert "#### Supervision" in summary and "drifting" in summary
    assert "redirected inside its running session (delivered)" in summary
    assert set(task_commits(procs)) == {f"{spec_id}/T1"}
    assert fake.file_at(REPO, BRANCH, "hello.py") == CODE["hello.py"]
    assert fake.violations == []


def test_guardian_stops_a_looping_agent_and_retries_with_guidance(supervised_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = supervised_run()
    script = Script(fake_anthropic)
    script.writes = {"T1": ("hello.py", CODE["hello.py"])}
    script.loop_until_guided.add("T1")
    spec_id = approve_plan(procs, [HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded", timeout=120)

    t1 = tasks_in_db(procs)["T1"]
    assert t1.status == "done" and t1.attempts == 2 and t1.guidance == GUIDANCE
    assert len(script.prompts["T1"]) == 2 and GUIDANCE in script.prompts["T1"][1]
    assert GUIDANCE not in script.prompts["T1"][0]
    with session_scope(procs.database_url) as s:
        rows = [(i.source, i.task_id, i.attempt, i.verdict, i.action) for i in s.scalars(select(Intervention))]
    assert rows == [("guardian", "T1", 1, "looping", "retry_with_guidance")]
    summary = implement_check(procs)["output"]["summary"]
    assert "#### Supervision" in summary and "looping" in summary and "retry with guidance" in summary
    assert set(task_commits(procs)) == {f"{spec_id}/T1"}
    assert fake.violations == []
