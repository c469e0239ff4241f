"""Benchmark: how close does omoi's scheduler get to the critical path of a task graph?

A 20-task graph of width 5 (4 levels; each task depends on two tasks of the level before) runs
through the real orchestrator and task runner: database claims and leases, a sandbox clone per task,
the diff, the blocked-path and secret checks, verify commands, omoi's commits pushed together by
the integrator (app/execution/integration.py), the check run, the tracking comment and the pull
request, against the GitHub stand-in (real git over HTTP) in a process of its own, as GitHub is.
Only two things are replaced:
- the agent: a stand-in that sleeps a fixed time in the sandbox and writes one file (no model, no CLI);
  validation is off (its agent would be the same stand-in);
- the dispatcher: threads instead of Celery messages, every task a thread of this process started at
  once (after the warm-up a worker does at start). The GIL then makes width 10 slower than a pool of
  processes would be. `--processes` feeds worker processes forked from the warmed-up parent through
  one queue instead, one task at a time each, as Celery's prefork pool runs them (concurrency: width
  + 2, so a task never waits for a worker still publishing); their SQLite writes then queue on the
  database's file lock, which threads of one process mostly do not.

Prints makespan / critical-path time (goal <= 1.15), omoi's overhead per task phase by phase, and the
critical chain (the tasks that decided the makespan) with where its time went per level
(benchmarks/_dag_timing.py; DAG_TIMELINE=1 also prints each chain task's timeline).

    python benchmarks/dag_run.py [--agent-seconds 5] [--width 5] [--levels 4] [--no-jail] [--processes]
                                 [--postgres [ADMIN_URL]] [--matrix [--repeat N]]

`--matrix` runs the graph with 5 s and 10 s agents at width 5 and 10 and prints the four ratios; a
run that did not succeed prints as `failed`, never as a ratio. The ratio at width 10 moves by a few
hundredths from run to run on a shared 2-core machine: `--repeat N` runs every cell N times, in
rounds, and prints the median and the range.

The agent stand-in sleeps inside the sandbox, so the jail's cost (app/sandbox/jail.py) is part of
the overhead; `--no-jail` runs the same graph unconfined for comparison.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _dag_timing import DEPS, DISPATCHED, _timed, breakdown, collected, instrument, merge  # noqa: E402

REPO, INSTALLATION, ISSUE = "bench/dag", 7, 1
START: list[float] = []  # when the run was started (monotonic)
BRANCH = "omoi/issue-1-dag"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent-seconds", type=float, default=5.0)
    ap.add_argument("--width", type=int, default=5)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--no-jail", action="store_true",
                    help="baseline without the local sandbox's jail (plain processes), to measure what it costs")
    ap.add_argument("--postgres", metavar="ADMIN_URL", nargs="?", const="postgresql://postgres@127.0.0.1:5432/test",
                    help="a fresh PostgreSQL database beside ADMIN_URL's (production's back end) instead of SQLite")
    ap.add_argument("--processes", action="store_true",
                    help="tasks in forked worker processes (Celery's prefork pool) instead of threads of this process")
    ap.add_argument("--matrix", action="store_true", help="run 5 s and 10 s agents at width 5 and 10, print a table")
    ap.add_argument("--repeat", type=int, default=1, help="with --matrix: every cell this many times (median, range)")
    args = ap.parse_args()
    if args.matrix:
        return matrix(args)
    if args.no_jail:
        from app.sandbox import jail

        jail._probe["reason"] = "benchmark baseline without the jail"
        os.environ["OMOI_UNSAFE_ALLOW_UNCONFINED_SANDBOX"] = "true"

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    github, conn = start_github(public)
    url, base_sha = conn.recv()
    tmp = Path(tempfile.mkdtemp(prefix="omoi-bench-dag-"))
    os.chdir(tmp)
    os.environ.update({
        "OMOI_GITHUB_APP_ID": "4242", "OMOI_GITHUB_PRIVATE_KEY": private, "OMOI_GITHUB_API_URL": url,
        "OMOI_DATABASE_URL": fresh_postgres(args.postgres) if args.postgres else f"sqlite:///{tmp}/omoi.db", "OMOI_DATA_DIR": str(tmp / "data"),
        "OMOI_LOG_LEVEL": os.environ.get("DAG_LOG", "WARNING"), "OMOI_MAX_PARALLEL_TASKS_PER_SPEC": str(args.width),
        "OMOI_MAX_PARALLEL_TASKS_PER_INSTALLATION": str(args.width),  # the heartbeat: the deployment's default
        "OMOI_ANTHROPIC_API_KEY": "unused", "OMOI_TASK_VALIDATE": "false",
        "OMOI_MIRROR_DIR": str(tmp / "mirrors"),  # this run's own, removed with it
    })
    from app.config import get_settings
    from app.db.migrate import upgrade
    from app.observability.logs import configure_logging

    settings = get_settings()
    configure_logging(os.environ.get("DAG_LOG", "WARNING"), False, [])
    upgrade(settings.database_url)
    spec_id = seed(settings, base_sha, args.width, args.levels)
    try:
        run_one(settings, spec_id, args.agent_seconds, workers=args.width + 2 if args.processes else 0)
    finally:
        conn.send("stop")
        github_cpu = conn.recv() if conn.poll(30) else 0.0
        github.join(timeout=10)
    try:
        report(settings, spec_id, args.agent_seconds, args.levels, github_cpu)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(tmp, ignore_errors=True)  # the database, the mirror: nothing of a run stays behind
    return 0


def fresh_postgres(admin_url: str) -> str:
    """A new, empty database named for this process on the server of `admin_url` (dropped by hand or by
    the next run of this benchmark: each name carries the process id)."""
    import psycopg

    name = f"omoi_bench_dag_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for (old,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'omoi_bench_dag_%'").fetchall():
            conn.execute(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name


def start_github(public_pem: str):
    """The GitHub stand-in in a process of its own (spawned: nothing of this one in it)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_github, args=(child, public_pem), daemon=True)
    proc.start()
    return proc, parent


def serve_github(conn, public_pem: str) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fakes.github import FakeGitHub

    fake = FakeGitHub(app_id=4242, app_slug="omoi", public_key_pem=public_pem, validate=True)
    fake.start()
    fake.add_installation(INSTALLATION, "bench")
    fake.add_repo(REPO, installation_id=INSTALLATION, files={"README.md": "# dag\n"})
    fake.add_issue(REPO, ISSUE, title="dag", body="benchmark")
    fake.push_human_commit(REPO, BRANCH, {".omoi/specs/1/tasks.md": "# tasks\n"}, "omoi: approved tasks r1 for #1")
    conn.send((fake.url, fake.branch_sha(REPO, "main")))
    conn.recv()
    fake.stop()
    conn.send(sum(cpu_seconds()))  # what the stand-in (and its git) cost: GitHub's share of this machine


def seed(settings, base_sha: str, width: int, levels: int) -> int:
    from app.db.models import Spec, SpecStage
    from app.db.session import session_scope

    tasks = []
    for level in range(levels):
        for i in range(width):
            deps = [] if level == 0 else sorted({f"L{level - 1}N{i}", f"L{level - 1}N{(i + 1) % width}"})
            path = f"out/l{level}n{i}.txt"
            tasks.append({"id": f"T{level * width + i + 1}", "key": f"L{level}N{i}", "deps": deps, "path": path})
    ids = {t["key"]: t["id"] for t in tasks}
    DEPS.update({t["id"]: [ids[d] for d in t["deps"]] for t in tasks})
    doc = {"tasks": [{
        "id": t["id"], "key": t["key"], "title": f"write {t['path']}", "description": "bench",
        "covers": [], "depends_on": [ids[d] for d in t["deps"]], "files": [{"path": t["path"], "action": "create"}],
        "verify": [f"test -s {t['path']}"], "size": "S", "kind": "implement", "unresolved_deps": [],
    } for t in tasks]}
    with session_scope(settings.database_url) as s:
        spec = Spec(repo_full_name=REPO, issue_number=ISSUE, installation_id=INSTALLATION, title="dag",
                    state="approved", branch=BRANCH, base_sha=base_sha)
        s.add(spec)
        s.flush()
        s.add(SpecStage(spec_id=spec.id, stage="tasks", revision=1, status="approved", document=doc))
        return spec.id


class ThreadDispatcher:
    """Every task a thread of this process, started at once (the default)."""

    def run_task(self, spec_id: int, task_id: str, token: str) -> None:
        from app.execution import task_runner

        DISPATCHED[task_id] = time.monotonic()
        threading.Thread(target=task_runner.run_task, args=(spec_id, task_id, token), daemon=True).start()

    def schedule(self, spec_id: int, delay: float) -> None:
        from app.config import get_settings
        from app.execution import orchestrator

        threading.Timer(delay, orchestrator.advance, args=(get_settings(), spec_id)).start()


class QueueDispatcher:
    """What Celery's broker does here: messages on one queue that every worker process reads."""

    def __init__(self, queue) -> None:
        self.queue = queue

    def run_task(self, spec_id: int, task_id: str, token: str) -> None:
        self.queue.put(("run", spec_id, task_id, token, time.monotonic()))

    def schedule(self, spec_id: int, delay: float) -> None:
        self.queue.put(("schedule", spec_id, time.monotonic() + delay))


def worker(queue, results) -> None:
    """A prefork child: one message at a time, until told to stop; then its spans go to the driver."""
    from app.config import get_settings
    from app.db.session import dispose_engines
    from app.execution import orchestrator, task_runner

    dispose_engines(close=False)  # as tasks/celery_app.py does in every prefork child
    while True:
        msg = queue.get()
        try:
            if msg[0] == "stop":
                results.put(collected())
                return
            if msg[0] == "run":
                _, spec_id, task_id, token, at = msg
                DISPATCHED[task_id] = at
                task_runner.run_task(spec_id, task_id, token)
            elif msg[0] == "schedule":
                _, spec_id, eta = msg
                time.sleep(max(0.0, eta - time.monotonic()))
                orchestrator.advance(get_settings(), spec_id)
        except Exception as exc:  # noqa: BLE001 - a worker keeps serving, as Celery's do
            print(f"worker {os.getpid()}: {msg[0]} failed: {exc!r}", file=sys.stderr)


def run_one(settings, spec_id: int, seconds: float, workers: int) -> None:
    import functools
    import re

    from app.agent.session import AgentResult
    from app.db.models import Spec
    from app.db.session import dispose_engines, session_scope
    from app.execution import orchestrator, scheduler, task_runner, warm
    from app.text.rendering import reason

    @functools.partial(_timed, "agent")
    async def sleeping_agent(*, prompt: str, sandbox, **_kw) -> AgentResult:
        # The stand-in works where the agent would: inside the sandbox (its jail, unless --no-jail).
        path = re.search(r"^- (out/\S+)$", prompt, re.M).group(1)
        res = await sandbox.exec(f"sleep {seconds} && mkdir -p out && echo {path} > {path}", timeout=seconds + 60)
        return AgentResult(ok=res.ok, text="done", cost_usd=0.0, duration_s=seconds,
                           error=None if res.ok else reason("agent/exception", error=res.stderr))

    task_runner.agent_runner = sleeping_agent
    warm.warm_up()  # as a worker does when it starts (tasks/execution.py), before its pool forks
    instrument()
    pool = []
    if workers:
        ctx = multiprocessing.get_context("fork")
        queue, results = ctx.Queue(), ctx.Queue()
        dispose_engines(close=False)
        scheduler.dispatcher = QueueDispatcher(queue)  # before the fork: the workers dispatch too
        pool = [ctx.Process(target=worker, args=(queue, results), daemon=True) for _ in range(workers)]
        for p in pool:
            p.start()
    else:
        scheduler.dispatcher = ThreadDispatcher()
    START.append(time.monotonic())
    orchestrator.start_run(spec_id)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with session_scope(settings.database_url) as s:
            if s.get(Spec, spec_id).run_state != "running":
                break
        time.sleep(0.25)  # the makespan is the run's own timestamps: watching often only takes CPU from it
    for _ in pool:
        queue.put(("stop",))
    for _ in pool:
        merge(*results.get(timeout=120))
    for p in pool:
        p.join(timeout=10)


def report(settings, spec_id: int, seconds: float, levels: int, github_cpu: float = 0.0) -> None:
    from sqlalchemy import select

    from app.db.models import Spec, SpecTask
    from app.db.session import session_scope
    from app.text.rendering import explain
    from app.timeutil import as_utc

    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id)).all()
        makespan = (as_utc(spec.run_finished_at or spec.run_started_at) - as_utc(spec.run_started_at)).total_seconds()
        state, error = spec.run_state, explain(spec.run_error, spec.run_error_params)
        per_task = [t.duration_s - seconds for t in tasks if t.status == "done"]
        attempts = sum(t.attempts for t in tasks)
    critical = levels * seconds
    print(f"run: {state}{' (' + error + ')' if error else ''}; {len(per_task)}/{len(tasks)} tasks done, "
          f"{attempts} attempts")
    print(f"agent stand-in: {seconds:g}s per task; critical path {levels} tasks = {critical:g}s")
    if state != "succeeded" or attempts != len(tasks):  # a failed or retried run measures something else
        print("makespan / critical path = failed (the run did not succeed at the first attempt of every task)")
        return
    print(f"makespan: {makespan:.2f}s; makespan / critical path = {makespan / critical:.3f} (goal <= 1.15)")
    per_task.sort()
    print(f"omoi overhead per task (sandbox, diff, checks, verify, commit, push, rebase re-verify): "
          f"mean {sum(per_task) / len(per_task):.2f}s, median {per_task[len(per_task) // 2]:.2f}s, "
          f"max {per_task[-1]:.2f}s")
    print(f"overhead on the critical path: {(makespan - critical) / levels:.2f}s per level; "
          f"from the run's start to the first task's dispatch: {min(DISPATCHED.values()) - START[0]:.2f}s")
    own, children = cpu_seconds()
    n = len(tasks)
    print(f"CPU per task: {(own + children) / n:.2f}s on {os.cpu_count()} cores: this process {own / n:.2f}s, "
          f"its children {(children - github_cpu) / n:.2f}s (git, jails, workers), the GitHub stand-in {github_cpu / n:.2f}s")
    breakdown(seconds, len(tasks))


def cpu_seconds() -> tuple[float, float]:
    """User + system CPU of this process, and of every child it waited for (workers, git, jails, stand-in)."""
    import resource

    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def matrix(args) -> int:
    """The ratio at 5 s and 10 s agents, at width 5 and 10 (each in a fresh process); with `--repeat N`
    every cell N times, in rounds (a noisy neighbour hurts every cell alike), as a median and range."""
    import re
    import statistics
    import subprocess

    cells = [(agent, width) for agent in (5.0, 10.0) for width in (5, 10)]
    ratios: dict[tuple[float, int], list[str]] = {cell: [] for cell in cells}
    for _ in range(max(1, args.repeat)):
        for agent, width in cells:
            cmd = [sys.executable, __file__, "--agent-seconds", str(agent), "--width", str(width),
                   "--levels", str(args.levels)] + (["--no-jail"] if args.no_jail else []) \
                + (["--processes"] if args.processes else []) + (["--postgres", args.postgres] if args.postgres else [])
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            found = re.search(r"makespan / critical path = ([0-9.]+|failed)", out)
            print(out, flush=True)
            ratios[(agent, width)].append(found.group(1) if found else "failed")
    print("agent s | width | makespan / critical path (goal <= 1.15)" + ("; median [range]" if args.repeat > 1 else ""))
    for (agent, width), found in ratios.items():
        if "failed" in found:  # a run that did not succeed is never averaged away
            shown = f"failed ({found.count('failed')} of {len(found)} runs)"
        elif len(found) == 1:
            shown = found[0]
        else:
            values = sorted(float(r) for r in found)
            shown = f"{statistics.median(values):.3f} [{values[0]:.3f}-{values[-1]:.3f}]"
        print(f"{agent:7g} | {width:5d} | {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
