"""Benchmark: how close does omoi's scheduler get to the critical path of a task graph?

A 20-task graph of width 5 (4 levels; each task depends on two tasks of the level before) runs
through the real orchestrator and task runner: database claims and leases, a sandbox clone per task,
the diff, the blocked-path and secret checks, verify commands, omoi's commits pushed together by
the integrator (app/execution/integration.py), the check run, the tracking comment and the pull
request, against the GitHub stand-in (real git over HTTP). Only two things are replaced, inside this process only:
- the agent: a stand-in that sleeps a fixed time and writes one file (no model, no CLI);
- the dispatcher: threads instead of Celery messages.

Prints makespan / critical-path time (goal <= 1.15), omoi's overhead per task phase by phase, and the
critical chain (the tasks that decided the makespan) with where its time went per level. All tasks
run in this one process (threads share the GIL), so at width 10 it is slower than Celery workers.

    python benchmarks/dag_run.py [--agent-seconds 5] [--width 5] [--levels 4] [--no-jail] [--matrix]

`--matrix` runs the graph with 5 s and 10 s agents at width 5 and 10 and prints the four ratios.

The agent stand-in sleeps inside the sandbox, so the jail's cost (app/sandbox/jail.py) is part of
the overhead; `--no-jail` runs the same graph unconfined for comparison.
"""
from __future__ import annotations

import argparse
import asyncio
import contextvars
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
    ap.add_argument("--matrix", action="store_true", help="run 5 s and 10 s agents at width 5 and 10, print a table")
    args = ap.parse_args()
    if args.matrix:
        return matrix(args)
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
        "OMOI_ANTHROPIC_API_KEY": "unused", "OMOI_TASK_VALIDATE": "false",
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
    DEPS.update({t["id"]: [ids[d] for d in t["deps"]] for t in tasks})
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

        DISPATCHED[task_id] = time.monotonic()
        t = threading.Thread(target=task_runner.run_task, args=(spec_id, task_id, token), daemon=True)
        self.threads.append(t)
        t.start()

    def schedule(self, spec_id: int, delay: float) -> None:
        from app.execution import orchestrator
        from app.config import get_settings

        threading.Timer(delay, orchestrator.advance, args=(get_settings(), spec_id)).start()


def run_one(settings, spec_id: int, seconds: float) -> None:
    import functools
    import re

    from app.execution import orchestrator, scheduler
    from app.execution import task_runner, warm
    from app.agent.session import AgentResult
    from app.db.models import Spec
    from app.db.session import session_scope
    from app.text.rendering import reason

    @functools.partial(_timed, "agent")
    async def sleeping_agent(*, prompt: str, sandbox, **_kw) -> AgentResult:
        # The stand-in works where the agent would: inside the sandbox (its jail, unless --no-jail).
        path = re.search(r"^- (out/\S+)$", prompt, re.M).group(1)
        res = await sandbox.exec(f"sleep {seconds} && mkdir -p out && echo {path} > {path}", timeout=seconds + 60)
        return AgentResult(ok=res.ok, text="done", cost_usd=0.0, duration_s=seconds, error=None if res.ok else reason("agent/exception", error=res.stderr))

    task_runner.agent_runner = sleeping_agent
    warm.warm_up()  # as a worker does when it starts (tasks/execution.py)
    instrument()
    scheduler.dispatcher = ThreadDispatcher()
    orchestrator.start_run(spec_id)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        with session_scope(settings.database_url) as s:
            if s.get(Spec, spec_id).run_state != "running":
                break
        time.sleep(0.05)


# Spans of omoi's phases, per task: (task, phase, start, end). The task is known from a context
# variable set in the dispatcher's thread; asyncio.to_thread carries it into worker threads.
SPANS: list[tuple[str | None, str, float, float]] = []
DISPATCHED: dict[str, float] = {}
DEPS: dict[str, list[str]] = {}
FAST = {True: 0, False: 0}  # batches stacked the fast way / change by change
CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("task", default=None)


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
                SPANS.append((CURRENT.get(), name, t, time.monotonic()))
    else:
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t = time.monotonic()
            try:
                return fn(*a, **kw)
            finally:
                SPANS.append((CURRENT.get(), name, t, time.monotonic()))
    return wrapper


# (phase, what it is); the phases of one task in order. Nested phases are indented in the report.
PHASES = [
    ("dispatch", "from the claim to the worker thread adopting it"),
    ("context", "the task's context from the database"),
    ("github reads", "the repository's config (.github/omoi.yml)"),
    ("mirror", "the host's mirror of the repository: fetched, or found holding the dependencies"),
    ("clone", "omoi's bare commit clone, from the mirror (beside the sandbox's)"),
    ("earlier commit", "an earlier attempt's commit looked for"),
    ("budget check", "the spend limits checked"),
    ("sandbox", "the sandbox: host clone + jail set-up"),
    ("guidance", "the repository's CLAUDE.md & co. from the mirror"),
    ("setup", "the repository's setup commands"),
    ("prompt", "the prompt rendered"),
    ("agent", "the agent stand-in (its sleep is subtracted: jail start-up)"),
    ("discoveries", "the agent's discoveries file read and removed"),
    ("diff", "git diff in the sandbox"),
    ("destroy", "the sandbox removed (in the background)"),
    ("verify", "verify commands"),
    ("commit", "apply, inspect, commit on the sandbox's base"),
    ("patch paths", "the paths the patch touches"),
    ("enqueue", "the change left for the integrator"),
    ("land", "waiting for the branch and pushing (as integrator or not)"),
    ("  integrate", "  as the integrator: read the waiting rows, push_together, write outcomes"),
    ("  push", "  push_together: fetch, rebase the batch, one push"),
    ("  git push", "  git push"),
    ("   head from mirror", "   the head omoi pushed last, from the mirror"),
    ("   fast-import", "   the batch's commits written"),
    ("   mirror record", "   the pushed commits copied into the mirror"),
    ("  fetch", "  git fetch"),
    ("re-verify", "fresh sandbox + verify on the pushed commit"),
    ("record", "finish_attempt"),
    ("advance", "schedule + publish after the attempt"),
    ("  schedule", "  claims"),
    ("  publish", "  check run, comment, PR"),
]


def instrument() -> None:
    """Time omoi's phases (same code, wrapped) to show where the overhead goes."""
    from app.execution import batch_push
    from app.execution import gitwork
    from app.execution import integration
    from app.execution import orchestrator
    from app.execution import run_report
    from app.execution import scheduler
    from app.execution import task_runner
    from app.sandbox.local import LocalSandbox, LocalSandboxProvider

    integration.push_together = _timed("  push", integration.push_together)
    integration.integrate = _timed("  integrate", integration.integrate)
    gitwork.Clone.fetch_mirrored = _timed("   head from mirror", gitwork.Clone.fetch_mirrored)
    gitwork.Clone.record_pushed = _timed("   mirror record", gitwork.Clone.record_pushed)
    batch_push._fast_import = _timed("   fast-import", batch_push._fast_import)
    gitwork.Clone.push = _timed("  git push", gitwork.Clone.push)
    task_runner.integration.land = _timed("land", integration.land)
    gitwork.Clone.fetch = _timed("  fetch", gitwork.Clone.fetch)
    task_runner._verify = _timed("verify", task_runner._verify)
    task_runner._verify_pushed = _timed("re-verify", task_runner._verify_pushed)
    run_report.publish = _timed("  publish", run_report.publish)
    scheduler.schedule = _timed("  schedule", scheduler.schedule)
    orchestrator.advance = _timed("advance", orchestrator.advance)
    orchestrator.finish_attempt = _timed("record", orchestrator.finish_attempt)
    gitwork.Clone.clone = _timed("clone", gitwork.Clone.clone)
    gitwork.Clone.refresh = _timed("mirror", gitwork.Clone.refresh)
    gitwork.Clone.find_task_commit = _timed("earlier commit", gitwork.Clone.find_task_commit)
    gitwork.Clone.patch_paths = _timed("patch paths", gitwork.Clone.patch_paths)
    integration.enqueue = _timed("enqueue", integration.enqueue)
    task_runner.budgets.status = _timed("budget check", task_runner.budgets.status)
    if os.environ.get("DAG_TIMELINE"):  # every git process, by subcommand
        git = gitwork.Clone.git

        def timed_git(self, *args, **kw):
            sub = next((a for a in args if not a.startswith("-")), "?")
            return _timed(f"    git {sub}", git)(self, *args, **kw)
        gitwork.Clone.git = timed_git
    fast = batch_push._fast

    def counted(*a, **kw):
        out = fast(*a, **kw)
        FAST[out is not None] += 1
        return out
    batch_push._fast = counted
    task_runner._task_context = _timed("context", task_runner._task_context)
    task_runner.repo_config.load_effective = _timed("github reads", task_runner.repo_config.load_effective)
    task_runner._read_discoveries = _timed("discoveries", task_runner._read_discoveries)
    LocalSandbox.destroy = _timed("destroy", LocalSandbox.destroy)
    commit_patch = gitwork.Clone.commit_patch
    timed_commit = _timed("commit", commit_patch)

    def commit(self, *a, **kw):  # the first commit of a task; those made while integrating count as push
        return (commit_patch if kw.get("three_way") is not None else timed_commit)(self, *a, **kw)
    gitwork.Clone.commit_patch = commit
    LocalSandboxProvider.create = _timed("sandbox", LocalSandboxProvider.create)
    LocalSandbox.diff = _timed("diff", LocalSandbox.diff)
    task_runner.render = _timed("prompt", task_runner.render)
    task_runner._setup = _timed("setup", task_runner._setup)
    task_runner.repo_guidance.read = _timed("guidance", task_runner.repo_guidance.read)
    adopt = task_runner.adopt

    def adopted(settings, spec_id, task_id, token):
        CURRENT.set(task_id)
        SPANS.append((task_id, "dispatch", DISPATCHED[task_id], time.monotonic()))
        return adopt(settings, spec_id, task_id, token)
    task_runner.adopt = adopted


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
    print(f"makespan: {makespan:.2f}s; makespan / critical path = {makespan / critical:.3f} (goal <= 1.15)")
    if per_task:
        per_task.sort()
        print(f"omoi overhead per task (sandbox, diff, checks, verify, commit, push, rebase re-verify): "
              f"mean {sum(per_task) / len(per_task):.2f}s, median {per_task[len(per_task) // 2]:.2f}s, "
              f"max {per_task[-1]:.2f}s")
        print(f"overhead on the critical path: {(makespan - critical) / levels:.2f}s per level")
    breakdown(seconds, len(tasks))


def breakdown(seconds: float, n: int) -> None:
    """Per task, where omoi's time goes: each phase's total over the run divided by the tasks."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    longest: dict[str, float] = {}
    ends: dict[str, float] = {}
    for task, name, t0, t1 in SPANS:
        d = t1 - t0 - (seconds if name == "agent" else 0.0)
        totals[name] = totals.get(name, 0.0) + d
        counts[name] = counts.get(name, 0) + 1
        longest[name] = max(longest.get(name, 0.0), d)
        if task and name == "advance":
            ends[task] = max(ends.get(task, 0.0), t1)
    spans = sum(DISPATCHED[t] and (ends[t] - DISPATCHED[t]) for t in ends) - seconds * len(ends)
    top = sum(v for k, v in totals.items() if not k.startswith(" "))
    print(f"per-task overhead breakdown (seconds per task, over {n} tasks; nested phases indented):")
    for name, what in PHASES:
        if name in totals:
            print(f"  {name:11s} {totals[name] / n:6.3f}  (n={counts[name]:3d}, max {longest[name]:.3f})  {what}")
    critical_chain(seconds)
    print(f"  batches stacked the fast way: {FAST[True]}, change by change: {FAST[False]}")
    if ends:
        print(f"  {'other':11s} {(spans - top) / n:6.3f}  task context, GitHub repo + config reads, threads")
        print(f"  {'total':11s} {spans / n:6.3f}  dispatch to the end of the attempt's advance, minus the agent")


def critical_chain(seconds: float) -> None:
    """The chain of tasks that decided the makespan (each one's dependency that finished last), and
    where its time went: each task's phases plus the wait from its last dependency's record to its
    own dispatch (scheduler latency)."""
    recorded = {t: t1 for t, name, _, t1 in SPANS if t and name == "record"}
    if not recorded:
        return
    task, chain = max(recorded, key=recorded.get), []
    while task:
        chain.append(task)
        deps = [d for d in DEPS.get(task, []) if d in recorded]
        task = max(deps, key=recorded.get) if deps else None
    chain.reverse()
    phases: dict[str, float] = {}
    for i, task in enumerate(chain):
        if i:
            phases["ready->dispatch"] = phases.get("ready->dispatch", 0.0) + DISPATCHED[task] - recorded[chain[i - 1]]
        for t, name, t0, t1 in SPANS:
            if t == task and not name.startswith(" ") and t0 <= recorded[task] and name != "advance":
                phases[name] = phases.get(name, 0.0) + t1 - t0 - (seconds if name == "agent" else 0.0)
    total = recorded[chain[-1]] - DISPATCHED[chain[0]] - seconds * len(chain)
    if os.environ.get("DAG_TIMELINE"):  # each chain task's spans, from its dispatch (a debugging aid)
        for task in chain:
            t0 = DISPATCHED[task]
            rows = sorted((a - t0, b - a, name, t) for t, name, a, b in SPANS if a >= t0 - 0.001 and a <= recorded[task]
                          and (t == task or t is None or name.startswith(" ")))
            print(f"  {task}: " + "; ".join(f"{name.strip()}[{t or '-'}]@{a:.2f}+{d:.2f}" for a, d, name, t in rows))
    print(f"critical chain {' -> '.join(chain)}: {total:.2f}s of overhead, per level:")
    print("   " + ", ".join(f"{k} {v / len(chain):.2f}" for k, v in phases.items())
          + f", unaccounted {(total - sum(phases.values())) / len(chain):.2f}")


def matrix(args) -> int:
    """The ratio at 5 s and 10 s agents, at width 5 and 10 (each in a fresh process)."""
    import re
    import subprocess

    rows = []
    for agent in (5.0, 10.0):
        for width in (5, 10):
            cmd = [sys.executable, __file__, "--agent-seconds", str(agent), "--width", str(width),
                   "--levels", str(args.levels)] + (["--no-jail"] if args.no_jail else [])
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            found = re.search(r"makespan / critical path = ([0-9.]+)", out)
            ratio = found.group(1) if found else "?"
            print(out, flush=True)
            rows.append((agent, width, ratio))
    print("agent s | width | makespan / critical path (goal <= 1.15)")
    for agent, width, ratio in rows:
        print(f"{agent:7g} | {width:5d} | {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
