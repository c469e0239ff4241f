"""Retry with feedback, end to end: a failing verify's output, the agent's own account and the diff stat
reach the next attempt's request to the model; each failed attempt's work is pushed (by omoi, from its host
clone) to a side ref in the GitHub stand-in's git repository; after the last attempt a diagnosis is made and
shown in the tracking comment."""
from __future__ import annotations

from tests.support.agents import Script
from tests.support.conversation import comment, task_commits, tracking
from tests.support.plans import task
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, BRANCH = APPROVED.repo, APPROVED.branch
WRONG = "def greet():\n    return 'Howdy'\n"
DIAGNOSIS = {"cause": "greet() returns 'Howdy' but the criterion wants 'Hello'.",
             "evidence": "AssertionError from the verify command in both attempts.",
             "next_step": "Return 'Hello' from greet()."}


def test_failed_attempts_feed_the_next_and_are_kept_and_diagnosed(approved_run, fake_github, fake_anthropic):
    procs, fake = approved_run(), fake_github
    script = Script(fake_anthropic)
    script.writes["T1"] = ("hello.py", WRONG)
    fake_anthropic.on_tool("emit_task_diagnosis", DIAGNOSIS)
    plan = [task("hello", ["R1.1"], "hello.py", ["python3 -c 'import hello; assert hello.greet() == \"Hello\", hello.greet()'"])]
    spec_id = approve_plan(procs, plan)
    comment(procs, "/omoi implement")
    wait_run(procs, "failed")
    t1 = tasks_in_db(procs)["T1"]
    assert t1.status == "failed" and t1.attempts == 2 and t1.error == "task/verify_failed"

    first, second = script.prompts["T1"][:2]
    assert "<previous_attempt" not in first
    block = second[second.index("<previous_attempt"):second.index("</previous_attempt>")]
    assert "<verify_output>" in block and "AssertionError: Howdy" in block  # the failing verify's output
    assert "<agent_account>\nT1 is done.\n\n</agent_account>" in block      # the previous agent's own account
    assert "hello.py" in block[block.index("<diffstat>"):]                 # the diff stat
    assert f"omoi/attempts/{spec_id}-T1-a1" in block

    # both failed attempts' work is on side refs of the repository, pushed by omoi; the branch has none of it
    for n in (1, 2):
        ref = f"omoi/attempts/{spec_id}-T1-a{n}"
        assert fake.file_at(REPO, ref, "hello.py") == WRONG
        assert any(r == f"refs/heads/{ref}" for _, r, _, _ in fake.pushes)
    assert task_commits(procs) == {} and fake.file_at(REPO, BRANCH, "hello.py") is None

    # the diagnosis, on the tracking comment with the side refs named
    text = wait_for(lambda: (lambda t: t if "Diagnosis:" in t else None)(tracking(procs)), message="diagnosis shown")
    assert "greet() returns 'Howdy'" in text and f"omoi/attempts/{spec_id}-T1-a2" in text
    diagnosis_calls = [r for r in fake_anthropic.message_requests()
                       if (r.get("tool_choice") or {}).get("name") == "emit_task_diagnosis"]
    assert len(diagnosis_calls) == 1 and "AssertionError: Howdy" in str(diagnosis_calls[0]["messages"])
    assert fake.violations == [] and fake_anthropic.unhandled == []
