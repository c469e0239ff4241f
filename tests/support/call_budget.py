"""What omoi costs at GitHub's wire, phase by phase: a five-task plan for the greeter repository (the
drafts the model writes and the code the agent writes), a Meter that cuts the GitHub stand-in's
recorded traffic into named phases, and `whole_issue`, which drives one issue from the label to a
ready pull request through omoi's processes and meters it (tests/e2e/test_call_budget.py,
benchmarks/run_calls.py; benchmarks/spec_flow.py meters the in-process planning flow).

Git smart-HTTP requests (clones, fetches, pushes) are counted apart from the REST + GraphQL calls
the budgets are about.
"""
from __future__ import annotations

import re
import time

from tests.fakes.github.traffic import Tally, summarize
from tests.support.agents import Agent
from tests.support.conversation import comment, label, tracking
from tests.support.plans import GREETER_FILES, GREETER_REQUIREMENTS, greeter_design
from tests.support.waits import run_state, wait_for
from tests.support.world import Issue, Site

REPO = "octo/greeter"
SITE = Site(REPO, 91, GREETER_FILES, people={"alice": "maintain"},
            issues={5: Issue("Greet users", "Print Hello when run.", "alice")})
SPEC_PHASES = ("requirements", "approve requirements, design", "approve design, tasks", "approve tasks")

# Five tasks: four independent modules, then a main that imports them all (it runs alone, last).
MODULES = ("m1", "m2", "m3", "m4")
FIVE_TASKS = {"tasks": [
    *({"key": m, "title": f"Write {m}.py", "description": f"Create {m}.py.", "covers": ["R1.1"],
       "files": [{"path": f"{m}.py", "action": "create"}], "verify": [f"python3 -c 'import {m}'"],
       "size": "S", "kind": "implement"} for m in MODULES),
    {"key": "main", "title": "Write main.py", "description": "Create main.py using every module.",
     "covers": ["R1.1"], "depends_on": list(MODULES), "files": [{"path": "main.py", "action": "create"}],
     "verify": ["python3 main.py | grep -q Hello"], "size": "S", "kind": "implement"},
]}
# What the agent writes for each task (T1..T5, in the order above).
FIVE_WRITES = {
    **{f"T{i}": (f"{m}.py", f"NAME = {m!r}\n") for i, m in enumerate(MODULES, 1)},
    "T5": ("main.py", "".join(f"import {m}\n" for m in MODULES) + "print('Hello')\n"),
}


class Meter:
    """Cuts `fake.calls` into phases: `close(name)` takes every call since the previous cut."""

    def __init__(self, fake) -> None:
        self.fake = fake
        self.mark = len(fake.calls)
        self.phases: dict[str, Tally] = {}

    def settle(self, quiet: float = 1.5, timeout: float = 20.0) -> None:
        """Wait until no API call has arrived for `quiet` seconds (the phase's trailing writes)."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.fake.calls), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = len(self.fake.calls)
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def wait_line(self, pattern: str, timeout: float = 60.0) -> int:
        """Wait for a call since the last cut whose line (`PATCH /repos/... -> 200`) matches `pattern`;
        the position just after it (a cut there leaves later calls to the next phase)."""
        def found():
            calls = self.fake.calls
            return next((i + 1 for i in range(self.mark, len(calls)) if re.search(pattern, calls[i].line())), None)
        return wait_for(found, timeout=timeout, message=lambda: f"a call matching {pattern!r}\n{self.report()}")

    def close(self, name: str, upto: int | None = None) -> Tally:
        calls = self.fake.calls
        end = len(calls) if upto is None else upto
        self.phases[name] = tally = summarize(calls[self.mark:end])
        self.mark = end
        return tally

    def total(self, *names: str) -> int:
        return sum(self.phases[n].api for n in names)

    def report(self, calls: bool = True) -> str:
        """Each phase's figures and, with `calls`, its API calls one per line."""
        out = []
        for name, tally in self.phases.items():
            out.append(f"{name}: {tally}")
            if calls:
                out += [f"    {line}" for line in tally.lines]
        return "\n".join(out)


def script_models(fake_anthropic, slow_seconds: float) -> Agent:
    """The planner's three drafts and a coding agent whose last task (T5) blocks `slow_seconds` first."""
    fake_anthropic.on_tool("emit_requirements_draft", GREETER_REQUIREMENTS, once=False)
    fake_anthropic.on_tool("emit_design_draft", greeter_design(), once=False)
    fake_anthropic.on_tool("emit_tasks_draft", FIVE_TASKS, once=False)
    fake_anthropic.on_tool("emit_review", {"findings": []}, once=False)
    agent = Agent(fake_anthropic, dict(FIVE_WRITES))
    agent.slow["T5"] = slow_seconds
    return agent


def _stage_waiting(fake, stage: str, status: str = "waiting for approval") -> bool:
    return any(c["body"].startswith(f"<!-- omoi:spec stage={stage} ") and status in c["body"]
               for c in fake.issue_comments(REPO, 5))


def _spec_branch(world) -> str | None:
    from app.db.models import Spec
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        return s.query(Spec.branch).scalar()


def whole_issue(world, agent: Agent, *, publish_wait: float, quiet_seconds: float) -> Meter:
    """Label the site's issue, approve each stage as it waits, let the run go to a ready pull request;
    while T5's agent blocks (once its start is shown, within `publish_wait`), a phase of `quiet_seconds`."""
    fake = world.github
    meter = Meter(fake)

    def explain(what: str):
        return lambda: f"{what}\n{meter.report()}\n--- worker\n{world.log_text('worker')[-4000:]}"

    assert label(world)[0] == 202
    phase = "requirements"
    for stage, following in (("requirements", "design"), ("design", "tasks")):
        wait_for(lambda: _stage_waiting(fake, stage), timeout=90, message=explain(f"{stage} waiting"))
        meter.settle()
        meter.close(phase)
        phase = f"approve {stage}, {following}"
        comment(world, "/omoi approve")  # answered by 👀 and the stage comment, no reply of its own
        wait_for(lambda: _stage_waiting(fake, stage, "approved by"), timeout=60, message=explain(f"{stage} approved"))
    wait_for(lambda: _stage_waiting(fake, "tasks"), timeout=90, message=explain("tasks waiting"))
    meter.settle()
    meter.close(phase)
    comment(world, "/omoi approve")
    wait_for(lambda: _stage_waiting(fake, "tasks", "approved by"), timeout=60, message=explain("tasks approved"))
    # the approval ends with the spec's check run; what follows (PR, tracking comment, ...) is the run's
    meter.close("approve tasks", upto=meter.wait_line(r"^PATCH /repos/[^ ]+/check-runs/\d+ "))

    # the last task's agent blocks: a quiet stretch with health ticks and nothing new to show
    wait_for(lambda: "T5" in agent.seen, timeout=180, message=explain("T5's agent blocking"))
    meter.close("run until the last task blocks")
    wait_for(lambda: "| 🔄 | **T5**" in tracking(world), timeout=publish_wait + 10, message=explain("T5 shown running"))
    time.sleep(2)  # the rest of that publish (the pull request body, the check run)
    meter.close("T5's start published")
    time.sleep(quiet_seconds)
    meter.close(f"quiet {quiet_seconds}s of a running task")

    def finished():
        head = fake.branch_sha(REPO, _spec_branch(world))
        return run_state(world) == "succeeded" and any(
            r["name"] == "omoi / implement" and r["head_sha"] == head and r["status"] == "completed"
            for r in fake.check_runs(REPO))
    wait_for(finished, timeout=180, message=explain("run succeeded, check run completed"))
    wait_for(lambda: [p for p in fake.pull_requests(REPO) if not p["draft"]], timeout=60, message=explain("ready PR"))
    meter.settle()
    meter.close("run ends, PR ready")
    return meter
