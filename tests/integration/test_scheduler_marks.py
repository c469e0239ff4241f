"""The scheduler's lock and marks (app/execution/scheduler.py `schedule`): a caller that finds its
installation's scheduling lock held leaves a mark for its spec and returns at once; the holder, once
it released the lock, schedules the marked specs (another spec through an `omoi.schedule` message,
its own in place). Observed from outside only: the rows in the database (specs' tasks, the
`issue_locks` rows) and the Celery messages on the embedded broker, read back with kombu as a
worker reads them (as tests/integration/test_broker_batches.py does)."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, select

from app.db.locks import release, try_acquire
from app.db.models import IssueLock, Spec, SpecTask
from app.db.session import get_engine, session_scope
from app.execution import scheduler
from tests.support.broker import read_queue

OTHER = "other-host:1:1:x"  # a scheduler in another process, on another host: alive as far as we can tell


@pytest.fixture
def settings(omoi_env, monkeypatch):
    """omoi's settings with the embedded broker (kombu's filesystem transport in OMOI_DATA_DIR); the
    process's Celery application (app/broker `shared_celery`, cached on first use) is built afresh
    from them, so app/jobs.py sends where `_messages` reads."""
    from app import broker
    from app.config import get_settings, reset_settings_cache

    monkeypatch.setenv("OMOI_BROKER_URL", "")
    reset_settings_cache()
    monkeypatch.setattr(broker, "_shared", None)
    yield get_settings()
    if broker._shared is not None:
        broker._shared.close()


def _messages(settings) -> list[tuple[str, list]]:
    """Every message on omoi's queue as (task name, positional args), consumed."""
    from app.broker import make_celery

    app = make_celery(settings)
    try:
        return [(headers["task"], list(body[0])) for headers, _, body in read_queue(app)]
    finally:
        app.close()


def _spec(installation: int, number: int, tasks: int) -> int:
    """A running spec with `tasks` ready tasks (no dependencies, disjoint write sets)."""
    with session_scope() as s:
        spec = Spec(repo_full_name=f"octo/sched-{installation}", issue_number=number, installation_id=installation,
                    title="t", state="approved", branch=f"omoi/issue-{number}", run_state="running")
        s.add(spec)
        s.flush()
        s.add_all([SpecTask(spec_id=spec.id, task_id=f"T{i}", status="pending", depends_on=[],
                            files=[f"src/s{number}_t{i}.py"]) for i in range(1, tasks + 1)])
        return spec.id


def _tasks(spec_id: int) -> dict[str, tuple[str, str | None]]:
    """task id -> (status, lease token)"""
    with session_scope() as s:
        return {t.task_id: (t.status, t.lease_owner)
                for t in s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id))}


def _locks(installation: int) -> dict[str, str]:
    """The `issue_locks` rows of the installation's scheduling: key -> owner."""
    with session_scope() as s:
        rows = s.scalars(select(IssueLock).where(IssueLock.key.like(f"schedule%:installation:{installation}%"))).all()
        return {r.key: r.owner for r in rows
                if r.key == f"schedule:installation:{installation}"
                or r.key.startswith(f"schedule-wanted:installation:{installation}:spec:")}


def _lock(installation: int) -> str:
    return f"schedule:installation:{installation}"


def _mark(installation: int, spec_id: int) -> str:
    return f"schedule-wanted:installation:{installation}:spec:{spec_id}"


def test_a_caller_finding_the_lock_held_leaves_a_mark_and_returns_at_once(settings):
    inst = 7101
    spec = _spec(inst, 1, 3)
    assert try_acquire(_lock(inst), OTHER, 30)

    started = time.monotonic()
    out = scheduler.schedule(settings, spec, 3)
    elapsed = time.monotonic() - started

    assert out.state == "deferred" and out.claimed == []
    assert elapsed < 2.0  # no polling of the lock (the old scheduler waited up to 10 s)
    assert {t: st for t, (st, _) in _tasks(spec).items()} == {"T1": "pending", "T2": "pending", "T3": "pending"}
    locks = _locks(inst)
    assert set(locks) == {_lock(inst), _mark(inst, spec)}
    assert locks[_lock(inst)] == OTHER  # the holder's lock untouched
    assert _messages(settings) == []  # nothing dispatched


def test_the_next_holder_hands_another_specs_mark_on_as_an_omoi_schedule_message(settings):
    inst = 7102
    s1, s2 = _spec(inst, 1, 2), _spec(inst, 2, 2)
    assert try_acquire(_lock(inst), OTHER, 30)
    assert scheduler.schedule(settings, s1, 3).state == "deferred"
    assert _mark(inst, s1) in _locks(inst)
    release(_lock(inst), OTHER)  # the other process finished

    out = scheduler.schedule(settings, s2, 3)

    assert out.state == "running"
    assert sorted(t for t, _ in out.claimed) == ["T1", "T2"]
    s2_tasks = _tasks(s2)
    assert {t: st for t, (st, _) in s2_tasks.items()} == {"T1": "running", "T2": "running"}
    assert {t: st for t, (st, _) in _tasks(s1).items()} == {"T1": "pending", "T2": "pending"}  # S1 is handed on
    assert _locks(inst) == {}  # the mark was taken, the lock released
    messages = _messages(settings)
    assert sorted(m for m in messages if m[0] == "omoi.schedule") == [("omoi.schedule", [s1])]
    run_tasks = sorted(args for name, args in messages if name == "omoi.run_task")
    assert run_tasks == sorted([s2, t, token] for t, (_, token) in s2_tasks.items())
    assert len(messages) == 3


def test_many_callers_at_once_claim_each_task_once_and_leave_no_lock_or_mark(settings):
    inst = 7103
    spec = _spec(inst, 1, 6)
    callers = 8
    barrier = threading.Barrier(callers)
    results, errors = [], []

    def call() -> None:
        try:
            barrier.wait()
            results.append(scheduler.schedule(settings, spec, 3))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    tasks = _tasks(spec)
    running = {t: token for t, (st, token) in tasks.items() if st == "running"}
    assert len(running) == 3
    assert sum(st == "pending" for st, _ in tasks.values()) == 3
    reported = [c for r in results for c in r.claimed]  # every claim reported by exactly one caller
    assert sorted(reported) == sorted(running.items())
    run_tasks = [args for name, args in _messages(settings) if name == "omoi.run_task"]
    assert sorted(run_tasks) == sorted([spec, t, token] for t, token in running.items())  # one message each
    assert _locks(inst) == {}


class _Arrivals:
    """Callers arriving while the holder runs: just before it releases the lock (the DELETE of its
    row), another caller, finding the lock held, leaves its mark (as `schedule` does, for
    scheduler.MARK_SECONDS) on a connection of its own; at most `limit` of them."""

    def __init__(self, settings, installation: int, spec_id: int, limit: int) -> None:
        self.engine = get_engine(settings.database_url)
        self.installation, self.spec_id, self.limit, self.marked = installation, spec_id, limit, []

    def _hook(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ARG002
        if (statement.lstrip().upper().startswith("DELETE FROM ISSUE_LOCKS")
                and _lock(self.installation) in str(parameters) and len(self.marked) < self.limit):
            self.marked.append(try_acquire(_mark(self.installation, self.spec_id), OTHER, 120))

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._hook)
        return self

    def __exit__(self, *exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._hook)


def test_a_mark_left_while_the_holder_runs_makes_it_schedule_again_in_place(settings):
    inst = 7104
    spec = _spec(inst, 1, 2)
    with _Arrivals(settings, inst, spec, limit=1) as arrivals:
        scheduler.schedule(settings, spec, 3)
    assert arrivals.marked == [True]
    assert {t: st for t, (st, _) in _tasks(spec).items()} == {"T1": "running", "T2": "running"}
    assert _locks(inst) == {}  # the mark taken by the second round, the lock released
    assert sorted(name for name, _ in _messages(settings)) == ["omoi.run_task", "omoi.run_task"]


def test_the_holder_reports_every_task_it_claimed_across_rounds(settings):
    inst = 7105
    spec = _spec(inst, 1, 2)
    with _Arrivals(settings, inst, spec, limit=1):
        out = scheduler.schedule(settings, spec, 3)
    running = {t: token for t, (st, token) in _tasks(spec).items() if st == "running"}
    assert len(running) == 2
    assert sorted(out.claimed) == sorted(running.items())


def test_a_mark_left_during_the_last_round_is_not_stranded(settings):
    """A caller arrives (finds the lock held, leaves its mark) during every round the holder runs."""
    inst = 7106
    spec = _spec(inst, 1, 2)
    with _Arrivals(settings, inst, spec, limit=10) as arrivals:
        scheduler.schedule(settings, spec, 3)
    assert arrivals.marked and all(arrivals.marked)
    assert {t: st for t, (st, _) in _tasks(spec).items()} == {"T1": "running", "T2": "running"}
    locks = _locks(inst)
    assert _lock(inst) not in locks
    handed_on = [args for name, args in _messages(settings) if name == "omoi.schedule"]
    # every mark is honoured: scheduled again in place (the mark taken) or handed on as a message
    assert _mark(inst, spec) not in locks or handed_on == [[spec]]
