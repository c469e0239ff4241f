"""Tests for app.planning.task_graph (pure, no I/O): the schedule of a plan's tasks in parallel
groups (dependencies and write sets) and its critical path."""
from __future__ import annotations

from app.planning.schemas import Tasks, TasksDraft, assign_task_ids
from app.planning.task_graph import critical_path, parallel_groups
from tests.support.plans import draft_task, good_tasks_draft


# --- schedule -----------------------------------------------------------------------


def test_parallel_groups_follow_dependencies():
    tasks = assign_task_ids(good_tasks_draft())
    assert parallel_groups(tasks) == [["T1"], ["T2"], ["T3"]]


def test_parallel_groups_respect_write_sets():
    draft = TasksDraft(tasks=[
        draft_task("a", ["R1.1"], kind="test", files=[("tests/test_a.py", "create")]),
        draft_task("b", ["R1.1"], kind="test", files=[("tests/test_b.py", "create"), ("src/util.py", "modify")]),
        draft_task("c", ["R1.1"], kind="test", files=[("src/util.py", "modify")]),  # conflicts with b
        draft_task("d", ["R1.1"], kind="test", files=[("./src/util.py", "modify")]),  # conflicts with b and c
        draft_task("e", ["R1.1"], kind="test", files=[("docs/e.md", "create")]),
    ])
    groups = parallel_groups(assign_task_ids(draft))
    assert groups == [["T1", "T2", "T5"], ["T3"], ["T4"]]
    by_id = {t.id: t for t in assign_task_ids(draft).tasks}
    for g in groups:
        written = [f.path.removeprefix("./") for tid in g for f in by_id[tid].files]
        assert len(written) == len(set(written)), g


def test_write_conflict_pushes_dependents_later():
    draft = TasksDraft(tasks=[
        draft_task("a", ["R1.1"], kind="test", files=[("src/util.py", "modify")]),
        draft_task("b", ["R1.1"], kind="test", files=[("src/util.py", "modify")]),
        draft_task("c", ["R1.1"], kind="test", depends_on=["b"]),
    ])
    assert parallel_groups(assign_task_ids(draft)) == [["T1"], ["T2"], ["T3"]]


def test_parallel_groups_survive_cycles():
    draft = TasksDraft(tasks=[draft_task("a", ["R1.1"], depends_on=["b"]), draft_task("b", ["R1.1"], depends_on=["a"])])
    groups = parallel_groups(assign_task_ids(draft))
    assert sorted(t for g in groups for t in g) == ["T1", "T2"]


def test_critical_path_weights_sizes():
    draft = TasksDraft(tasks=[
        draft_task("a", ["R1.1"], kind="test", size="S"),
        draft_task("b", ["R1.1"], size="L", depends_on=["a"]),
        draft_task("c", ["R1.1"], size="S", depends_on=["a"]),
        draft_task("d", ["R1.1"], size="S", depends_on=["b", "c"]),
        draft_task("e", ["R1.1"], size="M"),
    ])
    assert critical_path(assign_task_ids(draft)) == ["T1", "T2", "T4"]
    assert critical_path(Tasks(tasks=[])) == []
