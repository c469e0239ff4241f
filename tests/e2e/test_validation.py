"""Validation end to end: after a task's verify passes, a validate-mode agent session checks the task's
acceptance criteria; its failing verdict is an attempt failure whose reasons reach the next attempt's
prompt; a passing verdict lets the task be pushed. Turned on here by the repository's `.github/omoi.yml`
(the test environment turns the setting off; tests/support/world.py RUN_ENV)."""
from __future__ import annotations

import re

from tests.fakes.anthropic import Reply, forced_tool, request_text, tool_results
from tests.support.agents import Script
from tests.support.conversation import comment, task_commits
from tests.support.plans import CODE, HAPPY
from tests.support.waits import tasks_in_db, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, BRANCH = APPROVED.repo, APPROVED.branch
MISSING = "R1.1: greet() has no docstring explaining the greeting (zq-validator-reason)"


class Validator:
    """The validate sessions' side: verdicts in turn (the last repeats); task sessions go to `inner`."""

    def __init__(self, fake, inner, verdicts: list[dict]):
        self.inner, self.verdicts, self.prompts = inner, verdicts, []
        fake.script = self

    def __call__(self, req):
        text = request_text(req)
        m = re.search(r"omoi-validate: (T\d+)", text)
        if not m or forced_tool(req):
            return self.inner(req)
        if tool_results(req):
            return Reply.text("Verdict reported.")
        self.prompts.append(text)
        verdict = self.verdicts.pop(0) if len(self.verdicts) > 1 else self.verdicts[0]
        return Reply.tool("mcp__omoi__report_validation", verdict)


def test_failed_validation_retries_with_the_validators_reasons(approved_run, fake_github, fake_anthropic):
    procs = approved_run(files={".github/omoi.yml": "validation: true\n"})
    fake = fake_github
    script = Script(fake_anthropic)
    script.writes["T1"] = ("hello.py", CODE["hello.py"])
    fail = {"verdict": "fail", "reasons": [{"criterion": "R1.1", "met": False, "explanation": MISSING}],
            "summary": "Add the docstring."}
    ok = {"verdict": "pass", "reasons": [{"criterion": "R1.1", "met": True, "explanation": "greet() says Hello."}]}
    validator = Validator(fake_anthropic, script, [fail, ok])
    spec_id = approve_plan(procs, HAPPY[:1])
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded")
    t1 = tasks_in_db(procs)["T1"]
    assert t1.status == "done" and t1.attempts == 2

    # the validator saw the criterion, the diff and the verify output, as data
    first = validator.prompts[0]
    assert "R1.1" in first and "+++ b/hello.py" in first[first.index("<diff>"):first.index("</diff>")]
    assert "<verify_results>" in first and "(exit 0)" in first
    assert len(validator.prompts) == 2
    # the second attempt was told why the first failed validation
    first_task, second_task = script.prompts["T1"][:2]
    assert "zq-validator-reason" not in first_task
    block = second_task[second_task.index("<previous_attempt"):second_task.index("</previous_attempt>")]
    assert "<validation>" in block and "zq-validator-reason" in block
    # the failed attempt's work was kept; the passing one is the task's commit on the branch
    assert fake.file_at(REPO, f"omoi/attempts/{spec_id}-T1-a1", "hello.py") == CODE["hello.py"]
    assert len(task_commits(procs)[f"{spec_id}/T1"]) == 1
    assert fake.violations == [] and fake_anthropic.unhandled == []
