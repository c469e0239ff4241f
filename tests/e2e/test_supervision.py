"""Supervision of running work end to end (issue 6, app/execution/monitoring.py): the conductor pausing duplicate
work, the stall notice, orphan sandbox clean-up. Real web process and Celery worker with beat, the real
Claude Code CLI against the Anthropic stand-in (scripted per task and per session), git behind the
GitHub stand-in; the guardian runs too (it judges every session on track here).
"""
from __future__ import annotations

import os
import shutil
import re
import time
from pathlib import Path

from sqlalchemy import select, update

from app.execution import supervision as monitoring
from app.config import Settings
from app.db.models import Intervention, Spec, SpecTask
from app.db.session import session_scope
from app.sandbox import disposal
from app.text.rendering import explain
from tests.support.agents import Sessions, wait_step, write_step
from tests.support.conversation import comment, implement_check, task_commits, tracking
from tests.support.plans import BYE, CODE, HELLO
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, ISSUE, BRANCH = APPROVED.repo, APPROVED.issue, APPROVED.branch
PAUSED_WAIT = 30  # seconds the paused session would wait if nothing stopped it: longer than the whole test
# Both agents also write this helper, undeclared. Over 4 KB, like most real files: the trajectory keeps a
# clipped copy of such a Write call (app/agent/session.py), and the conductor must still see which file it wrote.
SHARED = "words.py", '"""Greeting words."""\n' + "".join(f"WORD_{i} = 'word number {i}'\n" for i in range(200))


def tracking_bodies(fake) -> list[str]:
    """Every version of the tracking comment, oldest first (its creation and each edit)."""
    bodies = []
    for call in fake.calls:
        body = call.json.get("body") if isinstance(call.json, dict) else None
        if (call.method in ("POST", "PATCH") and re.search(r"/issues/(\d+/)?comments(/\d+)?$", call.path)
                and isinstance(body, str) and body.startswith("<!-- omoi:run ")):
            bodies.append(body)
    return bodies


# --------------------------------------------------------------------------------------------


def _sandbox_of(task: str) -> tuple[str, int]:
    """The oldest local sandbox of `task` (its root) and the host uid its jail runs as."""
    from app.sandbox.local import sandbox_base_dir

    roots = sorted(sandbox_base_dir(Settings()).glob(f"omoi-sb-spec-*-{task}-*"), key=lambda p: p.stat().st_mtime)
    return str(roots[0]), (roots[0] / "work").stat().st_uid


def _processes_of(uid: int) -> list[int]:
    """Live processes running as `uid` (each local sandbox's jail has a host uid of its own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


def test_conductor_pauses_duplicate_work_and_runs_it_after_the_other(supervised_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = supervised_run(extra_env={"OMOI_CONDUCTOR_INTERVAL_SECONDS": "1"})
    # T1 and T2 are independent and declare different files, so both start at once; both agents also
    # write words.py (the same content: duplicate work), then think for a while. T2's first session
    # would think for longer than the whole test if nothing stopped it.
    script = Sessions(fake_anthropic, {
        "T1": [[write_step("hello.py", CODE["hello.py"]), write_step(*SHARED), wait_step(8)]],
        "T2": [[write_step("bye.py", CODE["bye.py"]), write_step(*SHARED), wait_step(PAUSED_WAIT)],
               [write_step("bye.py", CODE["bye.py"]), write_step(*SHARED)]],
    })
    spec_id = approve_plan(procs, [HELLO, BYE])
    comment(procs, "/omoi implement")
    wait_for(lambda: any(s[:3] == ("T2", 0, 2) for s in script.seen), timeout=60, message="T2 waiting")
    paused_dir, paused_uid = _sandbox_of("T2")
    assert _processes_of(paused_uid), "T2's first session runs in its sandbox"
    wait_run(procs, "succeeded", timeout=120)

    db = tasks_in_db(procs)
    with session_scope(procs.database_url) as s:
        rows = [(i.source, i.task_id, i.attempt, i.verdict, i.action, i.reason, i.reason_params)
                for i in s.scalars(select(Intervention))]
    assert [r[:5] for r in rows] == [("conductor", "T2", 1, "duplicate", "pause")]
    # stored as a reason code and its parameters (templates/reasons/supervision/), worded when shown
    code, params = rows[0][5:]
    assert (code, params["after"], params["cause"]["code"]) == ("supervision/runs_after", "T1", "supervision/both_write")
    assert (params["cause"]["params"]["task"], params["cause"]["params"]["other"]) == ("T2", "T1")
    assert "words.py" in params["cause"]["params"]["files"]
    assert "T2 and T1 both write words.py" in explain(code, params) and "runs after T1" in explain(code, params)
    # re-planned: T2 waited for T1 and ran again from T1's commit; the pause did not count as an attempt.
    # (T2 may start as soon as T1's commit landed clean, before T1's worker recorded T1 as finished:
    # tests/integration/test_early_handoff.py; its commit sits on T1's, below.)
    assert db["T1"].status == db["T2"].status == "done"
    assert db["T2"].depends_on == ["T1"] and db["T2"].started_at >= db["T1"].started_at
    assert db["T1"].attempts == 1 and db["T2"].attempts == 1
    assert len(script.workdirs["T1"]) == 1 and len(script.workdirs["T2"]) == 2

    # the paused session was really stopped (the worker lost its lease and cancelled it): it never came
    # back from its wait, its CLI and commands are gone and its sandbox was removed, long before the
    # wait would have ended by itself
    paused_wait = next(at for t, n, done, at in script.seen if (t, n, done) == ("T2", 0, 2))
    assert time.monotonic() < paused_wait + PAUSED_WAIT, "too slow to tell whether the paused session was stopped"
    assert not any(t == "T2" and n == 0 and done > 2 for t, n, done, _ in script.seen)
    assert _processes_of(paused_uid) == [] and not Path(paused_dir).exists()

    # no duplicate commits: one per task, the shared file once, and only the two pushes of those commits
    commits = task_commits(procs)
    assert {k: len(v) for k, v in commits.items()} == {f"{spec_id}/T1": 1, f"{spec_id}/T2": 1}
    by_sha = {c["sha"]: c for c in fake.commits(REPO, BRANCH)}
    t1, t2 = by_sha[commits[f"{spec_id}/T1"][0]], by_sha[commits[f"{spec_id}/T2"][0]]
    assert t1["files"] == ["hello.py", "words.py"] and t2["files"] == ["bye.py"] and t2["parents"] == [t1["sha"]]
    assert [new for _, ref, _, new in fake.pushes if ref == f"refs/heads/{BRANCH}"] == [t1["sha"], t2["sha"]]
    assert fake.file_at(REPO, BRANCH, "words.py") == SHARED[1]

    check = implement_check(procs)
    assert check["conclusion"] == "success"
    for text in (check["output"]["summary"], tracking(procs)):
        assert "#### Supervision" in text and "**T2** (attempt 1): conductor judged it *duplicate*" in text
        assert "T2 and T1 both write words.py; it runs after T1 → pause" in text
    assert fake.violations == []


def test_stalled_run_is_reported_until_progress_resumes(supervised_run, fake_github, fake_anthropic):
    fake = fake_github
    procs = supervised_run(extra_env={"OMOI_STALL_MINUTES": "0.08"})  # 4.8 s without progress is a stall
    # the agent writes hello.py, then produces nothing for 11 s (stalled), then works on a little longer
    Sessions(fake_anthropic, {"T1": [[write_step("hello.py", CODE["hello.py"]), wait_step(11), wait_step(3)]]})
    spec_id = approve_plan(procs, [HELLO])
    comment(procs, "/omoi implement")
    wait_run(procs, "succeeded", timeout=120)

    bodies = tracking_bodies(fake)
    notice = "⚠️ **No progress for "
    stalled = [i for i, b in enumerate(bodies) if notice in b]
    timeline = [("stalled " if notice in b else "") + ("running" if "🔄 **Running:**" in b else "ended") for b in bodies]
    assert stalled, f"no tracking comment showed the stall: {timeline}"
    assert all("🔄 **Running:**" in bodies[i] for i in stalled), timeline
    assert "🔄 **Running:** 0/1 tasks done, 1 in progress" in bodies[stalled[0]]
    assert re.search(r"No progress for \d+s\*\*: no task finished and no agent produced output", bodies[stalled[0]])
    # before the stall, and again while the agent works on (still running), the notice is not there
    assert timeline[0] == "running", timeline
    assert "running" in timeline[stalled[0] + 1:], timeline
    # the check run is published before the tracking comment: wait for the comment's last edit
    final = wait_for(lambda: next((b for b in [tracking(procs)] if "All 1 tasks are done" in b), None), timeout=30,
                     message="the final tracking comment")
    assert notice not in final
    assert notice not in implement_check(procs)["output"]["summary"]
    assert any(notice in (c.json.get("output") or {}).get("summary", "") for c in fake.calls
               if c.method in ("POST", "PATCH") and "/check-runs" in c.path and isinstance(c.json, dict))

    def flag():
        with session_scope(procs.database_url) as s:
            return s.get(Spec, spec_id).stall_reported_at

    wait_for(lambda: flag() is None, timeout=10, message="stall flag cleared")  # by the next health sweep
    assert set(task_commits(procs)) == {f"{spec_id}/T1"}
    assert fake.violations == []


def test_stall_flag_follows_progress_and_ends_with_the_run(omoi_env):
    from datetime import timedelta

    from app.timeutil import utc_now

    settings = Settings(stall_minutes=5)
    long_ago = utc_now() - timedelta(minutes=10)
    with session_scope(settings.database_url) as s:
        spec = Spec(repo_full_name=REPO, issue_number=ISSUE, installation_id=1, title="t", state="approved",
                    run_state="running", run_started_at=long_ago)
        s.add(spec)
        s.flush()
        spec_id = spec.id
        s.add(SpecTask(spec_id=spec_id, task_id="T1", title="T1", description="", covers=[], depends_on=[],
                       files=[], verify=[], status="running", started_at=long_ago, trajectory_at=long_ago))

    def flagged():
        with session_scope(settings.database_url) as s:
            return s.get(Spec, spec_id).stall_reported_at is not None

    assert monitoring.stalls(settings) == [spec_id] and flagged()
    assert monitoring.stalls(settings) == [] and flagged()  # reported once
    with session_scope(settings.database_url) as s:  # the agent said something
        s.execute(update(SpecTask).values(trajectory_at=utc_now()))
    assert monitoring.stalls(settings) == [spec_id] and not flagged()
    with session_scope(settings.database_url) as s:  # silent again, then the run fails while stalled
        s.execute(update(SpecTask).values(trajectory_at=long_ago))
    assert monitoring.stalls(settings) == [spec_id] and flagged()
    with session_scope(settings.database_url) as s:
        s.get(Spec, spec_id).run_state = "failed"
    # cleared, so a retried run does not show the old notice before the next sweep
    assert monitoring.stalls(settings) == [spec_id] and not flagged()
    # `/omoi retry`: running again with only old progress on record; the stall clock restarts now
    from app.execution import orchestrator

    assert orchestrator.request_retry(settings, spec_id)[0] == "retrying"
    assert monitoring.stalls(settings) == [] and not flagged()


# --------------------------------------------------------------------------------------------


def test_conductor_finds_duplicates_by_intent_and_by_written_files(omoi_env):
    import json

    settings = Settings(discovery_similarity=0.85)

    def write_call(task: str, path: str, content: str = "x = 1\n", name: str = "Write") -> dict:
        # as app/agent/session.py keeps it: JSON, clipped to 4000 characters; the jailed agent's work dir
        raw = json.dumps({"file_path": f"/workspace/{path}", "content": content})
        clipped = raw if len(raw) <= 4000 else raw[:4000] + f"... [{len(raw) - 4000} more chars]"
        return {"role": "assistant", "type": "tool_use", "name": name, "input": clipped}

    with session_scope(settings.database_url) as s:
        spec = Spec(repo_full_name=REPO, issue_number=ISSUE, installation_id=1, title="t", state="approved",
                    run_state="running")
        s.add(spec)
        s.flush()
        for tid, title, trajectory in (
            ("T1", "Write parser.py", [write_call("T1", "parser.py")]),
            ("T2", "Add parser.py", [write_call("T2", "cli.py")]),                       # same intent as T1
            ("T3", "Render the report", [write_call("T3", "src/report.py", "r" * 9000)]),
            ("T4", "Load the settings", [write_call("T4", "src/report.py", name="Edit")]),  # writes T3's file
            ("T5", "Log the requests", [write_call("T5", "src/log.py")]),
        ):
            s.add(SpecTask(spec_id=spec.id, task_id=tid, title=title, description="", covers=[], depends_on=[],
                           files=[], verify=[], status="running", lease_owner=f"lease-{tid}", attempts=1,
                           trajectory=trajectory))
    paused = monitoring.conductor(settings)
    assert sorted((p["task"], p["after"]) for p in paused) == [("T2", "T1"), ("T4", "T3")]
    with session_scope(settings.database_url) as s:
        db = {t.task_id: t for t in s.scalars(select(SpecTask))}
        reasons = {i.task_id: (i.source, i.attempt, i.action, explain(i.reason, i.reason_params))
                   for i in s.scalars(select(Intervention))}
        codes = {i.task_id: (i.reason, i.reason_params["cause"]["code"]) for i in s.scalars(select(Intervention))}
        errors = {t.task_id: (t.error, t.error_params["cause"]["code"]) for t in s.scalars(select(SpecTask))
                  if t.task_id in ("T2", "T4")}
    assert codes == {"T2": ("supervision/runs_after", "supervision/duplicates"),
                     "T4": ("supervision/runs_after", "supervision/both_write")}
    assert errors == {"T2": ("task/conductor_paused", "supervision/duplicates"),
                      "T4": ("task/conductor_paused", "supervision/both_write")}
    for tid, after in (("T2", "T1"), ("T4", "T3")):
        t = db[tid]
        assert (t.status, t.lease_owner, t.depends_on, t.attempts) == ("pending", None, [after], 0)
    assert {tid: db[tid].status for tid in ("T1", "T3", "T5")} == {"T1": "running", "T3": "running", "T5": "running"}
    assert reasons == {
        "T2": ("conductor", 1, "pause", "T2 duplicates T1 (similar intent); it runs after T1"),
        "T4": ("conductor", 1, "pause", "T4 and T3 both write src/report.py; it runs after T3"),
    }
    assert monitoring.conductor(settings) == []  # nothing left to pause


def _sandbox_dir(base: Path, name: str, age_s: float) -> Path:
    path = base / name
    (path / "work").mkdir(parents=True)
    (path / "work" / "x.py").write_text("x = 1\n")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_orphan_sandboxes_are_removed_and_live_ones_kept(omoi_env, tmp_path):
    settings = Settings(sandbox_provider="local", agent_timeout_seconds=60, verify_timeout_seconds=30)
    lifetime = 60 + 30 + 300  # the longest an attempt's sandbox can live, with slack
    with session_scope(settings.database_url) as s:
        spec = Spec(repo_full_name=REPO, issue_number=ISSUE, installation_id=1, title="t", state="approved",
                    run_state="running")
        s.add(spec)
        s.flush()
        spec_id = spec.id
        for tid, status in (("T1", "done"), ("T2", "done"), ("T5", "running")):
            s.add(SpecTask(spec_id=spec_id, task_id=tid, title=tid, description="", covers=[], depends_on=[],
                           files=[], verify=[], status=status))
    base = tmp_path / "sandboxes"
    old = _sandbox_dir(base, f"omoi-sb-spec-{spec_id}-T1-abcd1234", lifetime + 60)
    old_verify = _sandbox_dir(base, f"omoi-sb-verify-{spec_id}-T2-efgh5678", lifetime + 3600)
    young = _sandbox_dir(base, f"omoi-sb-spec-{spec_id}-T3-ijkl9012", lifetime - 60)
    fresh = _sandbox_dir(base, f"omoi-sb-spec-{spec_id}-T4-mnop3456", 1)
    # T5 is still running (its verify commands take long): its sandboxes are in use, however old
    busy = _sandbox_dir(base, f"omoi-sb-spec-{spec_id}-T5-qrst7890", lifetime + 600)
    busy_verify = _sandbox_dir(base, f"omoi-sb-verify-{spec_id}-T5-uvwx1234", lifetime + 600)
    unrelated = _sandbox_dir(base, "pytest-of-someone", lifetime + 3600)
    stray_file = base / "omoi-sb-not-a-dir"
    stray_file.write_text("")
    os.utime(stray_file, (0, 0))

    # a sandbox destroyed by a worker that died before its low-priority removal ran (app/sandbox/disposal.py)
    trashed = base / disposal.TRASH / f"omoi-sb-spec-{spec_id}-T6-yzab5678-0123456789ab"
    (trashed / "work").mkdir(parents=True)

    removed = monitoring.orphan_sandboxes(settings, base_dir=base)
    assert sorted(removed) == sorted([str(old), str(old_verify)])
    assert list((base / disposal.TRASH).iterdir()) == []
    assert not old.exists() and not old_verify.exists()
    for kept in (young, fresh, busy, busy_verify, unrelated):
        assert (kept / "work" / "x.py").read_text() == "x = 1\n"
    assert stray_file.exists()

    with session_scope(settings.database_url) as s:  # T5 finished: its sandboxes are orphans now
        s.execute(update(SpecTask).where(SpecTask.task_id == "T5").values(status="done"))
    assert sorted(monitoring.orphan_sandboxes(settings, base_dir=base)) == sorted([str(busy), str(busy_verify)])
    assert young.exists() and fresh.exists() and unrelated.exists()
    # another provider's sandboxes are not local directories: nothing is touched
    os.utime(young, (0, 0))
    assert monitoring.orphan_sandboxes(Settings(sandbox_provider="daytona"), base_dir=base) == []
    assert young.exists()


async def test_orphan_sweep_finds_what_the_local_provider_creates(omoi_env, tmp_path, monkeypatch):
    """With no base dir (the health beat task), the sweep looks where the local provider creates its
    sandboxes, under the names it gives them."""
    import subprocess
    import tempfile

    from app.sandbox import make_sandbox

    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "a.txt").write_text("a\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "a"], check=True)
    # the default base of both, kept apart from other sandboxes; reachable by the jails' own uids
    temp = Path(tempfile.mkdtemp(prefix="omoi-orphan-test-", dir="/tmp"))
    temp.chmod(0o711)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    settings = Settings(sandbox_provider="local", agent_timeout_seconds=60, verify_timeout_seconds=30)
    sandbox = await make_sandbox(settings).create(repo_url=str(repo), ref="main", label="spec-7/T1")
    try:
        from app.sandbox.local import sandbox_base_dir

        root = Path(sandbox.workdir).parent
        assert root.parent == sandbox_base_dir(settings) and (Path(sandbox.workdir) / "a.txt").exists()
        assert monitoring.orphan_sandboxes(settings) == []  # young: in use
        then = time.time() - 3600
        os.utime(root, (then, then))
        assert monitoring.orphan_sandboxes(settings) == [str(root)]
        assert not root.exists()
    finally:
        await sandbox.destroy()
        shutil.rmtree(temp, ignore_errors=True)


def test_commit_clones_left_by_a_dead_worker_are_removed(omoi_env, tmp_path):
    """omoi's own commit clones are removed once older than any attempt could keep one; younger ones stay."""
    settings = Settings(agent_timeout_seconds=60, verify_timeout_seconds=30)
    parent = tmp_path / "commits"
    old, young, other = parent / "omoi-commit-old1", parent / "omoi-commit-young", parent / "someone-else"
    for path in (old, young, other):
        (path / "repo.git").mkdir(parents=True)
    lifetime = 2 * (60 + 30 + 300)
    for path, age in ((old, lifetime + 60), (young, lifetime - 60), (other, lifetime + 600)):
        os.utime(path, (time.time() - age, time.time() - age))
    # a clone cleaned up by a worker that died before its low-priority removal ran (app/sandbox/disposal.py)
    trashed = parent / disposal.TRASH / "omoi-commit-gone-0123456789ab"
    (trashed / "repo.git").mkdir(parents=True)
    assert monitoring.orphan_commit_clones(settings, parent) == [str(old)]
    assert not old.exists() and young.exists() and other.exists()
    assert list((parent / disposal.TRASH).iterdir()) == []

