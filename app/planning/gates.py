"""Quality gates as code: deterministic checks on each spec stage.

Why code and not another LLM pass: coverage, dangling references, cycles and
file existence are facts, and a check that is a fact can neither be talked
out of nor hallucinate.  Each failure is one ``GateResult`` with a message
that names the offending ID or path, so the same list serves the human (the
gate summary in the comment) and the model (the retry prompt, via
``feedback``).  A gate that found nothing yields a single passing result, so
the summary can show ✅ for it.

Errors block approval; warnings are shown but do not block. The tasks document read as a graph
(dependencies, cycles, parallel waves, the critical path) is app/planning/task_graph.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Literal

from app.planning.schemas import Design, Requirements, Tasks
from app.planning.task_graph import ancestors, cycles, norm_path
from app.text.rendering import Reason, explain, reason, render_line

__all__ = [
    "GateResult", "check_requirements", "check_design", "check_tasks", "passed", "feedback", "path_problem",
    "MAX_STORIES", "MAX_CRITERIA_PER_STORY", "MAX_CRITERION_CHARS", "MAX_TASKS", "MAX_FILES_PER_TASK",
]

MAX_STORIES = 30
MAX_CRITERIA_PER_STORY = 12
MAX_CRITERION_CHARS = 500
MAX_OPEN_QUESTIONS = 5
MAX_TASKS = 40
MAX_FILES_PER_TASK = 8  # more is a sign the task is really several tasks


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict. `gate` is its code (its name is templates/spec/gate_name.md.j2), `reason`
    why it failed (templates/reasons/gate/), or text: the reviewer's words, results stored earlier."""

    gate: str
    passed: bool
    reason: Reason | str | None = None
    severity: Literal["error", "warning"] = "error"

    @property
    def name(self) -> str:
        return gate_name(self.gate)

    @property
    def message(self) -> str:
        return explain(self.reason)


def gate_name(gate: str) -> str:
    return render_line("spec/gate_name.md.j2", gate=gate)


def passed(results: Iterable[GateResult]) -> bool:
    """True when no error-severity gate failed (warnings never block)."""
    return not any(not r.passed and r.severity == "error" for r in results)


def feedback(results: Iterable[GateResult]) -> list[str]:
    """Failure messages, errors first, for the model's retry prompt."""
    failures = [r for r in results if not r.passed]
    failures.sort(key=lambda r: r.severity != "error")
    return [f"{r.severity}: {r.message}" for r in failures]


class _Gate:
    """Collects failures for one named gate; emits a pass if there were none."""

    def __init__(self, gate: str, out: list[GateResult]):
        self.gate, self.out, self.failed = gate, out, False

    def error(self, code: str, **params) -> None:
        self.failed = True
        self.out.append(GateResult(self.gate, False, reason(f"gate/{code}", **params), "error"))

    def warn(self, code: str, **params) -> None:
        self.failed = True
        self.out.append(GateResult(self.gate, False, reason(f"gate/{code}", **params), "warning"))

    def __enter__(self) -> "_Gate":
        return self

    def __exit__(self, *exc) -> None:
        if not self.failed and exc[0] is None:
            self.out.append(GateResult(self.gate, True, None, "error"))


# --- requirements -----------------------------------------------------------

# One regex per EARS pattern, case-insensitive: models write "When ..., the
# system shall" as often as the upper-case form, and both are unambiguous.
_EARS = {
    "ubiquitous": re.compile(r"^(?!(?:when|while|if|where)\b).+\bshall\b", re.I | re.S),
    "event": re.compile(r"^when\b.+\bshall\b", re.I | re.S),
    "state": re.compile(r"^while\b.+\bshall\b", re.I | re.S),
    "unwanted": re.compile(r"^if\b.+\bthen\b.+\bshall\b", re.I | re.S),
    "optional": re.compile(r"^where\b.+\bshall\b", re.I | re.S),
}
_PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX|lorem ipsum)\b|\?\?\?", re.I)
# Words that make a criterion untestable unless a number follows them.
_VAGUE = re.compile(
    r"\b(fast|quick(?:ly)?|user[- ]friendly|robust|appropriate(?:ly)?|intuitive|easy|easily|"
    r"efficient(?:ly)?|seamless(?:ly)?|as needed|etc|and/or)\b",
    re.I,
)


def _ears_ok(pattern: str, text: str) -> bool:
    text = text.strip()
    if pattern == "complex":
        head = re.split(r"\bshall\b", text, maxsplit=1, flags=re.I)
        if len(head) < 2 or not re.match(r"^(when|while|if|where)\b", text, re.I):
            return False
        keywords = {k.lower() for k in re.findall(r"\b(when|while|if|where)\b", head[0], re.I)}
        return len(keywords) >= 2
    return bool(_EARS[pattern].search(text))


def check_requirements(req: Requirements) -> list[GateResult]:
    out: list[GateResult] = []
    with _Gate("ears_form", out) as g:
        for s in req.stories:
            for c in s.criteria:
                if not _ears_ok(c.pattern, c.text):
                    g.error("ears_mismatch", id=c.id, pattern=c.pattern)  # each pattern's form is in its template
                elif len(re.findall(r"\bshall\b", c.text, re.I)) > 1:
                    g.warn("many_shall", id=c.id)
                if m := _PLACEHOLDER.search(c.text):
                    g.error("placeholder", id=c.id, word=m.group(0))
                if m := _VAGUE.search(c.text):
                    g.warn("vague", id=c.id, word=m.group(0))
    with _Gate("acceptance_criteria", out) as g:
        for s in req.stories:
            if not s.criteria:
                g.error("no_criteria", id=s.id)
    with _Gate("unique_ids", out) as g:
        seen: set[str] = set()
        for ident in [s.id for s in req.stories] + [c.id for s in req.stories for c in s.criteria]:
            if ident in seen:
                g.error("duplicate_id", id=ident)
            seen.add(ident)
    with _Gate("size_limits", out) as g:
        if not req.stories:
            g.error("no_stories")
        if len(req.stories) > MAX_STORIES:
            g.error("too_many_stories", count=len(req.stories), limit=MAX_STORIES)
        for s in req.stories:
            if len(s.criteria) > MAX_CRITERIA_PER_STORY:
                g.error("too_many_criteria", id=s.id, count=len(s.criteria), limit=MAX_CRITERIA_PER_STORY)
            for c in s.criteria:
                if len(c.text) > MAX_CRITERION_CHARS:
                    g.error("criterion_too_long", id=c.id, length=len(c.text), limit=MAX_CRITERION_CHARS)
        if len(req.open_questions) > MAX_OPEN_QUESTIONS:
            g.warn("too_many_questions", count=len(req.open_questions), limit=MAX_OPEN_QUESTIONS)
    return out


# --- design -----------------------------------------------------------------


def path_problem(path: str) -> Reason | None:
    """Why a model-supplied path is unsafe to write, or None if it is fine.

    Paths become sandbox writes and write-set locks, so anything that could
    escape the checkout or touch git internals is refused outright.
    """
    problem = _path_problem(path)
    return reason("gate/unsafe_path", task=None, path=path, problem=problem) if problem else None


def _path_problem(path: str) -> str | None:
    """The problem's code (its words are in templates/reasons/gate/unsafe_path.md.j2)."""
    if not path or path != path.strip():
        return "empty"
    if any(ord(ch) < 32 for ch in path):
        return "control"
    if "\\" in path:
        return "backslash"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or path.startswith("~"):
        return "absolute"
    parts = path.split("/")
    if ".." in parts:
        return "dotdot"
    if ".git" in parts:
        return "git"
    if path.endswith("/"):
        return "directory"
    return None


def check_design(design: Design, req: Requirements, repo_files: set[str]) -> list[GateResult]:
    out: list[GateResult] = []
    repo = {norm_path(p) for p in repo_files}
    with _Gate("safe_paths", out) as g:
        for p in [f.path for f in design.file_plan] + [p for c in design.components for p in c.files]:
            if problem := _path_problem(p):
                g.error("unsafe_path", task=None, path=p, problem=problem)
    safe_plan = [f for f in design.file_plan if path_problem(f.path) is None]
    created = {norm_path(f.path) for f in safe_plan if f.action == "create"}
    with _Gate("file_plan", out) as g:
        seen: set[str] = set()
        for f in safe_plan:
            p = norm_path(f.path)
            if p in seen:
                g.error("listed_twice", path=p)
            seen.add(p)
            if f.action == "create" and p in repo:
                g.error("creates_existing", path=p)
            elif f.action == "modify" and p not in repo:
                g.error("modifies_missing", path=p)
            elif f.action == "delete" and p not in repo:
                g.error("deletes_missing", path=p)
        for c in design.components:
            for p in c.files:
                if path_problem(p) is None and norm_path(p) not in repo and norm_path(p) not in created:
                    g.warn("component_file_unknown", component=c.name, path=p)
    with _Gate("components", out) as g:
        if not design.components:
            g.error("no_components")
    with _Gate("decisions", out) as g:
        for d in design.decisions:
            if not d.alternatives:
                g.error("no_alternatives", title=d.title)
    with _Gate("requirement_coverage", out) as g:
        story_ids = {s.id for s in req.stories}
        served = {r for c in design.components for r in c.satisfies}
        for c in design.components:
            for r in c.satisfies:
                if r not in story_ids:
                    g.warn("unknown_requirement", component=c.name, requirement=r)
        for s in req.stories:
            if s.priority in ("must", "should") and s.id not in served:
                g.warn("story_not_served", id=s.id, priority=s.priority)
    return out


# --- tasks ------------------------------------------------------------------


def check_tasks(tasks: Tasks, req: Requirements, design: Design, repo_files: set[str]) -> list[GateResult]:
    out: list[GateResult] = []
    criteria = req.criteria()
    ids = [t.id for t in tasks.tasks]

    with _Gate("criterion_coverage", out) as g:
        covered = {c for t in tasks.tasks for c in t.covers}
        for cid, (story, _) in criteria.items():
            if story.priority in ("must", "should") and cid not in covered:
                g.error("criterion_not_covered", id=cid, priority=story.priority)

    with _Gate("task_traceability", out) as g:
        for t in tasks.tasks:
            if not t.covers:
                g.error("task_covers_nothing", id=t.id, title=t.title)
            for c in t.covers:
                if c not in criteria:
                    g.error("unknown_criterion", id=t.id, criterion=c)

    with _Gate("dependencies", out) as g:
        if len(set(ids)) != len(ids):
            g.error("duplicate_task_ids", ids=sorted({i for i in ids if ids.count(i) > 1}))
        for t in tasks.tasks:
            for d in t.depends_on:
                if d == t.id:
                    g.error("depends_on_itself", id=t.id)
                elif d not in ids:
                    g.error("unknown_dependency", id=t.id, dependency=d)
            for k in t.unresolved_deps:
                g.error("unknown_dependency_key", id=t.id, key=k)

    with _Gate("acyclic", out) as g:
        for cyc in cycles(tasks):
            if len(cyc) > 2:  # a self-loop is already reported as "depends on itself"
                g.error("cycle", cycle=cyc)

    with _Gate("files", out) as g:
        repo = {norm_path(p) for p in repo_files}
        planned = {norm_path(f.path) for f in design.file_plan if f.action == "create"}
        declared: set[str] = set()  # created by an earlier task
        for t in tasks.tasks:
            for f in t.files:
                if problem := _path_problem(f.path):
                    g.error("unsafe_path", task=t.id, path=f.path, problem=problem)
                    continue
                p = norm_path(f.path)
                if f.action == "create":
                    if p in repo:
                        g.error("task_creates_existing", id=t.id, path=p)
                elif p not in repo and p not in planned and p not in declared:
                    g.error("task_file_missing", id=t.id, action=f.action, path=p)
            declared |= {norm_path(f.path) for f in t.files if f.action == "create"}
            if len(t.files) > MAX_FILES_PER_TASK:
                g.warn("too_many_files", id=t.id, count=len(t.files), limit=MAX_FILES_PER_TASK)

    with _Gate("tests_first", out) as g:
        upstream = ancestors(tasks)
        by_id = tasks.by_id()
        for t in tasks.tasks:
            if t.kind != "implement":
                continue
            missing = [
                c for c in t.covers
                if c in criteria and not any(
                    c in by_id[a].covers and by_id[a].kind == "test" for a in upstream[t.id]
                )
            ]
            if missing:
                g.warn("tests_first", id=t.id, criteria=missing)

    with _Gate("size_limits", out) as g:
        if not tasks.tasks:
            g.error("no_tasks")
        if len(tasks.tasks) > MAX_TASKS:
            g.error("too_many_tasks", count=len(tasks.tasks), limit=MAX_TASKS)
        for t in tasks.tasks:
            if t.size == "L":
                g.warn("task_too_big", id=t.id, title=t.title)
    return out
