"""People steering a run end to end (issue 16 item 1): `/omoi pause` and `/omoi resume`, `/omoi tell T1 ...`,
`/omoi stop T2` and `/omoi retry T2`. Real web process and Celery worker (with beat), the real Claude Code
CLI against the Anthropic stand-in (scripted per task and session, tests/support/agents.py Sessions), git
behind the GitHub stand-in. Each test asserts what reached GitHub (replies, reactions, the tracking comment,
the check run, the branch) and the database.
"""
from __future__ import annotations

import base64
import json
import re
import time

from sqlalchemy import select

from app.db.models import Intervention
from app.db.session import session_scope
from tests.fakes.anthropic import request_text
from tests.support.agents import Sessions, wait_step, write_step
from tests.support.conversation import comment, implement_check, reply_to, task_commits, tracking
from tests.support.plans import BYE, BYE_AFTER_HELLO, CODE, HELLO
from tests.support.waits import run_state, tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, ISSUE, BRANCH = APPROVED.repo, APPROVED.issue, APPROVED.branch
LONG = 40  # seconds a step would block if nothing stopped the session: longer than the test waits for it
PARTIAL = "# hello: work in progress\n"
MESSAGE = "Please keep the greeting in English."


def overwrite_step(path: str, content: str) -> dict:
    """A Sessions step that replaces a file the session did not read (Claude Code's Write refuses that)."""
    data = base64.b64encode(content.encode()).decode()
    return {"tool": "Bash", "command": f"echo {data} | base64 -d > /workspace/{path}"}


def eyes(world, comment_id: int) -> bool:
    return any(r["content"] == "eyes" for r in world.github.reactions_on_comment(REPO, comment_id))


def wip_commits(world) -> list[dict]:
    return [c for c in world.github.commits(REPO, BRANCH) if re.search(r"^Omoi-WIP: ", c["message"], re.M)]


def test_pause_checkpoints_running_work_and_resume_finishes_the_run(approved_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = approved_run()
    # T1's first session writes a partial hello.py, then blocks in a tool call; the pause lands meanwhile.
    # Its next session (after resume) starts from the work-in-progress commit and finishes the file.
    script = Sessions(fake_anthropic, {
        "T1": [[write_step("hello.py", PARTIAL), wait_step(8), wait_step(LONG)],
               [overwrite_step("hello.py", CODE["hello.py"])]],
        "T2": [[write_step("bye.py", CODE["bye.py"])]],
    })
    spec_id = approve_plan(procs, [HELLO, BYE_AFTER_HELLO])
    comment(procs, "/omoi implement")
    wait_for(lambda: any(s[:3] == ("T1", 0, 1) for s in script.seen), timeout=60, message="T1 in its tool call")
    c = comment(procs, "/omoi pause")
    assert "**Paused** by @alice" in wait_for(lambda: reply_to(procs, c), message="pause reply")
    assert eyes(procs, c)

    # the running session finished its tool call, then stopped: its change is on the branch as WIP
    wait_for(lambda: wip_commits(procs), timeout=60, message="the work-in-progress commit")
    wait_run(procs, "paused", timeout=60)
    wait_for(lambda: tasks_in_db(procs)["T1"].status == "pending", timeout=30, message="T1 back to pending")
    assert not any(t == "T1" and n == 0 and done > 1 for t, n, done, _ in script.seen), script.seen
    wip = wip_commits(procs)
    assert len(wip) == 1 and wip[0]["files"] == ["hello.py"] and wip[0]["message"].startswith("WIP T1")
    assert fake.file_at(REPO, BRANCH, "hello.py") == PARTIAL
    assert task_commits(procs) == {}
    db = tasks_in_db(procs)
    assert db["T1"].status == "pending" and db["T1"].attempts == 0 and db["T1"].error == "task/checkpoint"
    assert db["T2"].status == "pending" and db["T2"].attempts == 0
    check = implement_check(procs)
    assert check["conclusion"] == "action_required" and check["output"]["title"].startswith("Paused: 0/2 tasks done")
    assert "The run is paused" in tracking(procs) and "paused by @\u200balice" in tracking(procs)  # no mention

    # nothing is claimed while paused (beat nudges the run every second)
    seen = len(script.seen)
    time.sleep(3)
    assert len(script.seen) == seen and run_state(procs) == "paused"
    assert all(t.status == "pending" for t in tasks_in_db(procs).values())

    c = comment(procs, "/omoi resume")
    assert "**Resumed** by @alice" in wait_for(lambda: reply_to(procs, c), message="resume reply")
    wait_run(procs, "succeeded", timeout=120)
    commits = task_commits(procs)
    assert set(commits) == {f"{spec_id}/T1", f"{spec_id}/T2"}
    by_sha = {x["sha"]: x for x in fake.commits(REPO, BRANCH)}
    assert by_sha[commits[f"{spec_id}/T1"][0]]["parents"] == [wip[0]["sha"]]  # continued from the WIP commit
    assert fake.file_at(REPO, BRANCH, "hello.py") == CODE["hello.py"]
    assert len(script.workdirs["T1"]) == 2
    db = tasks_in_db(procs)
    assert db["T1"].attempts == 1 and db["T1"].status == db["T2"].status == "done"
    assert implement_check(procs)["conclusion"] == "success"
    # every push was a fast-forward of the one before (never forced)
    pushes = [(old, new) for _, ref, old, new in fake.pushes if ref == f"refs/heads/{BRANCH}"]
    assert all(pushes[i][0] == pushes[i - 1][1] for i in range(1, len(pushes)))
    assert fake.violations == []


def test_tell_reaches_the_running_agent_stop_and_retry_a_task(approved_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = approved_run()
    script = Sessions(fake_anthropic, {
        "T1": [[write_step("hello.py", CODE["hello.py"]), wait_step(8), wait_step(1)]],
        "T2": [[write_step("bye.py", "# not yet\n"), wait_step(LONG)], [write_step("bye.py", CODE["bye.py"])]],
    })
    spec_id = approve_plan(procs, [HELLO, BYE])
    c = comment(procs, "/omoi tell T1 too early")
    assert "Nothing has been implemented yet" in wait_for(lambda: reply_to(procs, c), message="tell reply")
    comment(procs, "/omoi implement")
    wait_for(lambda: any(s[:3] == ("T1", 0, 1) for s in script.seen) and any(s[:3] == ("T2", 0, 1) for s in script.seen),
             timeout=60, message="both tasks in their tool calls")

    c = comment(procs, f"/omoi tell T1 {MESSAGE}\n<!-- hidden -->")
    assert "reaches **T1**'s agent" in wait_for(lambda: reply_to(procs, c), message="tell reply")
    assert eyes(procs, c)
    c = comment(procs, "/omoi stop T2")
    assert "**T2 stopped** by @alice" in wait_for(lambda: reply_to(procs, c), message="stop reply")

    # T1's next model request carries the message with its tool result; the task records it
    def told():
        return next((r for r in fake_anthropic.message_requests() if "omoi-task: T1" in request_text(r)
                     and MESSAGE in json.dumps(r["messages"][-1])), None)
    got = wait_for(told, timeout=60, message="the message in T1's session")
    last = json.dumps(got["messages"][-1])
    assert "A message from @alice" in last and "hidden" not in last and "<!--" not in last

    # T2 stopped, T1 done: what is left waits on T2, so the run pauses (it does not fail)
    wait_run(procs, "paused", timeout=90)
    db = tasks_in_db(procs)
    assert db["T1"].status == "done" and db["T2"].status == "stopped" and db["T2"].error == "task/stopped_by_person"
    assert not any(t == "T2" and n == 0 and done > 1 for t, n, done, _ in script.seen)
    assert set(task_commits(procs)) == {f"{spec_id}/T1"} and fake.file_at(REPO, BRANCH, "bye.py") is None
    with session_scope(procs.database_url) as s:
        rows = [(i.source, i.task_id, i.attempt, i.action, i.guidance, i.reason_params, i.delivered_at is not None)
                for i in s.scalars(select(Intervention))]
    assert rows == [("person", "T1", 1, "redirect", MESSAGE, {"user": "alice"}, True)]
    text = tracking(procs)
    assert "⏹️ | **T2**" in text and "stopped by a person" in text and "`/omoi retry T2`" in text
    assert implement_check(procs)["conclusion"] == "action_required"

    c = comment(procs, "/omoi tell T2 hello")
    assert "is not running now" in wait_for(lambda: reply_to(procs, c), message="tell reply")
    c = comment(procs, "/omoi retry T2")
    assert "**T2** runs again" in wait_for(lambda: reply_to(procs, c), message="retry reply")
    wait_run(procs, "succeeded", timeout=120)
    assert set(task_commits(procs)) == {f"{spec_id}/T1", f"{spec_id}/T2"}
    assert fake.file_at(REPO, BRANCH, "bye.py") == CODE["bye.py"]
    assert tasks_in_db(procs)["T2"].status == "done" and len(script.workdirs["T2"]) == 2
    with session_scope(procs.database_url) as s:
        assert len(s.scalars(select(Intervention)).all()) == 1  # the refused message was not kept
    assert fake.violations == []


def test_steering_commands_parse():
    from app.commands.grammar import Command, InvalidCommand, parse_commands

    got = parse_commands("/omoi pause\n/omoi resume\n/omoi stop t3\n/omoi tell T2 use util.py\nand keep it short\n"
                         "/omoi stop\n/omoi tell T2\n/omoi stop T2 T3")
    assert [(c.verb, c.args) for c in got[:4]] == [
        ("pause", {}), ("resume", {}), ("stop", {"task": "t3"}), ("tell", {"task": "T2", "text": "use util.py\nand keep it short"})]
    assert all(isinstance(c, Command) for c in got[:4])
    assert [(type(c), c.verb, c.error.code) for c in got[4:]] == [(InvalidCommand, v, "command/needs_task")
                                                                for v in ("stop", "tell", "stop")]
