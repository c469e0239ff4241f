"""A task whose change landed clean hands over to its dependants at once (app/execution/integration.py,
app/execution/scheduler.py): the integrator records the task's commit and schedules the run, so a
dependant is claimed while the task's own worker is still settling. A change the rebase touched
(its checks run again) or work kept at a checkpoint hands over nothing; a new attempt forgets an
earlier attempt's commit."""
from __future__ import annotations

from sqlalchemy import update

from app.db.models import SpecTask
from app.db.session import session_scope
from app.execution import scheduler
from tests.support.gitwork import BATCH_README, BATCH_REPO, BATCH_BRANCH, edit_file, land_change, new_file


def _add_pending(run, task: str, depends_on: list[str], files: list[str]) -> None:
    with session_scope(run.settings.database_url) as s:
        s.add(SpecTask(spec_id=run.spec_id, task_id=task, title=task, description="", covers=[],
                       depends_on=depends_on, files=files, verify=[], status="pending"))


def _tasks(run) -> dict[str, tuple[str, str | None]]:
    with session_scope(run.settings.database_url) as s:
        return {t.task_id: (t.status, t.commit_sha) for t in s.query(SpecTask).filter_by(spec_id=run.spec_id)}


def _scheduling(run, calls: list):
    def schedule() -> None:
        calls.append(scheduler.schedule(run.settings, run.spec_id, per_spec=5))
    return schedule


def test_a_clean_landing_hands_its_dependants_over_before_its_worker_records_it(run_for, fake_github):
    run = run_for(["T1"])
    _add_pending(run, "T2", ["T1"], ["out/two.txt"])
    row = run.enqueue("T1", new_file("out/one.txt", "one\n"), files=("out/one.txt",))
    calls: list = []

    landed = land_change(run, "T1", row, landed_clean=_scheduling(run, calls))

    assert landed.sha == run.task_commits()["T1"]["sha"] and not landed.touched
    tasks = _tasks(run)
    assert tasks["T1"] == ("running", landed.sha)  # its worker has not recorded it yet
    assert tasks["T2"][0] == "running"  # claimed by the integrator's schedule
    assert [c.claimed[0][0] for c in calls] == ["T2"]


def test_a_landing_the_rebase_touched_hands_nothing_over(run_for, fake_github):
    run = run_for(["T1"])
    _add_pending(run, "T2", ["T1"], ["out/two.txt"])
    base = run.head()
    row = run.enqueue("T1", edit_file("README.md", BATCH_README, BATCH_README.replace("two", "TWO")), base=base)
    fake_github.push_human_commit(BATCH_REPO, BATCH_BRANCH, {"README.md": BATCH_README.replace("six", "SIX")},
                                  "a person edits")
    calls: list = []

    landed = land_change(run, "T1", row, landed_clean=_scheduling(run, calls))

    assert landed.sha and landed.touched  # T1's checks run again on the pushed commit
    assert _tasks(run) == {"T1": ("running", None), "T2": ("pending", None)}
    assert calls == []


def test_work_kept_at_a_checkpoint_lands_but_hands_nothing_over(run_for, fake_github):
    run = run_for(["T1"])
    _add_pending(run, "T2", ["T1"], ["out/two.txt"])
    row = run.enqueue("T1", new_file("out/one.txt", "half\n"), files=("out/one.txt",), wip=True)
    calls: list = []

    landed = land_change(run, "T1", row, landed_clean=_scheduling(run, calls))

    assert landed.sha == run.task_commits()["T1"]["sha"] and not landed.touched  # pushed, as WIP
    assert _tasks(run) == {"T1": ("running", None), "T2": ("pending", None)}  # T1 is not done
    assert calls == []


def test_a_new_attempt_forgets_the_commit_an_earlier_one_landed(run_for, fake_github):
    run = run_for(["T1"])
    _add_pending(run, "T2", ["T1"], ["out/two.txt"])
    with session_scope(run.settings.database_url) as s:  # attempt 1 landed clean, then its worker died
        s.execute(update(SpecTask).where(SpecTask.spec_id == run.spec_id, SpecTask.task_id == "T1").values(
            status="pending", lease_owner=None, commit_sha="a" * 40))

    out = scheduler.schedule(run.settings, run.spec_id, per_spec=5)

    assert [t for t, _ in out.claimed] == ["T1"]
    assert _tasks(run) == {"T1": ("running", None), "T2": ("pending", None)}  # T2 waits for attempt 2
