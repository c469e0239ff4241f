"""A worker killed while publishing a run leaves the publish lock behind, and the state others wanted
shown waits behind it: once the lock is free (expired), the health sweep finds that spec to publish."""
from __future__ import annotations

from datetime import timedelta

from app.config import get_settings
from app.db.locks import try_acquire
from app.db.models import IssueLock
from app.db.session import session_scope
from app.execution.run_report import PUBLISH_LOCK_SECONDS, publishes_wanted
from app.timeutil import utc_now


def test_a_wanted_publish_behind_a_dead_publisher_is_found_once_its_lock_expires(omoi_env):
    settings = get_settings()
    assert try_acquire("publish:spec:7", "dead-worker", PUBLISH_LOCK_SECONDS)  # killed while publishing
    assert try_acquire("publish-wanted:spec:7", "another-worker", 600)  # wanted the newest state meanwhile
    assert try_acquire("publish-wanted:spec:8", "another-worker", 600)  # nobody holds 8's lock
    assert publishes_wanted(settings) == [8]  # 7 waits: its publisher may still be alive
    with session_scope() as s:  # ... until the dead worker's lock runs out
        s.get(IssueLock, "publish:spec:7").expires_at = utc_now() - timedelta(seconds=1)
    assert publishes_wanted(settings) == [7, 8]


async def test_edits_while_running_collapse_and_the_end_is_written_at_once(github_env, fake_github):
    """While a run goes on, a publish within PUBLISH_SPACING_SECONDS of the last write sends nothing (the
    next health tick sends the newest state); the run's end is written at once, the check run last, on
    the head omoi recorded pushing, one check run per head and the old one left as it was."""
    from app.db.models import Spec, SpecTask
    from app.execution import run_report
    from app.github import cache
    from app.github.client import installation_client

    repo, branch = "octo/hello", "omoi/issue-1-x"
    fake_github.add_installation(7, "octo")
    fake_github.add_repo(repo, installation_id=7, files={"README.md": "hi\n"})
    fake_github.add_issue(repo, 1, title="x", user="alice")
    fake_github.push_human_commit(repo, branch, {"a.py": "a = 1\n"}, "a")
    settings = get_settings()
    with session_scope() as s:
        spec = Spec(repo_full_name=repo, issue_number=1, installation_id=7, title="x", state="approved",
                    branch=branch, run_state="running", run_started_at=utc_now())
        s.add(spec)
        s.flush()
        s.add(SpecTask(spec_id=spec.id, task_id="T1", title="one", status="running"))
        spec_id = spec.id
    cache.remember_head(settings.database_url, repo, branch, fake_github.branch_sha(repo, branch))
    async with installation_client(settings, 7) as gh:
        await run_report.publish(gh, settings, spec_id)
        first = len(fake_github.calls)
        with session_scope() as s:
            s.query(SpecTask).filter_by(spec_id=spec_id).one().status = "done"
        await run_report.publish(gh, settings, spec_id)  # within the spacing: collapses into a later one
        assert len(fake_github.calls) == first
        fake_github.push_human_commit(repo, branch, {"b.py": "b = 1\n"}, "b")  # as omoi's push would
        cache.remember_head(settings.database_url, repo, branch, fake_github.branch_sha(repo, branch))
        with session_scope() as s:
            s.get(Spec, spec_id).run_state = "succeeded"
            s.get(Spec, spec_id).run_finished_at = utc_now()
        await run_report.publish(gh, settings, spec_id)
    written = [c for c in fake_github.calls[first:] if c.is_write]
    assert [c.method for c in written][-1] == "POST" and written[-1].path.endswith("/check-runs")
    assert not fake_github.calls_matching("GET", r"/git/ref/")  # the head came from omoi's records
    runs = [r for r in fake_github.check_runs(repo) if r["name"] == run_report.CHECK_NAME]
    assert [(r["head_sha"], r["status"]) for r in runs] == [
        (fake_github.commits(repo, branch)[1]["sha"], "in_progress"),  # the old head's, never edited
        (fake_github.branch_sha(repo, branch), "completed")]
    assert "done" in fake_github.issue_comments(repo, 1)[0]["body"].lower()
    assert fake_github.violations == []
