"""What a whole issue costs at GitHub's wire (issue 15): label -> requirements -> approve -> design ->
approve -> tasks -> approve -> run of a five-task plan -> ready pull request, through omoi's real web
process and worker, counted by the GitHub stand-in. REST + GraphQL calls are counted against the
budgets; git smart-HTTP requests are counted apart. While a task runs and nothing changes (the agent
blocks in a long command, health ticks every second), omoi writes nothing to GitHub.
"""
from __future__ import annotations

import time

import pytest

from app.execution.run_report import PUBLISH_SPACING_SECONDS
from tests.support.agents import Agent
from tests.support.call_budget import FIVE_TASKS, FIVE_WRITES, Meter
from tests.support.conversation import comment, label, reply_to, tracking
from tests.support.plans import GREETER_FILES, GREETER_REQUIREMENTS, greeter_design
from tests.support.waits import run_state, tasks_in_db, wait_for
from tests.support.world import RUN_ENV, Issue, Site

REPO = "octo/greeter"
SITE = Site(REPO, 91, GREETER_FILES, people={"alice": "maintain"},
            issues={5: Issue("Greet users", "Print Hello when run.", "alice")})
SPEC_BUDGET = 25        # issue 15's goal for the three spec phases with their approvals: fewer than this
RUN_BUDGET = 40         # issue 15's goal for label -> ready pull request: at most this
# What holds now, with room for timing (how many edits collapse): before issue 15 it was 59 and 119.
SPEC_CEILING, RUN_CEILING = 36, 52
QUIET_SECONDS = 5       # health ticks every second (RUN_ENV) while the last task's agent blocks
# T5's start reaches GitHub with the next publish, at most PUBLISH_SPACING_SECONDS after the last one
SLOW_SECONDS = PUBLISH_SPACING_SECONDS + QUIET_SECONDS + 10


def stage_waiting(fake, stage: str) -> bool:
    return any(c["body"].startswith(f"<!-- omoi:spec stage={stage} ") and "waiting for approval" in c["body"]
               for c in fake.issue_comments(REPO, 5))


def spec_branch(procs) -> str:
    from app.db.models import Spec
    from app.db.session import session_scope

    with session_scope(procs.database_url) as s:
        return s.query(Spec.branch).scalar()


def test_label_to_ready_pull_request_within_the_call_budget(fake_github, fake_anthropic, omoi_world):
    fake = fake_github
    fake_anthropic.on_tool("emit_requirements_draft", GREETER_REQUIREMENTS, once=False)
    fake_anthropic.on_tool("emit_design_draft", greeter_design(), once=False)
    fake_anthropic.on_tool("emit_tasks_draft", FIVE_TASKS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)
    agent = Agent(fake_anthropic, dict(FIVE_WRITES))
    agent.slow["T5"] = SLOW_SECONDS
    procs = omoi_world(github=fake, anthropic=fake_anthropic, site=SITE, extra_env=RUN_ENV, beat=True)
    meter = Meter(fake)

    def explain(what: str):
        return lambda: f"{what}\n{meter.report()}\n--- worker\n{procs.log_text('worker')[-4000:]}"

    assert label(procs)[0] == 202
    phase = "requirements"
    for stage, following in (("requirements", "design"), ("design", "tasks")):
        wait_for(lambda: stage_waiting(fake, stage), timeout=90, message=explain(f"{stage} waiting"))
        meter.settle()
        meter.close(phase)
        phase = f"approve {stage}, {following}"
        c = comment(procs, "/omoi approve")
        wait_for(lambda: reply_to(procs, c), timeout=60, message=explain(f"{stage} approval reply"))
    wait_for(lambda: stage_waiting(fake, "tasks"), timeout=90, message=explain("tasks waiting"))
    meter.settle()
    meter.close(phase)
    c = comment(procs, "/omoi approve")
    wait_for(lambda: reply_to(procs, c), timeout=60, message=explain("tasks approval reply"))
    meter.close("approve tasks")

    # the last task's agent blocks: a quiet stretch with health ticks and nothing new to show
    wait_for(lambda: "T5" in agent.seen, timeout=180, message=explain("T5's agent blocking"))
    meter.close("run until the last task blocks")
    wait_for(lambda: "| 🔄 | **T5**" in tracking(procs), timeout=PUBLISH_SPACING_SECONDS + 10,
             message=explain("T5 shown running"))
    time.sleep(2)  # the rest of that publish (the pull request body, the check run)
    meter.close("T5's start published")
    time.sleep(QUIET_SECONDS)
    quiet = meter.close(f"quiet {QUIET_SECONDS}s of a running task")

    def finished():
        head = fake.branch_sha(REPO, spec_branch(procs))
        return run_state(procs) == "succeeded" and any(
            r["name"] == "omoi / implement" and r["head_sha"] == head and r["status"] == "completed"
            for r in fake.check_runs(REPO))
    wait_for(finished, timeout=180, message=explain("run succeeded, check run completed"))
    pr = wait_for(lambda: [p for p in fake.pull_requests(REPO) if not p["draft"]], timeout=60,
                  message=explain("ready PR"))[0]
    meter.settle()
    meter.close("run ends, PR ready")
    report = meter.report()
    print("\n" + report)

    assert pr["body"].startswith("Closes #5")
    assert {t.status for t in tasks_in_db(procs).values()} == {"done"}
    assert fake.violations == []
    spec = meter.total("requirements", "approve requirements, design", "approve design, tasks", "approve tasks")
    everything = sum(t.api for t in meter.phases.values())
    assert quiet.writes == 0, f"omoi wrote to GitHub while nothing changed:\n{report}"
    assert spec <= SPEC_CEILING, f"spec phases with approvals: {spec} API calls\n{report}"
    assert everything <= RUN_CEILING, f"label -> ready PR: {everything} API calls\n{report}"
    if spec >= SPEC_BUDGET or everything > RUN_BUDGET:  # the issue's goals, not reached yet: see the list
        pytest.xfail(f"issue 15's budgets: spec phases {spec} (goal < {SPEC_BUDGET}), label -> ready PR "
                     f"{everything} (goal <= {RUN_BUDGET})\n{report}")
