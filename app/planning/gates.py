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
    name: str
    passed: bool
    message: str
    severity: Literal["error", "warning"] = "error"


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

    def __init__(self, name: str, out: list[GateResult], ok_message: str = "ok"):
        self.name, self.out, self.ok_message, self.failed = name, out, ok_message, False

    def error(self, message: str) -> None:
        self.failed = True
        self.out.append(GateResult(self.name, False, message, "error"))

    def warn(self, message: str) -> None:
        self.failed = True
        self.out.append(GateResult(self.name, False, message, "warning"))

    def __enter__(self) -> "_Gate":
        return self

    def __exit__(self, *exc) -> None:
        if not self.failed and exc[0] is None:
            self.out.append(GateResult(self.name, True, self.ok_message, "error"))


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
_EARS_FORM = {
    "ubiquitous": "THE <system> SHALL <response>",
    "event": "WHEN <trigger>, THE <system> SHALL <response>",
    "state": "WHILE <state>, THE <system> SHALL <response>",
    "unwanted": "IF <unwanted condition>, THEN THE <system> SHALL <response>",
    "optional": "WHERE <feature is included>, THE <system> SHALL <response>",
    "complex": "WHILE <state>, WHEN <trigger>, THE <system> SHALL <response>",
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
    with _Gate("EARS form", out, "every criterion reads as its EARS pattern") as g:
        for s in req.stories:
            for c in s.criteria:
                if not _ears_ok(c.pattern, c.text):
                    g.error(f"{c.id} is marked {c.pattern} but does not read '{_EARS_FORM[c.pattern]}'")
                elif len(re.findall(r"\bshall\b", c.text, re.I)) > 1:
                    g.warn(f"{c.id} has more than one SHALL; split it into one criterion per response")
                if m := _PLACEHOLDER.search(c.text):
                    g.error(f"{c.id} contains a placeholder ({m.group(0)})")
                if m := _VAGUE.search(c.text):
                    g.warn(f"{c.id} uses vague wording ('{m.group(0)}'); state a measurable condition")
    with _Gate("Acceptance criteria", out, "every story has acceptance criteria") as g:
        for s in req.stories:
            if not s.criteria:
                g.error(f"{s.id} has no acceptance criteria")
    with _Gate("Unique IDs", out, "all IDs are unique") as g:
        seen: set[str] = set()
        for ident in [s.id for s in req.stories] + [c.id for s in req.stories for c in s.criteria]:
            if ident in seen:
                g.error(f"duplicate ID {ident}")
            seen.add(ident)
    with _Gate("Size limits", out, "within size limits") as g:
        if not req.stories:
            g.error("there are no user stories")
        if len(req.stories) > MAX_STORIES:
            g.error(f"{len(req.stories)} stories; the limit is {MAX_STORIES}, so split the issue")
        for s in req.stories:
            if len(s.criteria) > MAX_CRITERIA_PER_STORY:
                g.error(f"{s.id} has {len(s.criteria)} criteria; the limit is {MAX_CRITERIA_PER_STORY}")
            for c in s.criteria:
                if len(c.text) > MAX_CRITERION_CHARS:
                    g.error(f"{c.id} is {len(c.text)} characters long; the limit is {MAX_CRITERION_CHARS}")
        if len(req.open_questions) > MAX_OPEN_QUESTIONS:
            g.warn(f"{len(req.open_questions)} open questions; keep at most {MAX_OPEN_QUESTIONS}")
    return out


# --- design -----------------------------------------------------------------


def path_problem(path: str) -> str | None:
    """Why a model-supplied path is unsafe to write, or None if it is fine.

    Paths become sandbox writes and write-set locks, so anything that could
    escape the checkout or touch git internals is refused outright.
    """
    if not path or path != path.strip():
        return "is empty or has surrounding spaces"
    if any(ord(ch) < 32 for ch in path):
        return "contains control characters"
    if "\\" in path:
        return "uses backslashes; use forward slashes"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or path.startswith("~"):
        return "is absolute; use a path relative to the repository root"
    parts = path.split("/")
    if ".." in parts:
        return "contains '..'"
    if ".git" in parts:
        return "points inside .git/"
    if path.endswith("/"):
        return "is a directory, not a file"
    return None


def check_design(design: Design, req: Requirements, repo_files: set[str]) -> list[GateResult]:
    out: list[GateResult] = []
    repo = {norm_path(p) for p in repo_files}
    with _Gate("Safe paths", out, "all paths are relative and inside the repository") as g:
        for p in [f.path for f in design.file_plan] + [p for c in design.components for p in c.files]:
            if why := path_problem(p):
                g.error(f"path {p} {why}")
    safe_plan = [f for f in design.file_plan if path_problem(f.path) is None]
    created = {norm_path(f.path) for f in safe_plan if f.action == "create"}
    with _Gate("File plan vs repository", out, "modified files exist; created files are new") as g:
        seen: set[str] = set()
        for f in safe_plan:
            p = norm_path(f.path)
            if p in seen:
                g.error(f"file plan lists {p} more than once")
            seen.add(p)
            if f.action == "create" and p in repo:
                g.error(f"design creates {p}, which already exists in the repository (use modify)")
            elif f.action == "modify" and p not in repo:
                g.error(f"design modifies {p}, which does not exist in the repository")
            elif f.action == "delete" and p not in repo:
                g.error(f"design deletes {p}, which does not exist in the repository")
        for c in design.components:
            for p in c.files:
                if path_problem(p) is None and norm_path(p) not in repo and norm_path(p) not in created:
                    g.warn(f"component {c.name} lists {p}, which neither exists nor is created by the file plan")
    with _Gate("Components", out, "components are defined") as g:
        if not design.components:
            g.error("the design has no components")
    with _Gate("Decisions", out, "every decision names its alternatives") as g:
        for d in design.decisions:
            if not d.alternatives:
                g.error(f"decision '{d.title}' lists no alternatives")
    with _Gate("Requirement coverage", out, "every must/should story maps to a component") as g:
        story_ids = {s.id for s in req.stories}
        served = {r for c in design.components for r in c.satisfies}
        for c in design.components:
            for r in c.satisfies:
                if r not in story_ids:
                    g.warn(f"component {c.name} satisfies unknown requirement {r}")
        for s in req.stories:
            if s.priority in ("must", "should") and s.id not in served:
                g.warn(f"{s.id} ({s.priority}) is not served by any component")
    return out


# --- tasks ------------------------------------------------------------------


def check_tasks(tasks: Tasks, req: Requirements, design: Design, repo_files: set[str]) -> list[GateResult]:
    out: list[GateResult] = []
    criteria = req.criteria()
    ids = [t.id for t in tasks.tasks]

    with _Gate("Criterion coverage", out, "every must/should criterion is covered") as g:
        covered = {c for t in tasks.tasks for c in t.covers}
        for cid, (story, _) in criteria.items():
            if story.priority in ("must", "should") and cid not in covered:
                g.error(f"{cid} ({story.priority}) is not covered by any task")

    with _Gate("Task traceability", out, "every task traces to a criterion") as g:
        for t in tasks.tasks:
            if not t.covers:
                g.error(f"{t.id} ({t.title}) covers no acceptance criterion")
            for c in t.covers:
                if c not in criteria:
                    g.error(f"{t.id} covers unknown criterion {c}")

    with _Gate("Dependencies", out, "all dependencies resolve") as g:
        if len(set(ids)) != len(ids):
            g.error("duplicate task IDs: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
        for t in tasks.tasks:
            for d in t.depends_on:
                if d == t.id:
                    g.error(f"{t.id} depends on itself")
                elif d not in ids:
                    g.error(f"{t.id} depends on unknown task {d}")
            for k in t.unresolved_deps:
                g.error(f"{t.id} depends on unknown task key '{k}'")

    with _Gate("Acyclic graph", out, "the dependency graph has no cycles") as g:
        for cyc in cycles(tasks):
            if len(cyc) > 2:  # a self-loop is already reported as "depends on itself"
                g.error("dependency cycle: " + " → ".join(cyc))

    with _Gate("Files", out, "every file exists or is created first") as g:
        repo = {norm_path(p) for p in repo_files}
        planned = {norm_path(f.path) for f in design.file_plan if f.action == "create"}
        declared: set[str] = set()  # created by an earlier task
        for t in tasks.tasks:
            for f in t.files:
                if why := path_problem(f.path):
                    g.error(f"{t.id}: path {f.path} {why}")
                    continue
                p = norm_path(f.path)
                if f.action == "create":
                    if p in repo:
                        g.error(f"{t.id} creates {p}, which already exists in the repository")
                elif p not in repo and p not in planned and p not in declared:
                    g.error(
                        f"{t.id} {'modifies' if f.action == 'modify' else 'deletes'} {p}, which does not exist "
                        "in the repository and is not created by the design or an earlier task"
                    )
            declared |= {norm_path(f.path) for f in t.files if f.action == "create"}
            if len(t.files) > MAX_FILES_PER_TASK:
                g.warn(f"{t.id} touches {len(t.files)} files; split tasks above {MAX_FILES_PER_TASK}")

    with _Gate("Tests first", out, "implementation depends on tests for the same criteria") as g:
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
                g.warn(f"{t.id} implements {', '.join(missing)} without depending on a test task covering it")

    with _Gate("Size limits", out, "within size limits") as g:
        if not tasks.tasks:
            g.error("there are no tasks")
        if len(tasks.tasks) > MAX_TASKS:
            g.error(f"{len(tasks.tasks)} tasks; the limit is {MAX_TASKS}, so split the issue")
        for t in tasks.tasks:
            if t.size == "L":
                g.warn(f"{t.id} ({t.title}) is size L; consider splitting it")
    return out
