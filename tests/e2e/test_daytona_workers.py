"""Workers share nothing but PostgreSQL, Redis and Daytona (issue 13, item 4).

With Daytona as the sandbox provider, any task of a run can go to any worker: two worker processes,
each with its own data dir, temp dir, working directory and (where the kernel lets us give it a UTS
namespace) its own hostname, like two machines, serve one run; the one running a task is SIGKILLed
mid-task and the other recovers the task once its lease lapses, through the real web process, the
real Celery workers on Redis, PostgreSQL, the Claude Code CLI inside the Daytona stand-in's sandboxes
and real git behind the GitHub stand-in.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from app.execution import supervision as monitoring
from app.config import Settings
from app.db.models import SpecTask
from app.db.session import get_engine, session_scope
from app.sandbox.daytona import DaytonaSandboxProvider
from tests.support.agents import Agent
from tests.support.conversation import comment, task_commits
from tests.support.plans import CODE, HAPPY
from tests.support.services import (
    create_pg_database,
    drop_pg_database,
    postgres_available,
    redis_available,
    require_service,
)
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import APPROVED, approve_plan

REPO, BRANCH = APPROVED.repo, APPROVED.branch
BROKER = "redis://127.0.0.1:6379/12"  # no other test uses this Redis database
# wait_run shows the logs of processes named "worker" and "worker2" when it times out.
WORKERS = {"worker": ("a", "omoi-host-a"), "worker2": ("b", "omoi-host-b")}


def _own_hostnames_possible() -> bool:
    """A UTS namespace per worker (needs CAP_SYS_ADMIN: root, as on this test machine)."""
    try:
        return subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_worker(procs, name: str, root: Path, hostname: str | None):
    """`python -m app worker --beat` as if on a machine of its own: OMOI_DATA_DIR, TMPDIR and cwd
    under `root`, and its own hostname when `hostname` is given. The process group is registered in
    `procs`, so `procs.stop` / `stop_all` / `log_text` work as for `procs.start`."""
    (root / "tmp").mkdir(parents=True)
    env = {**procs.env, "OMOI_DATA_DIR": str(root / "data"), "TMPDIR": str(root / "tmp")}
    argv = [sys.executable, "-m", "app", "worker", "--beat"]
    if hostname:  # sh sets the namespace's hostname, then execs the worker (same pid: the group leader)
        argv = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *argv]
    log = procs.workdir / f"{name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    procs.procs[name], procs.logs[name] = proc, log
    return proc


def log_events(procs, name: str, event: str) -> list[dict]:
    out = []
    for line in procs.log_text(name).splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == event:
                out.append(rec)
    return out


def group_pids(pgid: int) -> list[int]:
    """Every live process in process group `pgid` (a worker and its pool children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return pids


def paths_in_use(pgid: int) -> set[str]:
    """The cwd and every open file of every process of a worker."""
    paths = set()
    for pid in group_pids(pgid):
        try:
            links = [Path(f"/proc/{pid}/cwd"), *Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # it ended meanwhile
            continue
        for link in links:
            try:
                paths.add(os.readlink(link))
            except OSError:
                continue
    return paths


class LeaseWatch(threading.Thread):
    """Records every lease owner each task has had (`<token>@<hostname>:<pid namespace>:<pid>:<nonce>`, app/db/locks.py
    owner_id), as seen in the shared database; an attempt holds its lease for seconds at least."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.seen, self._halt = database_url, set(), threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.1):
            try:
                with session_scope(self.url) as s:
                    rows = s.execute(select(SpecTask.task_id, SpecTask.lease_owner)).all()
            except Exception:  # noqa: BLE001 - the next poll
                continue
            self.seen |= {(tid, owner.split("@", 1)[1]) for tid, owner in rows if owner and "@" in owner}

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def test_two_daytona_workers_share_a_run_and_one_is_killed_mid_task(approved_run, fake_github, fake_anthropic,
                                                                   fake_daytona, tmp_path, request):
    require_service(postgres_available() and redis_available(), "PostgreSQL and Redis")
    database = create_pg_database()
    request.addfinalizer(lambda: drop_pg_database(database))
    request.addfinalizer(lambda: get_engine(database).dispose())  # runs first: no open connection at DROP

    # The approved spec's world (tests/e2e/conftest.py approved_run), but the web process has a data dir of
    # its own and the two workers are started below, each with its own.
    procs = approved_run(database=database, broker=BROKER, data_dir=tmp_path / "web", worker=False, extra_env={
        "OMOI_SANDBOX_PROVIDER": "daytona", "OMOI_DAYTONA_API_URL": fake_daytona.api_url,
        "OMOI_DAYTONA_API_KEY": "dtn-test-key"})
    request.addfinalizer(procs.stop_all)  # finalizers run last-registered first: processes, then the database

    own_hostnames = _own_hostnames_possible()
    roots = {name: tmp_path / d for name, (d, _) in WORKERS.items()}
    hostnames = {name: (h if own_hostnames else None) for name, (_, h) in WORKERS.items()}
    for name in WORKERS:
        start_worker(procs, name, roots[name], hostnames[name])
    for name in WORKERS:  # both consume the queue before there is any work
        wait_for(lambda: " ready." in procs.log_text(name), timeout=90, message=lambda: f"{name} ready\n{procs.log_text(name)}")
        if own_hostnames:
            assert f"@{hostnames[name]} ready." in procs.log_text(name)

    agent = Agent(fake_anthropic, {"T1": ("hello.py", CODE["hello.py"]), "T2": ("bye.py", CODE["bye.py"]),
                                   "T3": ("main.py", CODE["main.py"])})
    agent.slow["T1"] = 30  # T1's first session blocks in Bash: its worker is killed then
    spec_id = approve_plan(procs, HAPPY)
    leases = LeaseWatch(database)
    leases.start()
    request.addfinalizer(leases.stop)
    comment(procs, "/omoi implement")

    def t1_in_its_slow_session():
        t1 = tasks_in_db(procs).get("T1")
        return t1 if (t1 and t1.status == "running" and t1.lease_owner and "@" in t1.lease_owner
                      and t1.heartbeat_at is not None and "T1" in agent.seen) else None

    logs = lambda: "".join(f"\n--- {n}\n{procs.log_text(n)[-3000:]}" for n in WORKERS)  # noqa: E731
    t1 = wait_for(t1_in_its_slow_session, timeout=120, message=lambda: "T1 in its slow session" + logs())
    place = t1.lease_owner.split("@", 1)[1].split(":")  # host:pid-namespace:pid:nonce (app/db/locks.py)
    owner_host, owner_pid = place[0], place[-2]
    # The worker whose process group holds the process named in T1's lease.
    holder = next(n for n, p in procs.procs.items() if n in WORKERS and os.getpgid(int(owner_pid)) == p.pid)
    survivor = next(n for n in WORKERS if n != holder)
    if own_hostnames:
        assert owner_host == hostnames[holder]
    # Neither worker has anything of the other's open, nor works in the other's directory.
    in_use = {name: paths_in_use(procs.procs[name].pid) for name in WORKERS}
    for name in WORKERS:
        other = str(roots[next(n for n in WORKERS if n != name)])
        assert in_use[name] and not [p for p in in_use[name] if p.startswith(other + "/") or p == other], in_use
        assert str(roots[name]) in in_use[name]  # its cwd
    first_t1_box = next(r["sandbox_id"] for r in log_events(procs, holder, "sandbox_created")
                        if r["label"] == f"spec-{spec_id}/T1")

    procs.stop(holder, 9)  # SIGKILL: no clean-up, no ack, no sandbox deleted; the lease just stops being renewed
    wait_run(procs, "succeeded", timeout=240)
    leases.stop()

    db = tasks_in_db(procs)
    assert {t.status for t in db.values()} == {"done"}
    assert db["T1"].attempts == 2
    assert {k: len(v) for k, v in task_commits(procs).items()} == \
        {f"{spec_id}/T1": 1, f"{spec_id}/T2": 1, f"{spec_id}/T3": 1}
    for path in ("hello.py", "bye.py", "main.py"):
        assert fake_github.file_at(REPO, BRANCH, path) == CODE[path]

    # Tasks ran on both workers: each one's own log has T1 in a sandbox it created (the killed
    # worker's first attempt, the survivor's second), and only the survivor finished it.
    created = {n: [r["label"] for r in log_events(procs, n, "sandbox_created")] for n in WORKERS}
    finished = {n: [(r["task"], r["attempt"], r["outcome"]) for r in log_events(procs, n, "task_attempt_finished")]
                for n in WORKERS}
    assert f"spec-{spec_id}/T1" in created[holder] and f"spec-{spec_id}/T1" in created[survivor], created
    assert ("T1", 2, "done") in finished[survivor] and not [f for f in finished[holder] if f[0] == "T1"], finished
    done_by = {task: n for n in WORKERS for task, _, outcome in finished[n] if outcome == "done"}
    assert set(done_by) == {"T1", "T2", "T3"} and done_by["T1"] == survivor and done_by["T3"] == survivor, done_by
    # ... and the shared database saw T1 leased by a process of each.
    t1_owners = {owner for task, owner in leases.seen if task == "T1"}
    assert len({o.split(":")[-2] for o in t1_owners}) >= 2, leases.seen  # two processes
    if own_hostnames:
        assert {o.split(":")[0] for o in t1_owners} == {hostnames[holder], hostnames[survivor]}, leases.seen

    # Daytona: every sandbox the survivor made is deleted; what the killed worker left behind (at
    # least T1's first sandbox) is found by label and deleted by the reaper (app/execution/monitoring.py's sweep
    # uses an age bound of minutes; here the age bound is 0, the live labels as it computes them).
    # (The killed worker may also have died between creating a sandbox and logging it.)
    made_by_survivor = {r["sandbox_id"] for r in log_events(procs, survivor, "sandbox_created")}
    assert made_by_survivor and made_by_survivor <= set(fake_daytona.sandboxes)
    left = {sid for sid, sb in fake_daytona.sandboxes.items() if not sb.deleted}
    assert first_t1_box in left and not left & made_by_survivor, (left, made_by_survivor)
    settings = Settings(sandbox_provider="daytona", daytona_api_url=fake_daytona.api_url,
                        daytona_api_key="dtn-test-key", database_url=database)
    live_labels = monitoring.running_task_labels(settings)
    assert live_labels == set()
    reaped = asyncio.run(DaytonaSandboxProvider(settings).reap(live_labels, min_age_s=0))
    assert set(reaped) == left
    assert all(sb.deleted for sb in fake_daytona.sandboxes.values())

    # Nothing of one worker's is under the other's root, the survivor still has only its own open,
    # and each kept its beat schedule in its own data dir.
    for name in WORKERS:
        assert sorted(p.name for p in (roots[name] / "data").iterdir() if p.name.startswith("celerybeat-schedule"))
    other_of_survivor = str(roots[holder])
    assert not [p for p in paths_in_use(procs.procs[survivor].pid)
                if p == other_of_survivor or p.startswith(other_of_survivor + "/")]
    assert fake_github.violations == []
