"""CI iteration end to end: the repository's CI (played by the test through the GitHub stand-in, as
another app's check runs and their `check_suite` / `check_run` deliveries) fails on omoi's pull request
-> omoi runs a fix agent (the real Claude Code CLI against the Anthropic stand-in) with the failure
output, verifies and pushes -> CI passes on the new head -> the draft becomes ready for review. A CI
that keeps failing stops after the round limit, and says so on the pull request.
"""
from __future__ import annotations

import re

import pytest

from tests.fakes.anthropic import Reply, request_text, tool_results
from tests.support.agents import Agent
from tests.support.ci import ci_comment, ci_reports, ci_rounds, spent_on
from tests.support.conversation import comment, task_commits
from tests.support.plans import CODE, HELLO
from tests.support.waits import wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, BRANCH = APPROVED.repo, APPROVED.branch
FIXED = "def greet(name=None):\n    return f'Hello {name}' if name else 'Hello'\n"
FAILURE = {"title": "1 test failed", "summary": "tests/test_hello.py::test_greet_name FAILED",
           "text": "TypeError: greet() takes 0 positional arguments but 1 was given",
           "annotations": [{"path": "hello.py", "start_line": 1, "end_line": 1, "annotation_level": "failure",
                            "title": "test_greet_name", "message": "greet('Ann') should return 'Hello Ann'"}]}


def _logs(procs) -> str:
    noise = ("omoi.execution_health", "Scheduler: Sending", "omoi.guardian", "omoi.sweep_deliveries", "omoi.conductor")
    return "\n".join(f"--- {n}\n" + "\n".join(ln for ln in procs.log_text(n).splitlines()
                                             if not any(x in ln for x in noise))[-5000:] for n in ("web", "worker"))


def config(rounds: int) -> dict:
    return {".github/omoi.yml": f"ci:\n  required_checks: [\"ci / test\"]\n  max_fix_rounds: {rounds}\n"}


def _script(fake_anthropic, fixed: str):
    """T1 writes hello.py; a CI fix session rewrites it as `fixed`."""
    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"])})

    def ci_fix(req):
        text = request_text(req)
        if "fixing failing CI checks" not in text:
            return None
        path = re.search(r"Primary working directory: (\S+)", text).group(1) + "/hello.py"
        steps = [Reply.tool("Read", {"file_path": path}),  # Claude Code writes only files it has read
                 Reply.tool("Write", {"file_path": path, "content": fixed})]
        done = len(tool_results(req))
        return steps[done] if done < len(steps) else Reply.text("Fixed greet().")

    fake_anthropic.script = lambda req: ci_fix(req) or agent(req)


@pytest.fixture
def finished(approved_run, fake_github, fake_anthropic, tmp_path):
    """Factory: a run of one task (hello.py) finished on a repository whose CI must pass `ci / test`
    (at most `rounds` fix rounds); (world, pull request)."""
    def make(rounds: int, fixed: str = FIXED):
        procs = approved_run(files=config(rounds), extra_env={"OMOI_SANDBOX_DIR": str(tmp_path / "sandboxes")})
        _script(fake_anthropic, fixed)
        approve_plan(procs, [HELLO])
        comment(procs, "/omoi implement")
        wait_run(procs, "succeeded")
        pr = fake_github.pull_requests(REPO)[0]
        assert pr["draft"] is True  # done and verified, but the required check has not passed yet
        return procs, pr
    return make


def test_failing_check_is_fixed_and_the_pull_request_becomes_ready(finished, fake_github, fake_anthropic):
    procs, pr = finished(rounds=3)
    fake = fake_github
    failing = fake.branch_sha(REPO, BRANCH)
    ci_reports(procs, failing, "failure", output=FAILURE)

    fix = wait_for(lambda: next((c for c in fake.commits(REPO, BRANCH) if "Omoi-Task: ci-" in c["message"]), None),
                   timeout=120, message=lambda: "the CI fix commit\n" + _logs(procs))
    assert fix["parents"] == [failing] and fix["files"] == ["hello.py"]
    assert fix["author"].startswith("omoi[bot] <") and "ci / test: failure" in fix["message"]
    assert fake.file_at(REPO, BRANCH, "hello.py") == FIXED
    # the failing check's output and annotations reached the fix agent, as data
    prompt = next(request_text(r) for r in fake_anthropic.message_requests()
                  if "fixing failing CI checks" in request_text(r))
    assert "takes 0 positional arguments" in prompt and "greet('Ann') should return 'Hello Ann'" in prompt
    assert "<annotation path=\"hello.py\" line=\"1\" level=\"failure\">" in prompt
    assert "python3 -c 'import hello" in prompt  # the spec's verify commands, which ran before the push

    text = wait_for(lambda: "fix pushed in" in ci_comment(procs, pr["number"]) and ci_comment(procs, pr["number"]),
                    message="the CI comment")
    assert f"**Round 1**: ❌ ci / test failed on `{failing[:7]}`" in text and fix["sha"] in text
    assert fake.pull_request(REPO, pr["number"])["draft"] is True  # the new head has no passing check yet

    ci_reports(procs, fix["sha"], "success", event="check_run")  # CI passes on the fix
    wait_for(lambda: fake.pull_request(REPO, pr["number"])["draft"] is False, timeout=60,
             message=lambda: "PR ready\n" + _logs(procs))
    assert f"All checks pass on `{fix['sha'][:7]}`" in ci_comment(procs, pr["number"])
    [row] = ci_rounds(procs)
    assert (row.round, row.status, row.head_sha, row.fix_sha) == (1, "pushed", failing, fix["sha"])
    assert row.checks[0]["name"] == "ci / test" and row.cost_usd > 0
    assert spent_on(procs, "ci_fix") == pytest.approx(float(row.cost_usd))  # counted in the spec's budget
    assert len(task_commits(procs)) == 2 and len(fake.pull_requests(REPO)) == 1
    assert fake.violations == []


def test_ci_that_keeps_failing_stops_after_the_round_limit(finished, fake_github, fake_anthropic):
    procs, pr = finished(rounds=1, fixed="def greet(name=None):\n    return 'Hello'\n")  # a fix that does not help
    fake = fake_github
    first = fake.branch_sha(REPO, BRANCH)
    ci_reports(procs, first, "failure", output=FAILURE)
    wait_for(lambda: "fix pushed in" in ci_comment(procs, pr["number"]), timeout=120,
             message=lambda: "round 1\n" + _logs(procs))
    second = fake.branch_sha(REPO, BRANCH)
    assert second != first

    ci_reports(procs, second, "failure", output=FAILURE)  # still failing: no second round (the limit is 1)
    text = wait_for(lambda: "⛔" in ci_comment(procs, pr["number"]) and ci_comment(procs, pr["number"]),
                    timeout=60, message=lambda: "the stop\n" + _logs(procs))
    assert f"ci / test still failing on `{second[:7]}`: no more fixes, 1 fix round already ran" in text
    assert "Fix it by hand" in text
    assert [(r.round, r.status) for r in ci_rounds(procs)] == [(1, "pushed"), (0, "stopped")]
    assert fake.branch_sha(REPO, BRANCH) == second  # nothing more was pushed
    assert fake.pull_request(REPO, pr["number"])["draft"] is True
    assert sum("fixing failing CI checks" in request_text(r) and not tool_results(r)
               for r in fake_anthropic.message_requests()) == 1
    assert fake.violations == []
