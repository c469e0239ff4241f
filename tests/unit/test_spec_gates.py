"""Tests for app.planning.gates (pure, no I/O): the requirements, design and tasks gates on a valid
plan (tests/support/plans.py, a CSV export) and on the ways it can be broken."""
from __future__ import annotations

import pytest

from app.planning.gates import (
    MAX_TASKS,
    GateResult,
    check_design,
    check_requirements,
    check_tasks,
    feedback,
    passed,
    path_problem,
)
from app.planning.schemas import RequirementsDraft, Task, Tasks, TasksDraft, assign_ids, assign_task_ids
from tests.support.plans import crit, draft_task, good_design, good_requirements, good_tasks_draft, story

REPO = {"src/app.py", "src/util.py", "tests/test_app.py", "README.md"}


def messages(results):
    return [r.message for r in results if not r.passed]


# --- requirements gates -------------------------------------------------------------


def test_good_requirements_pass():
    results = check_requirements(good_requirements())
    assert passed(results), feedback(results)
    assert all(isinstance(r, GateResult) for r in results)


def test_ears_pattern_mismatch_is_an_error():
    req = assign_ids(RequirementsDraft(summary="s", stories=[story("a", [
        crit("THE system SHALL do x", "event"),
        crit("WHEN x happens THE system SHALL do y", "state"),
        crit("IF it breaks THE system SHALL recover", "unwanted"),  # no THEN
        crit("WHILE online, WHEN a push arrives, THE bot SHALL comment", "complex"),
        crit("the system does things", "ubiquitous"),
    ])]))
    msgs = messages(check_requirements(req))
    assert "R1.1 is marked event but does not read 'WHEN <trigger>, THE <system> SHALL <response>'" in msgs
    assert any(m.startswith("R1.2 is marked state") for m in msgs)
    assert any(m.startswith("R1.3 is marked unwanted") for m in msgs)
    assert not any(m.startswith("R1.4") for m in msgs)
    assert any(m.startswith("R1.5 is marked ubiquitous") for m in msgs)
    assert not passed(check_requirements(req))


def test_placeholder_and_vague_words():
    req = assign_ids(RequirementsDraft(summary="s", stories=[story("a", [
        crit("WHEN x, THE system SHALL respond TBD"),
        crit("WHEN x, THE system SHALL respond fast"),
    ])]))
    results = check_requirements(req)
    assert "R1.1 contains a placeholder (TBD)" in messages(results)
    vague = [r for r in results if "vague" in r.message]
    assert vague and vague[0].severity == "warning"


def test_story_without_criteria_and_size_limits():
    req = assign_ids(RequirementsDraft(summary="s", stories=[story("a", [])] + [
        story(f"s{i}", [crit("WHEN x, THE y SHALL z")]) for i in range(31)
    ]))
    msgs = messages(check_requirements(req))
    assert "R1 has no acceptance criteria" in msgs
    assert "32 stories; the limit is 30, so split the issue" in msgs


# --- design gates -------------------------------------------------------------------


def test_good_design_passes():
    results = check_design(good_design(), good_requirements(), REPO)
    assert passed(results), feedback(results)
    assert not messages(results)


def test_design_modifying_unknown_file_fails():
    design = good_design(file_plan=[dict(path="src/nope.py", action="modify", purpose="x")])
    msgs = messages(check_design(design, good_requirements(), REPO))
    assert "design modifies src/nope.py, which does not exist in the repository" in msgs


def test_design_creating_existing_file_fails():
    design = good_design(file_plan=[dict(path="src/app.py", action="create", purpose="x")])
    msgs = messages(check_design(design, good_requirements(), REPO))
    assert "design creates src/app.py, which already exists in the repository (use modify)" in msgs


@pytest.mark.parametrize("path,why", [
    ("../etc/passwd", "contains '..'"),
    ("src/../../x.py", "contains '..'"),
    ("/etc/passwd", "is absolute"),
    (".git/config", "points inside .git/"),
    ("C:/x.py", "is absolute"),
    ("src\\x.py", "backslashes"),
])
def test_unsafe_paths(path, why):
    assert why in str(path_problem(path))
    design = good_design(file_plan=[dict(path=path, action="create", purpose="x")])
    results = check_design(design, good_requirements(), REPO)
    assert not passed(results)
    assert any(m.startswith(f"path {path} ") and why in m for m in messages(results))


def test_safe_paths():
    for p in ["src/app.py", "a/b/c.txt", ".github/workflows/ci.yml", "./src/x.py", "docs/..hidden.md"]:
        assert path_problem(p) is None, p


def test_decision_without_alternatives_and_no_components():
    design = good_design(components=[], decisions=[dict(title="DB", choice="sqlite", alternatives=[], rationale="simple")])
    msgs = messages(check_design(design, good_requirements(), REPO))
    assert "decision 'DB' lists no alternatives" in msgs
    assert "the design has no components" in msgs


def test_unserved_must_story_is_a_warning():
    design = good_design(components=[dict(name="CLI", responsibility="x", files=["src/app.py"], satisfies=["R9"])])
    results = check_design(design, good_requirements(), REPO)
    warnings = {r.message for r in results if not r.passed and r.severity == "warning"}
    assert "R1 (must) is not served by any component" in warnings
    assert "component CLI satisfies unknown requirement R9" in warnings
    assert passed(results)  # warnings never block


# --- task gates ---------------------------------------------------------------------


def check(draft_or_tasks, req=None, design=None):
    tasks = draft_or_tasks if isinstance(draft_or_tasks, Tasks) else assign_task_ids(draft_or_tasks)
    return check_tasks(tasks, req or good_requirements(), design or good_design(), REPO)


def test_good_tasks_pass_cleanly():
    results = check(good_tasks_draft())
    assert passed(results), feedback(results)
    assert not messages(results)  # no warnings either: tests come first


def test_uncovered_must_criterion():
    draft = TasksDraft(tasks=[draft_task("t", ["R1.1", "R2.1"], kind="test"), draft_task("i", ["R1.1", "R2.1"], depends_on=["t"])])
    results = check(draft)
    assert "R1.2 (must) is not covered by any task" in messages(results)
    assert not any("R3.1" in m for m in messages(results))  # could: coverage optional
    assert not passed(results)


def test_task_tracing_nothing_and_unknown_criterion():
    good = good_tasks_draft().tasks
    draft = TasksDraft(tasks=list(good) + [draft_task("orphan", []), draft_task("ghost", ["R9.1"])])
    msgs = messages(check(draft))
    assert "T4 (orphan) covers no acceptance criterion" in msgs
    assert "T5 covers unknown criterion R9.1" in msgs


def test_dependency_cycle_named():
    good = good_tasks_draft().tasks
    draft = TasksDraft(tasks=list(good) + [
        draft_task("a", ["R1.1"], depends_on=["b"], kind="test"),
        draft_task("b", ["R1.1"], depends_on=["a"], kind="test"),
    ])
    tasks = assign_task_ids(draft)
    assert [t.key for t in tasks.tasks][3:] == ["a", "b"]
    results = check(tasks)
    assert "dependency cycle: T4 → T5 → T4" in messages(results)
    assert not passed(results)


def test_longer_cycle_and_self_dependency():
    raw = [
        draft_task("a", ["R1.1", "R1.2", "R2.1"], kind="test"),
        draft_task("b", ["R1.1"], depends_on=["c"]),
        draft_task("c", ["R1.1"], depends_on=["d"]),
        draft_task("d", ["R1.1"], depends_on=["b", "d"]),
    ]
    tasks = assign_task_ids(TasksDraft(tasks=raw))
    # The cycle is broken at b (listed first); d is then ready before c.
    assert [t.key for t in tasks.tasks] == ["a", "b", "d", "c"]
    msgs = messages(check(tasks))
    assert "dependency cycle: T2 → T4 → T3 → T2" in msgs  # b → c → d → b, read as "depends on"
    assert "T3 depends on itself" in msgs


def test_unknown_dependencies():
    draft = TasksDraft(tasks=[draft_task("t", ["R1.1", "R1.2", "R2.1"], kind="test", depends_on=["missing"])])
    assert "T1 depends on unknown task key 'missing'" in messages(check(draft))
    # A hand-built plan (e.g. from storage) with a dangling ID.
    tasks = Tasks(tasks=[Task(id="T1", depends_on=["T9"], **{k: v for k, v in draft_task("t", ["R1.1", "R1.2", "R2.1"], kind="test").items() if k != "depends_on"})])
    assert "T1 depends on unknown task T9" in messages(check(tasks))


def test_task_files_must_exist_or_be_created_first():
    draft = TasksDraft(tasks=[
        draft_task("t", ["R1.1", "R1.2", "R2.1"], kind="test", files=[("src/app.py", "create"), ("src/ghost.py", "modify")]),
        draft_task("n", ["R1.1"], kind="test", depends_on=["t"], files=[("src/new.py", "create")]),
        draft_task("m", ["R1.1"], kind="test", depends_on=["n"], files=[("src/new.py", "modify"), ("src/export.py", "modify")]),
        draft_task("x", ["R1.1"], kind="test", files=[("../x.py", "modify")]),
    ])
    msgs = messages(check(draft))
    assert "T1 creates src/app.py, which already exists in the repository" in msgs
    assert any(m.startswith("T1 modifies src/ghost.py, which does not exist") for m in msgs)
    assert not any("src/new.py" in m for m in msgs)  # declared new by an earlier task
    assert not any("src/export.py" in m for m in msgs)  # created by the design's file plan
    assert "T4: path ../x.py contains '..'" in msgs


def test_tests_first_is_a_warning():
    draft = TasksDraft(tasks=[
        draft_task("impl", ["R1.1", "R1.2", "R2.1"], files=[("src/export.py", "create")]),
        draft_task("tests", ["R1.1"], kind="test", depends_on=["impl"]),
    ])
    results = check(draft)
    tf = [r for r in results if r.name == "Tests first" and not r.passed]
    assert [r.message for r in tf] == ["T1 implements R1.1, R1.2, R2.1 without depending on a test task covering it"]
    assert tf[0].severity == "warning"
    assert passed(results)


def test_transitive_test_dependency_satisfies_tests_first():
    draft = TasksDraft(tasks=[
        draft_task("tests", ["R1.1", "R1.2", "R2.1"], kind="test"),
        draft_task("refactor", ["R1.1"], kind="refactor", depends_on=["tests"]),
        draft_task("impl", ["R1.1", "R1.2", "R2.1"], depends_on=["refactor"]),
    ])
    assert not [r for r in check(draft) if r.name == "Tests first" and not r.passed]


def test_size_limits():
    draft = TasksDraft(tasks=[draft_task(f"k{i}", ["R1.1", "R1.2", "R2.1"], kind="test", size="L" if i == 0 else "S") for i in range(MAX_TASKS + 1)])
    results = check(draft)
    assert f"{MAX_TASKS + 1} tasks; the limit is {MAX_TASKS}, so split the issue" in messages(results)
    assert any(r.message == "T1 (k0) is size L; consider splitting it" and r.severity == "warning" for r in results)


def test_feedback_lists_errors_first():
    results = [
        GateResult("a", False, "warn me", "warning"),
        GateResult("b", True, "ok"),
        GateResult("c", False, "broken", "error"),
    ]
    assert feedback(results) == ["error: broken", "warning: warn me"]
    assert not passed(results)
    assert passed(results[:2])
