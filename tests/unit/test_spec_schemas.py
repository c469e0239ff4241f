"""Tests for app.planning.schemas (pure, no I/O): requirement and task ids assigned by position and
dependencies, drafts bounded, task keys unique."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.planning.schemas import RequirementsDraft, TasksDraft, assign_task_ids
from tests.support.plans import crit, draft_task, good_requirements, story


# --- schemas ------------------------------------------------------------------


def test_assign_ids_numbers_by_position():
    req = good_requirements()
    assert [s.id for s in req.stories] == ["R1", "R2", "R3"]
    assert [c.id for c in req.stories[0].criteria] == ["R1.1", "R1.2"]
    assert req.criteria()["R2.1"][0].priority == "should"


def test_drafts_are_bounded():
    with pytest.raises(ValidationError):
        RequirementsDraft(summary="x" * 5000, stories=[story("a", [crit("WHEN a, THE b SHALL c")])])
    with pytest.raises(ValidationError):
        TasksDraft(tasks=[draft_task(f"k{i}", ["R1.1"]) for i in range(201)])
    with pytest.raises(ValidationError):
        TasksDraft(tasks=[draft_task("a", ["R1.1"]) | {"title": "t" * 500}])


def test_duplicate_task_keys_rejected():
    with pytest.raises(ValidationError, match="duplicate task key"):
        TasksDraft(tasks=[draft_task("a", ["R1.1"]), draft_task("A", ["R1.2"])])


def test_assign_task_ids_orders_dependencies_first_and_rewrites_keys():
    draft = TasksDraft(tasks=[
        draft_task("impl", ["r1.1"], depends_on=["tests", "nope"]),
        draft_task("tests", ["R1.1"], kind="test"),
        draft_task("docs", ["R1.1"], kind="docs"),
    ])
    tasks = assign_task_ids(draft)
    assert [(t.id, t.key) for t in tasks.tasks] == [("T1", "tests"), ("T2", "impl"), ("T3", "docs")]
    impl = tasks.by_id()["T2"]
    assert impl.depends_on == ["T1"]
    assert impl.unresolved_deps == ["nope"]
    assert impl.covers == ["R1.1"]  # normalised
    # Deterministic: same draft, same result.
    assert assign_task_ids(draft) == tasks
