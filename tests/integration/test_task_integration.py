"""The tasks that finish together are pushed together (app/execution/integration.py and
app/execution/batch_push.py), against the GitHub stand-in's real git and the database: one push for
every waiting change, one commit per task, nothing of an attempt that lost its task, nothing lost
when a push fails, and a re-verify asked for only where the rebase changed the task's own files."""
from __future__ import annotations

import asyncio
import threading

import pytest

from app.execution import integration
from tests.support.env import APP_ID
from tests.support.gitwork import BATCH_BRANCH, BATCH_README, BATCH_REPO, Run, edit_file, land_change as _land, new_file

REPO, BRANCH, README = BATCH_REPO, BATCH_BRANCH, BATCH_README


def _rows(run: Run) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from app.db.models import TaskIntegration
    from app.db.session import session_scope

    with session_scope(run.settings.database_url) as s:
        return [(r.task_id, r.state) for r in s.scalars(select(TaskIntegration).where(
            TaskIntegration.spec_id == run.spec_id).order_by(TaskIntegration.id))]


def test_changes_that_finish_together_are_pushed_together(run_for, fake_github):
    run = run_for(["T1", "T2", "T3"])
    base = run.head()
    odd = 'out/a "quoted" name ü.txt'  # written by git fast-import: the path must survive its quoting
    rows = {"T1": run.enqueue("T1", new_file("out/one.txt", "one\n")),
            "T2": run.enqueue("T2", new_file(odd, "two\n")),
            "T3": run.enqueue("T3", new_file("out/three.txt", "three\n"))}
    pushes_before = len(fake_github.pushes)

    first = _land(run, "T1", rows["T1"])  # T1 finds the lock free: it integrates every waiting change

    assert len(fake_github.pushes) == pushes_before + 1  # one push for the three tasks
    commits = run.task_commits()
    assert sorted(commits) == ["T1", "T2", "T3"]
    assert commits["T1"]["parents"] == [base]
    assert commits["T2"]["parents"] == [commits["T1"]["sha"]] and commits["T3"]["parents"] == [commits["T2"]["sha"]]
    assert commits["T2"]["files"] == [odd] and commits["T3"]["files"] == ["out/three.txt"]
    assert all(c["author"] == f"omoi[bot] <{APP_ID}+omoi[bot]@users.noreply.github.com>" for c in commits.values())
    assert run.head() == commits["T3"]["sha"]
    assert fake_github.file_at(REPO, BRANCH, odd) == "two\n"
    assert first.sha == commits["T1"]["sha"] and not first.rebased and not first.touched
    # The others were settled meanwhile: they find their outcome without pushing anything.
    second, third = _land(run, "T2", rows["T2"]), _land(run, "T3", rows["T3"])
    assert (second.sha, third.sha) == (commits["T2"]["sha"], commits["T3"]["sha"])
    assert second.rebased and not second.touched  # stacked on T1's commit, none of its own files changed
    assert len(fake_github.pushes) == pushes_before + 1 and _rows(run) == []
    assert fake_github.violations == []


def test_a_rebase_that_changes_the_tasks_files_asks_for_a_re_verify(run_for, fake_github):
    run = run_for(["T1", "T2"])
    base = run.head()
    rows = {"T1": run.enqueue("T1", edit_file("README.md", README, README.replace("two", "TWO")), base=base),
            "T2": run.enqueue("T2", new_file("out/two.txt", "two\n"), base=base)}
    fake_github.push_human_commit(REPO, BRANCH, {"README.md": README.replace("six", "SIX")}, "a person edits")

    landed = _land(run, "T1", rows["T1"])
    other = _land(run, "T2", rows["T2"])

    assert landed.rebased and landed.touched  # README changed since T1's base: its checks run again
    assert other.rebased and not other.touched  # only README moved: T2's file is as it was verified
    assert fake_github.file_at(REPO, BRANCH, "README.md") == README.replace("two", "TWO").replace("six", "SIX")
    assert sorted(run.task_commits()) == ["T1", "T2"]


def test_a_refused_change_is_left_out_and_the_others_go(run_for, fake_github):
    run = run_for(["T1", "T2", "T3"])
    rows = {"T1": run.enqueue("T1", new_file("out/one.txt", "one\n")),
            "T2": run.enqueue("T2", new_file("out/leak.txt", f"token {run.token}\n")),
            "T3": run.enqueue("T3", new_file(".gitattributes", "* filter=x\n"))}
    pushes_before = len(fake_github.pushes)

    first = _land(run, "T1", rows["T1"])
    leak, attributes = _land(run, "T2", rows["T2"]), _land(run, "T3", rows["T3"])

    assert first.sha and leak.sha is None and attributes.sha is None
    assert leak.refused.code == "policy/secret_in_file" and attributes.refused.code == "policy/gitattributes"
    assert sorted(run.task_commits()) == ["T1"] and len(fake_github.pushes) == pushes_before + 1
    assert fake_github.file_at(REPO, BRANCH, "out/leak.txt") is None
    assert all(run.token not in c["message"] for c in fake_github.commits(REPO, BRANCH))


def test_a_change_of_an_attempt_that_lost_its_task_is_never_pushed(run_for, fake_github):
    from app.db.models import SpecTask
    from app.db.session import session_scope
    from app.execution.leases import update

    run = run_for(["T1", "T2"])
    rows = {"T1": run.enqueue("T1", new_file("out/one.txt", "one\n")),
            "T2": run.enqueue("T2", new_file("out/two.txt", "two\n"))}
    with session_scope(run.settings.database_url) as s:  # the guardian took T2 over
        s.execute(update(SpecTask).where(SpecTask.id == run.leases["T2"].row_id).values(lease_owner="guardian"))

    assert _land(run, "T1", rows["T1"]).sha
    assert _land(run, "T2", rows["T2"]) is None
    assert sorted(run.task_commits()) == ["T1"] and fake_github.file_at(REPO, BRANCH, "out/two.txt") is None


def test_a_failed_push_leaves_the_changes_waiting_for_the_next_integrator(run_for, fake_github):
    from app.execution.gitwork import GitError

    run = run_for(["T1", "T2"])
    rows = {"T1": run.enqueue("T1", new_file("out/one.txt", "one\n")),
            "T2": run.enqueue("T2", new_file("out/two.txt", "two\n"))}
    revoked = run.clone()
    revoked.token = "ghs_" + "x" * 36  # revoked meanwhile: GitHub refuses the push
    before = run.head()

    with pytest.raises(GitError):
        integration.integrate(run.settings, run.spec_id, revoked, None, [])

    assert run.head() == before and _rows(run) == [("T1", "waiting"), ("T2", "waiting")]
    assert _land(run, "T2", rows["T2"]).sha  # the next holder of the lock pushes both
    assert sorted(run.task_commits()) == ["T1", "T2"] and _land(run, "T1", rows["T1"]).sha


def test_tasks_landing_at_once_all_reach_the_branch(run_for, fake_github):
    tasks = [f"T{i}" for i in range(1, 7)]
    run = run_for(tasks)
    rows = {t: run.enqueue(t, new_file(f"out/{t}.txt", f"{t}\n")) for t in tasks}
    clones = {t: run.clone() for t in tasks}
    pushes_before = len(fake_github.pushes)

    async def all_land():
        return await asyncio.gather(*(integration.land(
            run.settings, run.spec_id, rows[t], integration.lock_key(REPO, BRANCH), clones[t], None, [],
            threading.Event()) for t in tasks))

    landed = asyncio.run(all_land())

    commits = run.task_commits()
    assert sorted(commits) == sorted(tasks) and len(fake_github.commits(REPO, BRANCH)) == 2 + len(tasks)
    assert [x.sha for x in landed] == [commits[t]["sha"] for t in tasks]
    assert len(fake_github.pushes) - pushes_before < len(tasks)  # some went together
    assert _rows(run) == []


def test_a_sandbox_clone_copies_the_hosts_mirror_and_never_links_it(run_for, fake_github, tmp_path):
    import os
    import stat

    from app.github import url_with_token
    from app.sandbox.base import split_repo_url
    from app.sandbox.clone import Mirror, host_clone
    from tests.support.gitrepos import git

    run = run_for(["T1"])
    head = run.clone().out("rev-parse", "HEAD")  # omoi's commit clone fetched the host's mirror
    mirror = Mirror(fake_github.clone_url(REPO))
    git_requests = sum(c.kind == "git" for c in fake_github.calls)
    (tmp_path / "home").mkdir()

    sha = host_clone(split_repo_url(url_with_token(fake_github.clone_url(REPO), run.token)), head, tmp_path / "work",
                     tmp_path / "home")

    assert sha == head and sum(c.kind == "git" for c in fake_github.calls) == git_requests  # no download
    dot_git = tmp_path / "work" / ".git"
    assert not (dot_git / "objects" / "info" / "alternates").exists()
    objects = [p for p in (dot_git / "objects").rglob("*") if p.is_file()]
    assert objects and all(os.stat(p).st_nlink == 1 for p in objects)  # copies: the mirror's files stay omoi's
    assert git(tmp_path / "work", "config", "remote.origin.url") == fake_github.clone_url(REPO)
    assert str(mirror.path) not in (dot_git / "config").read_text() and run.token not in (dot_git / "config").read_text()
    assert stat.S_IMODE(os.stat(mirror.path.parent).st_mode) == 0o700


def test_a_dependant_starting_after_a_push_from_this_host_needs_no_fetch(run_for, fake_github):
    run = run_for(["T1", "T2"])
    row = run.enqueue("T1", new_file("out/one.txt", "one\n"))
    pushed = _land(run, "T1", row).sha
    git_requests = sum(c.kind == "git" for c in fake_github.calls)

    dependant = run.clone(want=[pushed])  # the host's mirror already holds what T1 pushed

    assert dependant.out("rev-parse", "HEAD") == pushed == run.head()
    assert sum(c.kind == "git" for c in fake_github.calls) == git_requests
    fake_github.push_human_commit(REPO, BRANCH, {"other.txt": "x\n"}, "a person pushes")
    assert run.clone().out("rev-parse", "HEAD") == run.head()  # without that knowledge: fetched
    assert sum(c.kind == "git" for c in fake_github.calls) > git_requests


class _Gathering:
    """Stands in for the `time` integration.py sees: records each pause the integrator makes while it
    waits for announced changes (integrate's only sleep) and says when the first one began."""

    def __init__(self) -> None:
        import time

        self.monotonic, self._sleep = time.monotonic, time.sleep
        self.began = threading.Event()
        self._lock = threading.Lock()
        self._pauses = 0

    @property
    def pauses(self) -> int:
        with self._lock:
            return self._pauses

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._pauses += 1
        self.began.set()
        self._sleep(seconds)


@pytest.fixture
def gathering(monkeypatch):
    """The integrator's pauses, counted; its window made long (a slow machine must not split a push that
    the test means to be one: the tests below count pauses and pushes, never seconds)."""
    watch = _Gathering()
    monkeypatch.setattr(integration, "time", watch)
    monkeypatch.setattr(integration, "GATHER_SECONDS", 30.0)
    return watch


def _enqueue(run: Run, task: str, path: str, base: str, announced: int | None) -> int:
    """`Run.enqueue` for an announced change (safe off the test's thread: no clone is touched)."""
    return integration.enqueue(run.settings, run.leases[task], base_sha=base, patch=new_file(path, f"{task}\n"),
                               message=f"{task}: change\n\nOmoi-Task: {run.spec_id}/{task}\n", paths=[path],
                               announced=announced)


def _in_thread(work):
    """Run `work` on another thread (as another task's worker would); .result() re-raises its failure."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1)
    future = pool.submit(work)
    pool.shutdown(wait=False)
    return future


def test_an_announced_change_is_waited_for_and_goes_in_the_integrators_push(run_for, fake_github, gathering):
    import time

    run = run_for(["T1", "T2"])
    base = run.head()
    clones = {"T1": run.clone(), "T2": run.clone()}
    pushes_before = len(fake_github.pushes)
    announced = {t: integration.announce(run.settings, run.leases[t]) for t in ("T1", "T2")}
    row1 = _enqueue(run, "T1", "out/one.txt", base, announced["T1"])
    assert row1 == announced["T1"] and _rows(run) == [("T1", "waiting"), ("T2", "preparing")]

    def t2_finishes():  # T2's diff and checks end while T1 integrates
        assert gathering.began.wait(60), "the integrator never waited for T2's announced change"
        time.sleep(0.1)
        row2 = _enqueue(run, "T2", "out/two.txt", base, announced["T2"])
        return row2, _land(run, "T2", row2, clones["T2"])

    t2 = _in_thread(t2_finishes)
    first = _land(run, "T1", row1, clones["T1"])  # T1 finds the lock free: it is the integrator
    row2, second = t2.result(timeout=120)

    assert row2 == announced["T2"]  # the announced row became T2's waiting change
    commits = run.task_commits()
    assert sorted(commits) == ["T1", "T2"]
    assert commits["T1"]["parents"] == [base] and commits["T2"]["parents"] == [commits["T1"]["sha"]]
    # ONE push moved the branch from the old head to T2's commit, T1's beneath it
    assert fake_github.pushes[pushes_before:] == [(REPO, f"refs/heads/{BRANCH}", base, commits["T2"]["sha"])]
    assert run.head() == commits["T2"]["sha"]
    assert (first.sha, second.sha) == (commits["T1"]["sha"], commits["T2"]["sha"])
    assert fake_github.file_at(REPO, BRANCH, "out/two.txt") == "T2\n"
    assert _rows(run) == [] and fake_github.violations == []


def test_a_withdrawn_announcement_does_not_hold_the_integrator(run_for, fake_github, gathering):
    run = run_for(["T1", "T2"])
    base = run.head()
    pushes_before = len(fake_github.pushes)
    row1 = _enqueue(run, "T1", "out/one.txt", base, integration.announce(run.settings, run.leases["T1"]))
    announced2 = integration.announce(run.settings, run.leases["T2"])

    def t2_fails_its_checks():
        assert gathering.began.wait(60), "the integrator never waited for T2's announced change"
        integration.withdraw(run.settings, announced2)
        return gathering.pauses

    t2 = _in_thread(t2_fails_its_checks)
    first = _land(run, "T1", row1, run.clone())
    pauses_at_withdrawal = t2.result(timeout=120)

    # Once withdrawn the announcement held nobody: at most the pause that began on a read made before
    # the withdrawal committed (the window is 30 s of 0.02 s pauses).
    assert gathering.pauses - pauses_at_withdrawal <= 1
    commits = run.task_commits()
    assert sorted(commits) == ["T1"] and first.sha == commits["T1"]["sha"] == run.head()
    assert fake_github.pushes[pushes_before:] == [(REPO, f"refs/heads/{BRANCH}", base, first.sha)]
    assert _rows(run) == []  # the preparing row is gone (and T1's settled row was taken)


@pytest.mark.parametrize("lost", ["taken_over", "no_longer_running"])
def test_a_stale_announcement_is_deleted_and_never_holds_the_integrator(run_for, fake_github, gathering, lost):
    from app.db.models import SpecTask
    from app.db.session import session_scope
    from app.execution.leases import update

    run = run_for(["T1", "T2"])
    base = run.head()
    pushes_before = len(fake_github.pushes)
    stale = integration.announce(run.settings, run.leases["T2"])
    row1 = _enqueue(run, "T1", "out/one.txt", base, integration.announce(run.settings, run.leases["T1"]))
    with session_scope(run.settings.database_url) as s:  # T2's attempt lost its task after announcing
        change = {"lease_owner": "guardian"} if lost == "taken_over" else {"status": "pending", "lease_owner": None}
        s.execute(update(SpecTask).where(SpecTask.id == run.leases["T2"].row_id).values(**change))
    assert _rows(run) == [("T2", "preparing"), ("T1", "waiting")]

    first = _land(run, "T1", row1, run.clone())

    assert gathering.pauses == 0  # the stale announcement was never waited for
    assert _rows(run) == []  # and it was deleted
    assert sorted(run.task_commits()) == ["T1"] and first.sha == run.head()
    assert fake_github.pushes[pushes_before:] == [(REPO, f"refs/heads/{BRANCH}", base, first.sha)]
    # The lost attempt's late change finds no announcement to fill: its row is dropped, never pushed.
    late = _enqueue(run, "T2", "out/two.txt", base, stale)
    assert _land(run, "T2", late, run.clone()) is None
    assert len(fake_github.pushes) == pushes_before + 1 and fake_github.file_at(REPO, BRANCH, "out/two.txt") is None
    assert _rows(run) == []


def test_an_announced_change_that_does_not_come_is_waited_for_only_a_moment(run_for, fake_github):
    run = run_for(["T1", "T2"])  # the real GATHER_SECONDS: T1 goes alone once it has passed
    base = run.head()
    pushes_before = len(fake_github.pushes)
    announced2 = integration.announce(run.settings, run.leases["T2"])
    row1 = _enqueue(run, "T1", "out/one.txt", base, None)

    first = _land(run, "T1", row1, run.clone())

    assert first.sha == run.head() and sorted(run.task_commits()) == ["T1"]
    assert _rows(run) == [("T2", "preparing")]  # T2's attempt still holds its task: its announcement stays
    second = _land(run, "T2", _enqueue(run, "T2", "out/two.txt", base, announced2), run.clone())
    commits = run.task_commits()
    assert second.sha == commits["T2"]["sha"] == run.head() and commits["T2"]["parents"] == [first.sha]
    assert len(fake_github.pushes) == pushes_before + 2 and _rows(run) == []


def test_a_lost_attempts_late_change_never_fills_another_attempts_announcement(run_for, fake_github):
    """On SQLite (omoi's default database) a deleted row's id is given again (task_integrations has no
    AUTOINCREMENT): the late change of an attempt whose announcement was deleted as stale must not fill
    the announcement another attempt made since (`enqueue` matches the lease, not the id alone)."""
    from app.db.models import SpecTask
    from app.db.session import session_scope
    from app.execution.leases import update

    run = run_for(["T1", "T2", "T3"])
    base = run.head()
    stale = integration.announce(run.settings, run.leases["T2"])
    with session_scope(run.settings.database_url) as s:  # the guardian takes T2 over while its checks run
        s.execute(update(SpecTask).where(SpecTask.id == run.leases["T2"].row_id).values(lease_owner="guardian"))
    assert _land(run, "T1", _enqueue(run, "T1", "out/one.txt", base, None), run.clone()).sha  # drops T2's row
    fresh = integration.announce(run.settings, run.leases["T3"])  # T3's agent finishes: a new announcement

    late = _enqueue(run, "T2", "out/two.txt", base, stale)  # the lost attempt's checks end: too late
    t3 = _enqueue(run, "T3", "out/three.txt", base, fresh)
    landed = _land(run, "T3", t3, run.clone())

    assert fake_github.file_at(REPO, BRANCH, "out/two.txt") is None  # nothing of the lost attempt is pushed
    assert fake_github.file_at(REPO, BRANCH, "out/three.txt") == "T3\n" and landed.sha == run.head()
    assert _land(run, "T2", late, run.clone()) is None
