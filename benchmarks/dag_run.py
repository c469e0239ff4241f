"""Benchmark: how close does omoi's scheduler get to the critical path of a task graph?

A 20-task graph of width 5 (4 levels; each task depends on two tasks of the level before) runs
through the real orchestrator and task runner: database claims and leases, a sandbox clone per task,
the diff, the blocked-path and secret checks, verify commands, omoi's commit and push (with rebases
when tasks race), the check run, the tracking comment and the pull request, against the GitHub
stand-in (real git over HTTP). Only two things are replaced, inside this process only:
- the agent: a stand-in that sleeps a fixed time and writes one file (no model, no CLI);
- the dispatcher: threads instead of Celery messages.

Prints makespan / critical-path time (goal < 1.15) and omoi's overhead per task.

    python benchmarks/dag_run.py [--agent-seconds 5] [--width 5] [--levels 4] [--no-jail]

The agent stand-in sleeps inside the sandbox, so the jail's cost (app/sandbox/jail.py) is part of
the overhead; `--no-jail` runs the same graph unconfined for comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPO, INSTALLATION, ISSUE = "bench/dag", 7, 1
BRANCH = "omoi/issue-1-dag"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent-seconds", type=float, default=5.0)
    ap.add_argument("--width", type=int, default=5)
    ap.add_argument("--levels", type=int, default=4)
    ap.add_argument("--no-jail", action="store_true",
                    help="baseline without the local sandbox's jail (plain processes), to measure what it costs")
    args = ap.parse_args()
    if args.no_jail:
        from app.sandbox import jail

        jail._probe["reason"] = "benchmark baseline without the jail"
        os.environ["OMOI_UNSAFE_ALLOW_UNCONFINED_SANDBOX"] = "true"

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.fakes.github import FakeGitHub

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    fake = FakeGitHub(app_id=4242, app_slug="omoi", public_key_pem=public, validate=True)
    fake.start()
    tmp = Path(tempfile.mkdtemp(prefix="omoi-bench-dag-"))
    os.chdir(tmp)
    os.environ.update({
        "OMOI_GITHUB_APP_ID": "4242", "OMOI_GITHUB_PRIVATE_KEY": private, "OMOI_GITHUB_API_URL": fake.url,
        "OMOI_DATABASE_URL": f"sqlite:///{tmp}/omoi.db", "OMOI_DATA_DIR": str(tmp / "data"),
        "OMOI_LOG_LEVEL": "WARNING", "OMOI_MAX_PARALLEL_TASKS_PER_SPEC": str(args.width),
        "OMOI_MAX_PARALLEL_TASKS_PER_INSTALLATION": str(args.width), "OMOI_TASK_HEARTBEAT_SECONDS": "2",
        "OMOI_ANTHROPIC_API_KEY": "unused",
    })
    from app.config import get_settings
    from app.db.migrate import upgrade
    from app.observability.logs import configure_logging

    settings = get_settings()
    configure_logging("WARNING", False, [])
    upgrade(settings.database_url)

    fake.add_installation(INSTALLATION, "bench")
    fake.add_repo(REPO, installation_id=INSTALLATION, files={"README.md": "# dag\n"})
    fake.add_issue(REPO, ISSUE, title="dag", body="benchmark")
    fake.push_human_commit(REPO, BRANCH, {".omoi/specs/1/tasks.md": "# tasks\n"}, "omoi: approved tasks r1 for #1")

    spec_id = seed(settings, fake, args.width, args.levels)
    D = args.agent_seconds
    run_one(settings, spec_id, D)
    report(settings, spec_id, D, args.levels)
    fake.stop()
    return 0


def seed(settings, fake, width: int, levels: int) -> int:
    from app.db.models import Spec, SpecStage
    from app.db.session import session_scope

    tasks = []
    for level in range(levels):
        for i in range(width):
            deps = [] if level == 0 else sorted({f"L{level - 1}N{i}", f"L{level - 1}N{(i + 1) % width}"})
            path = f"out/l{level}n{i}.txt"
            tasks.append({"id": f"T{level * width + i + 1}", "key": f"L{level}N{i}", "deps": deps, "path": path})
    ids = {t["key"]: t["id"] for t in tasks}
    doc = {"tasks": [{
        "id": t["id"], "key": t["key"], "title": f"write {t['path']}", "description": "bench",
        "covers": [], "depends_on": [ids[d] for d in t["deps"]], "files": [{"path": t["path"], "action": "create"}],
        "verify": [f"test -s {t['path']}"], "size": "S", "kind": "implement", "unresolved_deps": [],
    } for t in tasks]}
    with session_scope(settings.database_url) as s:
        spec = Spec(repo_full_name=REPO, issue_number=ISSUE, installation_id=INSTALLATION, title="dag",
                    state="approved", branch=BRANCH, base_sha=fake.branch_sha(REPO, "main"))
        s.add(spec)
        s.flush()
        s.add(SpecStage(spec_id=spec.id, stage="tasks", revision=1, status="approved", document=doc))
        return spec.id


class ThreadDispatcher:
    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def run_task(self, spec_id: int, task_id: str, token: str) -> None:
        from app.execution import task_runner

        t = threading.Thread(target=task_runner.run_task, args=(spec_id, task_id, token), daemon=True)
        self.threads.append(t)
        t.start()

    def schedule(self, spec_id: int, delay: float) -> None:
        from app.execution import orchestrator
        from app.config import get_settings

        threading.Timer(delay, orchestrator.advance, args=(get_settings(), spec_id)).start()


def run_one(settings, spec_id: int, seconds: float) -> None:
    import re

    from app.execution import orchestrator, scheduler
    from app.execution import task_runner
    from app.agent.session import AgentResult
    from app.db.models import Spec
    from app.db.session import session_scope
    from app.text.rendering import reason

    async def sleeping_agent(*, prompt: str, sandbox, **_kw) -> AgentResult:
        # The stand-in works where the agent would: inside the sandbox (its jail, unless --no-jail).
        path = re.search(r"^- (out/\S+)$", prompt, re.M).group(1)
        res = await sandbox.exec(f"sleep {seconds} && mkdir -p out && echo {path} > {path}", timeout=seconds + 60)
        return AgentResult(ok=res.ok, text="done", cost_usd=0.0, duration_s=seconds, error=None if res.ok else reason("agent/exception", error=res.stderr))

    task_runner.agent_runner = sleeping_agent
    instrument()
    scheduler.dispatcher = ThreadDispatcher()
    orchestrator.start_run(spec_id)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with session_scope(settings.database_url) as s:
            if s.get(Spec, spec_id).run_state != "running":
                break
        time.sleep(0.05)


TIMINGS: dict[str, list[float]] = {}


def _timed(name, fn):
    import functools
    import inspect

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapper(*a, **kw):
            t = time.monotonic()
            try:
                return await fn(*a, **kw)
            finally:
                TIMINGS.setdefault(name, []).append(time.monotonic() - t)
    else:
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                TIMINGS.setdefault(name, []).append(time.monotonic() - t)
    return wrapper


def instrument() -> None:
    """Time omoi's phases (same code, wrapped) to show where the overhead goes."""
    from app.execution import gitwork
    from app.execution import run_report
    from app.execution import scheduler
    from app.execution import task_runner
    from app.sandbox.local import LocalSandbox, LocalSandboxProvider

    task_runner.commit_and_push = _timed("commit+push (incl. rebases)", gitwork.commit_and_push)
    task_runner._verify = _timed("verify commands", task_runner._verify)
    task_runner._verify_pushed = _timed("re-verify on pushed commit", task_runner._verify_pushed)
    run_report.publish = _timed("publish (check run, comment, PR)", run_report.publish)
    scheduler.schedule = _timed("schedule (claims)", scheduler.schedule)
    gitwork.Clone.clone = _timed("host clone", gitwork.Clone.clone)
    LocalSandboxProvider.create = _timed("sandbox create", LocalSandboxProvider.create)
    LocalSandbox.diff = _timed("sandbox diff", LocalSandbox.diff)


def report(settings, spec_id: int, seconds: float, levels: int) -> None:
    from sqlalchemy import select

    from app.db.models import Spec, SpecTask
    from app.db.session import session_scope
    from app.text.rendering import explain
    from app.timeutil import as_utc

    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        tasks = s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id)).all()
        makespan = (as_utc(spec.run_finished_at) - as_utc(spec.run_started_at)).total_seconds()
        state, error = spec.run_state, explain(spec.run_error, spec.run_error_params)
        per_task = [t.duration_s - seconds for t in tasks if t.status == "done"]
        attempts = sum(t.attempts for t in tasks)
    critical = levels * seconds
    print(f"run: {state}{' (' + error + ')' if error else ''}; {len(per_task)}/{len(tasks)} tasks done, "
          f"{attempts} attempts")
    print(f"agent stand-in: {seconds:g}s per task; critical path {levels} tasks = {critical:g}s")
    print(f"makespan: {makespan:.2f}s; makespan / critical path = {makespan / critical:.3f} (goal < 1.15)")
    if per_task:
        per_task.sort()
        print(f"omoi overhead per task (sandbox, diff, checks, verify, commit, push, rebase re-verify): "
              f"mean {sum(per_task) / len(per_task):.2f}s, median {per_task[len(per_task) // 2]:.2f}s, "
              f"max {per_task[-1]:.2f}s")
        print(f"overhead on the critical path: {(makespan - critical) / levels:.2f}s per level")
    for name, values in TIMINGS.items():
        print(f"  {name:40s} n={len(values):3d} mean {sum(values) / len(values):.3f}s max {max(values):.3f}s")


if __name__ == "__main__":
    raise SystemExit(main())
