"""The tasks document read as a graph: dependency edges, cycles, ancestors, waves, critical path.

Computed, never taken from the model. Unknown dependencies are not followed (the gates report them,
app/planning/gates.py); neither are cycles, which the gates report too.
"""
from __future__ import annotations

from app.planning.schemas import Task, Tasks

SIZE_WEIGHT = {"S": 1, "M": 2, "L": 3}  # for the critical path


def norm_path(path: str) -> str:
    return path[2:] if path.startswith("./") else path


def _deps(tasks: Tasks) -> dict[str, list[str]]:
    """Known, non-self dependency edges (unknown ones are reported, not followed)."""
    ids = {t.id for t in tasks.tasks}
    return {t.id: [d for d in t.depends_on if d in ids] for t in tasks.tasks}


def cycles(tasks: Tasks) -> list[list[str]]:
    """Elementary cycles found as DFS back edges, each as a closed path, deduplicated."""
    graph = _deps(tasks)
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    stack: list[str] = []
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in graph[n]:
            if state.get(d) == 1:
                cyc = stack[stack.index(d):]
                if frozenset(cyc) not in seen:
                    seen.add(frozenset(cyc))
                    found.append(cyc + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for t in tasks.tasks:  # list order, so the report is deterministic
        if t.id not in state:
            visit(t.id)
    # Read along depends_on, as the tasks table shows it: "T2 → T3" = T2 depends on T3.
    return found


def ancestors(tasks: Tasks) -> dict[str, set[str]]:
    graph = _deps(tasks)
    memo: dict[str, set[str]] = {}

    def walk(n: str, stack: frozenset[str]) -> set[str]:
        if n in memo:
            return memo[n]
        acc: set[str] = set()
        for d in graph[n]:
            if d not in stack:  # cycles are reported elsewhere; do not loop
                acc |= {d} | walk(d, stack | {d})
        memo[n] = acc
        return acc

    return {t.id: walk(t.id, frozenset({t.id})) for t in tasks.tasks}


def _topo(tasks: Tasks) -> list[Task]:
    """Stable topological order; members of a cycle are appended in listed order."""
    graph = _deps(tasks)
    done: set[str] = set()
    order: list[Task] = []
    pending = list(tasks.tasks)
    while pending:
        ready = next((t for t in pending if all(d in done or d == t.id for d in graph[t.id])), pending[0])
        pending.remove(ready)
        order.append(ready)
        done.add(ready.id)
    return order


def parallel_groups(tasks: Tasks) -> list[list[str]]:
    """Waves of tasks that may run at the same time.

    Computed, never taken from the model: a task goes in the first wave after
    all its dependencies, then moves later while any task already in that wave
    writes one of the same files (so two writers of a file never run together;
    the later-listed one waits).
    """
    graph = _deps(tasks)
    wave_of: dict[str, int] = {}
    waves: list[list[Task]] = []
    for t in _topo(tasks):
        w = max((wave_of[d] + 1 for d in graph[t.id] if d in wave_of), default=0)
        writes = {norm_path(f.path) for f in t.files}
        while w < len(waves) and any(writes & {norm_path(f.path) for f in o.files} for o in waves[w]):
            w += 1
        if w == len(waves):
            waves.append([])
        waves[w].append(t)
        wave_of[t.id] = w
    position = {t.id: i for i, t in enumerate(tasks.tasks)}
    return [sorted((t.id for t in wave), key=position.__getitem__) for wave in waves]


def critical_path(tasks: Tasks) -> list[str]:
    """The heaviest dependency chain, weighting tasks by size (S=1, M=2, L=3).

    Uses declared dependencies only; write-set serialisation can lengthen the
    real schedule, which ``parallel_groups`` shows.
    """
    graph = _deps(tasks)
    best: dict[str, tuple[int, list[str]]] = {}
    for t in _topo(tasks):
        prev = [best[d] for d in graph[t.id] if d in best]
        # Ties go to the earliest-found chain, keeping the answer deterministic.
        weight, path = max(prev, key=lambda b: b[0], default=(0, []))
        best[t.id] = (weight + SIZE_WEIGHT[t.size], path + [t.id])
    if not best:
        return []
    return max(best.values(), key=lambda b: b[0])[1]
