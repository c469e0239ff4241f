"""Budgets, discovery and supervision end to end (issue 6), like tests/test_execution.py: the real web
process and Celery worker (with beat), the real Claude Code CLI against the Anthropic stand-in
(scripted per task), git behind the GitHub stand-in.
"""
from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from app.db.models import Discovery, Intervention, SpecStage
from app.db.session import session_scope
from tests.conftest import base_env, free_port, wait_for
from tests.fakes.anthropic import Reply, forced_tool, request_text, tool_results
from tests.test_execution import (
    BRANCH,
    CODE,
    FILES,
    INSTALLATION,
    ISSUE,
    REPO,
    approve_plan,
    comment,
    implement_check,
    reply_to,
    task,
    task_commits,
    tasks_in_db,
    tracking,
    wait_run,
)

HELLO = task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello; assert hello.greet() == \"Hello\"'"])
BYE = task("bye", ["R1.2"], "bye.py", ["python3 -c 'import bye; assert bye.bye() == \"Bye\"'"], depends_on=["hello"])
GUIDANCE = "Stop listing the directory; write hello.py now."


class Script:
    """The model's side: task sessions by task id, the guardian's judgement, a tasks-stage revision."""

    def __init__(self, fake):
        self.writes: dict[str, tuple[str, str]] = {}
        self.findings: dict[str, list[dict]] = {}  # task id -> written to .omoi-discoveries.json
        self.loop_until_guided: set[str] = set()
        self.prompts: dict[str, list[str]] = {}
        fake.script = self

    def __call__(self, req):
        if forced_tool(req) == "emit_guardian_verdict":
            return Reply.tool("emit_guardian_verdict", {"verdict": "looping", "reason": "it runs `ls` again and again",
                                                        "guidance": GUIDANCE})
        text = request_text(req)
        m, wd = re.search(r"omoi-task: (T\d+)", text), re.search(r"Working directory: (\S+)", text)
        if not m or not wd or forced_tool(req):
            return None
        tid, done = m.group(1), len(tool_results(req))
        if not done:
            self.prompts.setdefault(tid, []).append(text)
        if tid in self.loop_until_guided and "omoi-guidance:" not in text:
            return Reply.tool("Bash", {"command": "sleep 1; ls", "description": "look around"})
        path, content = self.writes[tid]
        if done == 0:
            return Reply.tool("Write", {"file_path": f"{wd.group(1)}/{path}", "content": content})
        if done == 1 and tid in self.findings:
            return Reply.tool("Write", {"file_path": f"{wd.group(1)}/.omoi-discoveries.json",
                                        "content": json.dumps(self.findings[tid])})
        return Reply.text(f"{tid} is done.")


def start(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes, files=None):
    fake_github.add_installation(INSTALLATION, "octo")
    fake_github.add_repo(REPO, installation_id=INSTALLATION, files={**FILES, **(files or {})})
    fake_github.set_permission(REPO, "alice", "maintain")
    fake_github.add_issue(REPO, ISSUE, title="Greet users", body="Say hello and bye.", user="alice")
    fake_github.push_human_commit(REPO, BRANCH, {".omoi/specs/5/tasks.md": "# tasks\n"},
                                  "omoi: approved tasks r1 for #5", author=("omoi[bot]", "4242+omoi[bot]@users.noreply.github.com"))
    env = base_env(fake_github, rsa_keypair, f"sqlite:///{tmp_path}/omoi.db", "", tmp_path / "data", free_port())
    env |= {"ANTHROPIC_BASE_URL": fake_anthropic.url, "ANTHROPIC_API_KEY": "sk-fake-test-key",
            "OMOI_WORKER_CONCURRENCY": "3", "OMOI_TASK_LEASE_SECONDS": "3", "OMOI_TASK_HEARTBEAT_SECONDS": "0.5",
            "OMOI_HEALTH_INTERVAL_SECONDS": "1", "OMOI_TASK_RETRY_BACKOFF_SECONDS": "0.2",
            "OMOI_TASK_MAX_ATTEMPTS": "2", "OMOI_VERIFY_TIMEOUT_SECONDS": "30", "OMOI_AGENT_TIMEOUT_SECONDS": "90",
            "OMOI_GUARDIAN_INTERVAL_SECONDS": "1", "OMOI_GUARDIAN_MIN_TOOL_CALLS": "3",
            "OMOI_CONDUCTOR_INTERVAL_SECONDS": "2"}
    procs = omoi_processes(env)
    procs.start("web", "web")
    procs.wait_healthy()
    procs.start("worker", "worker", "--beat")
    procs.database_url = env["OMOI_DATABASE_URL"]
    procs.fake = fake_github
    return procs


@pytest.fixture
def world(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes):
    def go(files=None):
        return start(fake_github, fake_anthropic, rsa_keypair, tmp_path, omoi_processes, files)
    return go


def test_budget_pauses_run_and_budget_command_resumes_it(world, fake_github, fake_anthropic):
    fake = fake_github
    procs = world({".github/omoi.yml": "budgets: {spec_usd: 0.001}\n"})
    script = Script(fake_anthropic)
    script.writes = {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"])}
    spec_id = approve_plan(procs, [HELLO, BYE])
    comment(procs, "/omoi implement")
    wait_run(procs, "paused_budget")
    db = tasks_in_db(procs)
    # T1 started under the limit and finished; its cost put the spec over it, so T2 never started
    assert db["T1"].status == "done" and db["T1"].cost_usd > 0
    assert db["T2"].status == "pending" and db["T2"].attempts == 0
    assert set(task_commits(fake)) == {f"{spec_id}/T1"}  # finished work is kept on the branch
    check = implement_check(fake)
    assert check["conclusion"] == "action_required" and "Paused at the spec budget" in check["output"]["title"]
    text = tracking(fake)
    assert "spec budget was reached" in text and "of $0.00" in text and "`/omoi budget +N`" in text

    c = comment(procs, "/omoi budget")
    shown = wait_for(lambda: reply_to(fake, c), message="budget reply")
    assert "| this spec |" in shown and "$0.00 |" in shown

    c = comment(procs, "/omoi budget +10")
    assert "Raised this spec's budget by $10.00" in wait_for(lambda: reply_to(fake, c), message="budget +10 reply")
    wait_run(procs, "succeeded")
    assert set(task_commits(fake)) == {f"{spec_id}/T1", f"{spec_id}/T2"}
    assert implement_check(fake)["conclusion"] == "success"
    assert fake.violations == []


def test_discoveries_add_a_task_and_propose_a_revision(world, fake_github, fake_anthropic):
    fake = fake_github
    procs = world()
    script = Script(fake_anthropic)
    script.writes = {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"])}
    script.findings["T1"] = [
        {"kind": "bug", "title": "bye module is missing", "description": "main needs bye.bye().",
         "evidence": "ImportError: No module named bye", "suggested_phase": "tasks", "files": ["bye.py"]},
        {"kind": "missing_requirement", "title": "Greetings in French", "description": "Users also want Bonjour.",
         "evidence": "README mentions French users", "suggested_phase": "requirements"},
        {"kind": "refactor", "title": "Write hello.py", "description": "same as the task itself"},
    ]
    fake_anthropic.on_tool("emit_tasks_draft", {"tasks": [HELLO, task("fr", ["R1.1"], "fr.py", [])]})
    spec_id = approve_plan(procs, [HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded", timeout=120)

    db = tasks_in_db(procs)
    assert db["T2"].origin == "discovery" and db["T2"].depends_on == ["T1"] and db["T2"].title == "Fix: bye module is missing"
    assert db["T2"].status == "done" and db["T2"].started_at >= db["T1"].finished_at
    commits = task_commits(fake)
    assert set(commits) == {f"{spec_id}/T1", f"{spec_id}/T2"}
    assert fake.file_at(REPO, BRANCH, "bye.py") == CODE["bye.py"]
    assert fake.file_at(REPO, BRANCH, ".omoi-discoveries.json") is None  # never committed
    assert "omoi-discoveries.json" in script.prompts["T1"][0]  # the prompt tells the agent how to report
    with session_scope(procs.database_url) as s:
        found = {d.title: (d.status, d.new_task_id, d.duplicate_of) for d in s.scalars(select(Discovery))}
    assert found == {"bye module is missing": ("added", "T2", None),
                     "Greetings in French": ("proposed", None, None),
                     "Write hello.py": ("duplicate", None, "T1")}
    text = tracking(fake)
    assert "#### Discoveries" in text and "added as T2" in text and "duplicate of T1" in text
    assert "proposed as a spec revision" in text

    proposal = wait_for(lambda: next((c for c in fake.issue_comments(REPO, ISSUE)
                                      if c["body"].startswith("<!-- omoi:discovery id=")), None), message="proposal")
    assert "Proposed spec revision" in proposal["body"] and "Greetings in French" in proposal["body"]
    assert "`/omoi approve`" in proposal["body"]
    assert "T3" not in db  # a scope change is never added to the run by itself

    c = comment(procs, "/omoi approve")
    assert "Approved the proposed spec revision" in wait_for(lambda: reply_to(fake, c), message="approve reply")

    def revision():
        with session_scope(procs.database_url) as s:
            return s.scalars(select(SpecStage).where(SpecStage.stage == "tasks", SpecStage.revision == 2)).first()
    r2 = wait_for(revision, timeout=60, message="tasks r2")
    assert "Greetings in French" in (r2.feedback or "") and r2.status in ("waiting", "blocked")
    assert fake.violations == []


def test_guardian_stops_a_looping_agent_and_retries_with_guidance(world, fake_github, fake_anthropic):
    fake = fake_github
    procs = world()
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
    summary = implement_check(fake)["output"]["summary"]
    assert "#### Supervision" in summary and "looping" in summary and "retry with guidance" in summary
    assert set(task_commits(fake)) == {f"{spec_id}/T1"}
    assert fake.violations == []
