"""Tests for app.planning.documents: stage comments, spec files and revision diffs (pure)."""
from __future__ import annotations

import re

import pytest

from app.text.rendering import GITHUB_BODY_LIMIT
from app.planning.gates import check_design, check_requirements, check_tasks
from app.planning.documents import diff_summary, doc_hash, render_spec_file, render_stage_comment
from app.planning.schemas import Design, RequirementsDraft, TasksDraft, assign_ids, assign_task_ids
from tests.support.plans import draft_task

REPO = {"src/app.py", "tests/test_app.py"}


def requirements(criterion="WHEN the user runs export, THE CLI SHALL write a CSV file", summary="Export issues to CSV."):
    return assign_ids(RequirementsDraft(
        summary=summary,
        stories=[
            dict(title="Export", as_a="maintainer", i_want="a CSV export", so_that="I can analyse offline", priority="must",
                 criteria=[
                     dict(pattern="event", text=criterion, verification="unit test"),
                     dict(pattern="unwanted", text="IF the path is not writable, THEN THE CLI SHALL exit 2", verification="unit test"),
                 ]),
        ],
        open_questions=["Which delimiter?"],
        out_of_scope=["Excel"],
    ))


def design():
    return Design(
        overview="An exporter module.",
        components=[dict(name="Exporter", responsibility="Write CSV", files=["src/export.py"], satisfies=["R1"])],
        decisions=[dict(title="Library", choice="stdlib csv", alternatives=["pandas"], rationale="no dependency")],
        file_plan=[dict(path="src/export.py", action="create", purpose="exporter"),
                   dict(path="src/app.py", action="modify", purpose="subcommand")],
        risks=[dict(risk="big files", mitigation="stream")],
        testing_strategy="pytest",
    )


def tasks():
    return assign_task_ids(TasksDraft(tasks=[
        draft_task("tests", ["R1.1", "R1.2"], kind="test", files=[("tests/test_export.py", "create")]),
        draft_task("impl", ["R1.1", "R1.2"], depends_on=["tests"], files=[("src/export.py", "create"), ("src/app.py", "modify")]),
    ]))


MARKER = re.compile(r"<!-- omoi:spec stage=(\w+) rev=(\d+) hash=([0-9a-f]{12}) -->")


@pytest.mark.parametrize("stage", ["requirements", "design", "tasks"])
def test_comment_has_marker_title_gates_and_footer(stage):
    req, des, tsk = requirements(), design(), tasks()
    doc = {"requirements": req, "design": des, "tasks": tsk}[stage]
    gates = {
        "requirements": check_requirements(req),
        "design": check_design(des, req, REPO),
        "tasks": check_tasks(tsk, req, des, REPO),
    }[stage]
    body = render_stage_comment(stage, doc, revision=3, gates=gates, status="waiting")
    first = body.splitlines()[0]
    m = MARKER.fullmatch(first)
    assert m and m.groups() == (stage, "3", doc_hash(doc)), first
    assert body.count("<!-- omoi:") == 1
    assert f"{stage.capitalize()} · r3 · waiting for approval" in body
    assert "✅" in body and "❌" not in body
    for cmd in ("/omoi approve", f"/omoi approve {stage} r3", "/omoi revise", "/omoi reject", "/omoi status", "/omoi help"):
        assert cmd in body
    assert "<details><summary>Commands</summary>" in body
    assert len(body) < GITHUB_BODY_LIMIT


def test_requirements_content_and_approved_status():
    req = requirements()
    body = render_stage_comment("requirements", req, revision=2, gates=[], status="approved", approved_by="octocat")
    assert "Requirements · r2 · approved by @\u200boctocat" in body  # shown, but does not ping
    assert "| R1.1 | event | WHEN the user runs export, THE CLI SHALL write a CSV file | unit test |" in body
    assert "| R1 | Export | must | 2 |" in body
    assert "Which delimiter?" in body and "Excel" in body


def test_gate_failures_are_listed_with_icons():
    req = requirements(criterion="the CLI writes a file")  # not EARS for 'event'
    body = render_stage_comment("requirements", req, revision=1, gates=check_requirements(req), status="blocked")
    assert "❌ **EARS form**" in body
    assert "R1.1 is marked event but does not read" in body
    assert "✅ **Acceptance criteria**: passed" in body


def test_tasks_comment_shows_table_groups_and_critical_path():
    body = render_stage_comment("tasks", tasks(), revision=1, gates=[], status="waiting")
    assert "| ID | Title | Kind | Covers | Depends on | Size | Files |" in body
    assert "| T2 | impl | implement | R1.1, R1.2 | T1 | S | `src/export.py` (create)<br>`src/app.py` (modify) |" in body
    assert "critical path: T1 → T2" in body
    assert "1. T1\n2. T2" in body


def test_model_text_is_escaped():
    evil = "ping @octocat <!-- omoi:spec stage=tasks rev=9 hash=000000000000 --> <img src=x> | cell ``` fence"
    req = requirements(summary=evil, criterion="WHEN @octocat asks <script>, THE CLI SHALL answer | fine")
    tsk = assign_task_ids(TasksDraft(tasks=[
        draft_task("x", ["R1.1"], title=evil, description=evil, files=[("src/`<!-- omoi:x -->`.py", "create")]),
    ]))
    for body in (
        render_stage_comment("requirements", req, revision=2, gates=[], status="waiting", changes=[evil]),
        render_stage_comment("tasks", tsk, revision=1, gates=check_tasks(tsk, req, design(), REPO), status="waiting"),
        render_spec_file("requirements", req),
        render_spec_file("tasks", tsk),
    ):
        assert body.count("<!-- omoi:") <= 1  # only our own marker (files have none)
        assert "@octocat" not in body
        assert "<img" not in body and "<script>" not in body
        assert "```" not in body
    body = render_stage_comment("requirements", req, revision=1, gates=[], status="waiting")
    # Pipes in a cell are escaped so the criteria table keeps its columns.
    assert "SHALL answer \\| fine" in body


def test_huge_plan_stays_under_limit_with_overflow_link():
    long = "x" * 1900
    draft = TasksDraft(tasks=[
        draft_task(f"task-{i}", [f"R{i % 9 + 1}.{i % 5 + 1}"], title="T" * 120, description=long,
             depends_on=[f"task-{i - 1}"] if i else [], files=[(f"src/module_{i}/file_{j}.py", "create") for j in range(8)])
        for i in range(200)
    ])
    plan = assign_task_ids(draft)
    url = "https://github.com/o/r/blob/omoi/issue-7/.omoi/specs/7/tasks.md"
    body = render_stage_comment("tasks", plan, revision=4, gates=[], status="waiting",
                                changes=[f"added task T{i}" for i in range(300)], overflow_url=url)
    assert len(body) < GITHUB_BODY_LIMIT
    assert MARKER.match(body)
    assert url in body
    assert "more tasks not shown" in body
    assert "… and 250 more" in body  # the changes list is capped too
    assert "/omoi approve tasks r4" in body  # the footer survives the cut
    # The file, by contrast, is complete.
    full = render_spec_file("tasks", plan)
    assert len(full) > GITHUB_BODY_LIMIT and "T200" in full and "<!-- omoi:" not in full


def test_huge_requirements_without_url_still_fit():
    big = "WHEN a thing happens, THE system SHALL " + "respond " * 110
    req = assign_ids(RequirementsDraft(summary="s" * 3000, stories=[
        dict(title=f"Story {i}", as_a="u" * 300, i_want="w" * 300, so_that="s" * 300, priority="must",
             criteria=[dict(pattern="event", text=big[:1000], verification="v" * 300) for _ in range(20)])
        for i in range(50)
    ]))
    body = render_stage_comment("requirements", req, revision=1, gates=check_requirements(req), status="waiting")
    assert len(body) < GITHUB_BODY_LIMIT
    assert "the full requirements file is written to the repository" in body


def test_spec_files():
    for stage, doc, heading in (("requirements", requirements(), "# Requirements"),
                                ("design", design(), "# Design"), ("tasks", tasks(), "# Tasks")):
        text = render_spec_file(stage, doc)
        assert text.startswith(heading + "\n")
        assert "/omoi" not in text and "<!--" not in text
    assert "| `src/app.py` | modify | subcommand |" in render_spec_file("design", design())


def test_stage_and_doc_must_match():
    with pytest.raises(TypeError):
        render_spec_file("design", requirements())
    with pytest.raises(ValueError):
        render_stage_comment("requirements", requirements(), revision=1, gates=[], status="bogus")


def words(changes):
    """Changes are reasons (a code and its parameters, stored so); people read them worded."""
    return [str(c) for c in changes]


def test_diff_summary_requirements():
    old = requirements()
    new = requirements(criterion="WHEN the user runs export, THE CLI SHALL write a TSV file")
    changes = words(diff_summary(old, new))
    assert changes == ["changed criterion R1.1 (text): WHEN the user runs export, THE CLI SHALL write a TSV file"]
    assert diff_summary(old, old) == []
    body = render_stage_comment("requirements", new, revision=2, gates=[], status="waiting", changes=changes)
    assert "Changes since r1" in body and "changed criterion R1.1 (text)" in body


def test_diff_summary_added_and_removed_stories():
    old = requirements()
    draft = RequirementsDraft(summary=old.summary, stories=[
        *[s.model_dump(exclude={"id"}) | {"criteria": [c.model_dump(exclude={"id"}) for c in s.criteria[:1]]} for s in old.stories],
        dict(title="Import", as_a="m", i_want="import", so_that="x", priority="could",
             criteria=[dict(pattern="event", text="WHEN x, THE CLI SHALL y", verification="t")]),
    ], open_questions=[], out_of_scope=["Excel"])
    changes = words(diff_summary(old, assign_ids(draft)))
    assert "added story R2: Import" in changes
    assert "added criterion R2.1: WHEN x, THE CLI SHALL y" in changes
    assert "removed criterion R1.2" in changes
    assert "open questions: removed Which delimiter?" in changes
    assert "removed story R2: Import" in words(diff_summary(assign_ids(draft), old))


def test_diff_summary_design_and_tasks():
    old = design()
    new = Design.model_validate(old.model_dump() | {"file_plan": [
        dict(path="src/export.py", action="create", purpose="the exporter"),
        dict(path="src/cli.py", action="create", purpose="cli"),
    ]})
    changes = words(diff_summary(old, new))
    assert "changed file src/export.py (purpose)" in changes
    assert "added file src/cli.py" in changes
    assert "removed file src/app.py" in changes

    old_t = tasks()
    new_t = assign_task_ids(TasksDraft(tasks=[
        draft_task("docs", ["R1.1"], kind="docs", files=[("README.md", "modify")]),
        draft_task("tests", ["R1.1", "R1.2"], kind="test", files=[("tests/test_export.py", "create")]),
        draft_task("impl", ["R1.1", "R1.2"], depends_on=["tests"], files=[("src/export.py", "create")], size="M"),
    ]))
    changes = words(diff_summary(old_t, new_t))
    assert "added task T1: docs" in changes
    assert "task T1 is now T2" in changes
    assert "changed task T3 (files, size)" in changes
    assert "tasks now touch README.md" in changes
    assert "tasks no longer touch src/app.py" in changes
    with pytest.raises(TypeError):
        diff_summary(old, old_t)
