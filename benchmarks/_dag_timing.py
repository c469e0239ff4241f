"""Where omoi's time goes in benchmarks/dag_run.py: its phases timed (same code, wrapped) and reported.

Each process of the benchmark (the driver and every worker) records spans of omoi's phases, per task:
(task, phase, start, end) on the system's monotonic clock, which all processes share. The workers
send theirs to the driver at the end (`collected`, `merge`); `breakdown` prints the per-task
overhead by phase and the critical chain (the tasks that decided the makespan).
"""
from __future__ import annotations

import contextvars
import os
import time

# Spans of omoi's phases, per task: (task, phase, start, end). The task is known from a context
# variable set in the dispatcher's thread; asyncio.to_thread carries it into worker threads.
SPANS: list[tuple[str | None, str, float, float]] = []
DISPATCHED: dict[str, float] = {}
DEPS: dict[str, list[str]] = {}
FAST = {True: 0, False: 0}  # batches stacked the fast way / change by change
CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("task", default=None)


CPU: dict[str, float] = {}  # DAG_CPU=1 at width 1: the CPU (process and children) of each phase


def _cpu() -> float:
    import resource

    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def _timed(name, fn):
    import functools
    import inspect

    cpu = bool(os.environ.get("DAG_CPU"))  # only meaningful when one task runs at a time

    def done(t: float, c: float) -> None:
        SPANS.append((CURRENT.get(), name, t, time.monotonic()))
        if cpu:
            CPU[name] = CPU.get(name, 0.0) + _cpu() - c

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapper(*a, **kw):
            t, c = time.monotonic(), (_cpu() if cpu else 0.0)
            try:
                return await fn(*a, **kw)
            finally:
                done(t, c)
    else:
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            t, c = time.monotonic(), (_cpu() if cpu else 0.0)
            try:
                return fn(*a, **kw)
            finally:
                done(t, c)
    return wrapper


# (phase, what it is); the phases of one task in order. Nested phases are indented in the report.
PHASES = [
    ("dispatch", "from the claim to the worker adopting it"),
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
    ("cleanup", "omoi's clone removed"),
    ("settle", "the attempt's feedback recorded"),
    ("beat stop", "the heartbeat thread stopped"),
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
    task_runner.diagnosis.settle = _timed("settle", task_runner.diagnosis.settle)
    gitwork.Clone.cleanup = _timed("cleanup", gitwork.Clone.cleanup)
    from app.execution import leases
    leases.Heartbeat.stop = _timed("beat stop", leases.Heartbeat.stop)
    task_runner._setup = _timed("setup", task_runner._setup)
    task_runner.repo_guidance.read = _timed("guidance", task_runner.repo_guidance.read)
    adopt = task_runner.adopt

    def adopted(settings, spec_id, task_id, token):
        CURRENT.set(task_id)
        SPANS.append((task_id, "dispatch", DISPATCHED[task_id], time.monotonic()))
        return adopt(settings, spec_id, task_id, token)
    task_runner.adopt = adopted



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
            cpu = f"  cpu {CPU[name] / n:.3f}" if name in CPU else ""
            print(f"  {name:11s} {totals[name] / n:6.3f}  (n={counts[name]:3d}, max {longest[name]:.3f}){cpu}  {what}")
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



def collected() -> tuple[list, dict, dict]:
    """This process's spans, dispatch times and batch counts, to send to the driver."""
    return list(SPANS), dict(DISPATCHED), dict(FAST)


def merge(spans: list, dispatched: dict, fast: dict) -> None:
    SPANS.extend(spans)
    DISPATCHED.update(dispatched)
    for k, v in fast.items():
        FAST[k] += v
