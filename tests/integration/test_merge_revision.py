"""orchestrator.merge_revision on the database (SQLite and PostgreSQL): an approved tasks revision
joining a run that already started."""
from __future__ import annotations

from sqlalchemy import select

from app.execution import orchestrator
from app.config import Settings
from app.db.models import Spec, SpecTask
from app.db.session import session_scope
from app.planning.schemas import TasksDraft, assign_task_ids


def draft(key, title, depends_on=(), verify=("true",), description="d"):
    return {"key": key, "title": title, "description": description, "covers": ["R1.1"],
            "depends_on": list(depends_on), "files": [{"path": f"{key}.py", "action": "create"}],
            "verify": list(verify), "size": "S", "kind": "implement"}


def row(spec_id, task_id, title, status, attempts=0, origin="plan", depends_on=()):
    return SpecTask(spec_id=spec_id, task_id=task_id, title=title, description="old", covers=["R1.1"],
                    depends_on=list(depends_on), files=[], verify=[], status=status, attempts=attempts, origin=origin)


def test_revision_adds_new_tasks_after_the_highest_id_and_updates_only_unstarted_ones(omoi_env):
    settings = Settings()
    with session_scope(settings.database_url) as s:
        spec = Spec(repo_full_name="octo/r", issue_number=1, installation_id=1, title="t", state="approved",
                    run_state="succeeded")
        s.add(spec)
        s.flush()
        spec_id = spec.id
        s.add_all([row(spec_id, "T1", "Write the parser", "done", attempts=1),
                   row(spec_id, "T2", "Write the renderer", "pending"),
                   row(spec_id, "T3", "Fix: parser crashes on empty input", "done", attempts=1, origin="discovery",
                       depends_on=["T1"])])
    revision = assign_task_ids(TasksDraft.model_validate({"tasks": [
        draft("parser", "Write the parser", description="new parser text"),       # done: left as is
        draft("renderer", "Write the renderer", depends_on=["parser"], verify=["python3 -m renderer"],
              description="new renderer text"),                                  # not started: updated
        draft("cli", "Add a command line", depends_on=["renderer"]),               # new
    ]}))
    assert [t.id for t in revision.tasks] == ["T1", "T2", "T3"]  # the revision's own ids collide with the run's

    with session_scope(settings.database_url) as s:
        added = orchestrator.merge_revision(s, settings, s.get(Spec, spec_id), revision)
    assert added == ["T4"]
    with session_scope(settings.database_url) as s:
        rows = {r.task_id: r for r in s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id))}
        assert set(rows) == {"T1", "T2", "T3", "T4"}
        assert (rows["T4"].title, rows["T4"].depends_on, rows["T4"].origin, rows["T4"].status) == (
            "Add a command line", ["T2"], "revision", "pending")
        assert rows["T1"].description == "old" and rows["T1"].status == "done"  # finished work untouched
        assert (rows["T2"].description, rows["T2"].depends_on, rows["T2"].verify, rows["T2"].files) == (
            "new renderer text", ["T1"], ["python3 -m renderer"], ["renderer.py"])
        assert rows["T3"].origin == "discovery" and rows["T3"].description == "old"  # kept, not a revision task

    with session_scope(settings.database_url) as s:  # the same revision again: nothing more
        assert orchestrator.merge_revision(s, settings, s.get(Spec, spec_id), revision) == []
    with session_scope(settings.database_url) as s:
        assert s.scalar(select(SpecTask.id).where(SpecTask.spec_id == spec_id, SpecTask.task_id == "T5")) is None
