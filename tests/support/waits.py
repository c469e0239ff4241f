"""Waiting for what omoi does, and reading a run back from its database.

wait_for polls a condition (a failure message it is given as a callable is built at the time-out,
so it shows the state that explains the failure); wait_run waits for a run's end state and its
finished check run; run_state and tasks_in_db read the run of a World (tests/support/world.py).
"""
from __future__ import annotations

import time

from tests.support.conversation import implement_check


def wait_for(predicate, timeout: float = 30, interval: float = 0.1, message="condition"):
    """Poll `predicate` until it is truthy. `message` may be a callable: it is then called at the
    time-out, so logs and states in it are the ones that explain the failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message() if callable(message) else message}")


def run_state(world) -> str | None:
    from sqlalchemy import select

    from app.db.models import Spec
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        return s.scalars(select(Spec.run_state)).first()


def tasks_in_db(world) -> dict:
    """The run's tasks (SpecTask rows) by task id."""
    from sqlalchemy import select

    from app.db.models import SpecTask
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        return {t.task_id: t for t in s.scalars(select(SpecTask))}


def wait_run(world, state: str, timeout: float = 90):
    """The run reaches `state` and its check run is completed."""
    def explain():  # at the time-out: the run and its tasks as the database has them, then the workers' logs
        tasks = {t: (r.status, r.attempts, r.lease_owner, r.error) for t, r in sorted(tasks_in_db(world).items())}
        noise = ("omoi.schedule[", "omoi.execution_health[", "Scheduler: Sending")  # beat's every-second chatter
        quiet = lambda n: "\n".join(ln for ln in world.log_text(n).splitlines() if not any(x in ln for x in noise))  # noqa: E731
        logs = "".join(f"\n--- {n}\n{quiet(n)[-6000:]}" for n in ("worker", "worker2") if n in world.procs)
        return f"run {state}; it is {run_state(world)!r}, check {implement_check(world)!r}; tasks {tasks}{logs}"
    return wait_for(lambda: run_state(world) == state and (implement_check(world) or {}).get("status") == "completed",
                    timeout=timeout, message=explain)
