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
from tests.support.gitwork import Run, edit_file, new_file

REPO, INSTALLATION, BRANCH = "octo/batch", 77, "omoi/issue-1-batch"
README = "# batch\n\n" + "".join(f"line {i}\n" for i in range(1, 13)).replace("line 2\n", "two\n").replace(
    "line 11\n", "six\n")  # two edits far enough apart for a clean 3-way merge


@pytest.fixture
def run_for(github_env, fake_github):
    from app.config import get_settings
    from app.github.client import installation_client

    fake_github.add_installation(INSTALLATION, "octo")
    fake_github.add_repo(REPO, installation_id=INSTALLATION, files={"README.md": README})
    fake_github.push_human_commit(REPO, BRANCH, {"spec.md": "spec\n"}, "start")
    settings = get_settings()

    async def token() -> str:
        async with installation_client(settings, INSTALLATION) as gh:
            return gh.oauth_token

    made = []

    def make(tasks: list[str]) -> Run:
        run = Run(fake_github, settings, asyncio.run(token()), repo=REPO, installation=INSTALLATION, branch=BRANCH,
                  tasks=tasks)
        made.append(run)
        return run

    yield make
    for run in made:
        run.cleanup()


def _land(run: Run, task: str, row: int, clone=None) -> integration.Landed | None:
    clone = clone or run.clone()
    return asyncio.run(integration.land(run.settings, run.spec_id, row, integration.lock_key(REPO, BRANCH), clone,
                                        None, [], threading.Event()))


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
