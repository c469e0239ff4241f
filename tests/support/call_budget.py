"""What omoi costs at GitHub's wire, phase by phase: a five-task plan for the greeter repository (the
drafts the model writes and the code the agent writes) and a Meter that cuts the GitHub stand-in's
recorded traffic into named phases (tests/e2e/test_call_budget.py, benchmarks/spec_flow.py).

Git smart-HTTP requests (clones, fetches, pushes) are counted apart from the REST + GraphQL calls
the budgets are about.
"""
from __future__ import annotations

import time

from tests.fakes.github.traffic import Tally, summarize

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

    def close(self, name: str) -> Tally:
        calls = self.fake.calls
        self.phases[name] = tally = summarize(calls[self.mark:])
        self.mark = len(calls)
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
