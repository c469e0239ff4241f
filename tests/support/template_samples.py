"""Realistic data for every template under templates/ (tests/unit/test_templates.py renders each with it):
a spec's three documents, a run as app/execution/run_report.py shows it, replies, prompts, pages.
`SAMPLES` maps a template to its contexts, or to functions that render it (the spec stages go through
app/planning/documents.py, which adds their size limits and escaping filters); the reasons' samples
are tests/support/reason_samples.py."""
from __future__ import annotations

from app.commands.grammar import VERBS
from app.planning import documents
from app.planning.gates import GateResult, check_design, check_requirements, check_tasks
from app.planning.schemas import Design, RequirementsDraft, TasksDraft, assign_ids, assign_task_ids
from app.text.rendering import explain, reason
from tests.support.attempt_samples import ATTEMPT_SAMPLES, END_STATE_SAMPLES  # issue 17 items 3-5
from tests.support.planning_samples import LIFECYCLE_SAMPLES, status_samples  # issue 16 and 17 samples
from tests.support.run_page_samples import RUN_SAMPLES, with_run


def _requirements():
    return assign_ids(RequirementsDraft(
        summary="Export issues to CSV so maintainers can analyse them offline.",
        stories=[dict(title="Export", as_a="maintainer", i_want="a CSV export", so_that="I can analyse offline",
                      priority="must", criteria=[
                          dict(pattern="event", text="WHEN the user runs export, THE CLI SHALL write a CSV file",
                               verification="unit test"),
                          dict(pattern="unwanted", text="IF the path is not writable, THEN THE CLI SHALL exit 2",
                               verification="unit test")]),
                 dict(title="Import", as_a="maintainer", i_want="to import", so_that="I can restore",
                      priority="could", criteria=[dict(pattern="event", text="WHEN x, THE CLI SHALL y",
                                                       verification="unit test")])],
        open_questions=["Which delimiter?"], out_of_scope=["Excel"]))


def _design():
    return Design(
        overview="An exporter module behind a new `export` subcommand.",
        components=[dict(name="Exporter", responsibility="Write CSV", files=["src/export.py"], satisfies=["R1"])],
        decisions=[dict(title="Library", choice="stdlib csv", alternatives=["pandas", "polars"], rationale="no dependency")],
        file_plan=[dict(path="src/export.py", action="create", purpose="exporter"),
                   dict(path="src/app.py", action="modify", purpose="subcommand")],
        data_changes=["none"], interface_changes=["`app export PATH`"],
        risks=[dict(risk="big files", mitigation="stream")], testing_strategy="pytest")


def _task(key, covers, kind="implement", depends_on=(), files=(), size="S"):
    return dict(key=key, title=f"{key} for the exporter", description=f"Do {key}.\n\nCarefully.", covers=list(covers),
                depends_on=list(depends_on), files=[dict(path=p, action=a) for p, a in files],
                verify=["pytest -q tests/test_export.py", "python3 -m app --help"], size=size, kind=kind)


def _tasks():
    return assign_task_ids(TasksDraft(tasks=[
        _task("tests", ["R1.1", "R1.2"], kind="test", files=[("tests/test_export.py", "create")]),
        _task("impl", ["R1.1", "R1.2"], depends_on=["tests"], files=[("src/export.py", "create"), ("src/app.py", "modify")],
              size="L"),
        _task("docs", ["R1.1"], kind="docs", files=[("README.md", "modify")]),
    ]))


def _gates(stage):
    repo = {"src/app.py", "README.md"}
    failing = [GateResult("size_limits", False, reason("gate/too_many_tasks", count=41, limit=40)),
               GateResult("tests_first", False, reason("gate/tests_first", id="T2", criteria=["R1.1"]), "warning"),
               GateResult("reviewer", False, "consider a --delimiter flag", "warning")]
    if stage == "requirements":
        return check_requirements(_requirements()) + failing
    if stage == "design":
        return check_design(_design(), _requirements(), repo) + failing
    return check_tasks(_tasks(), _requirements(), _design(), repo) + failing


DOCS = {"requirements": _requirements, "design": _design, "tasks": _tasks}


def _comment(stage, **kw):
    return lambda: documents.render_stage_comment(
        stage, DOCS[stage](), revision=2, gates=_gates(stage), status=kw.get("status", "waiting"),
        approved_by=kw.get("approved_by"), overflow_url=kw.get("overflow_url"),
        changes=[c.to_json() for c in documents.diff_summary(DOCS[stage](), DOCS[stage]())] + ["summary changed"])


def _comments(stage):
    return [_comment(stage), _comment(stage, status="approved", approved_by="alice"),
            _comment(stage, status="blocked", overflow_url="https://github.com/o/r/blob/b/x.md")]


def _file(stage):
    return lambda: documents.render_spec_file(stage, DOCS[stage]())


EVIDENCE = [
    {"command": "setup: pip install -e .", "exit_code": 0, "timed_out": False, "tail": "ok", "seconds": 3.2,
     "rerun": False, "blocked": ["pypi.example.org:443", "10.0.0.1:80"]},
    {"command": "pytest -q tests/test_export.py", "exit_code": 0, "timed_out": False, "tail": "3 passed",
     "seconds": 1.0, "rerun": False},
    {"command": "python3 -m app --help", "exit_code": 0, "timed_out": False, "tail": "usage", "seconds": 0.4,
     "rerun": True},
]
TASK_ROWS = [
    {"id": "T1", "title": "Tests for the exporter", "status": "done", "attempts": 1, "covers": ["R1.1", "R1.2"],
     "depends_on": [], "verify": ["pytest -q"], "commit": "a" * 40, "commit_short": "aaaaaaa",
     "commit_url": "https://github.com/o/r/commit/" + "a" * 40, "cost": "$0.1200", "duration": "2m 03s",
     "error": "", "evidence": EVIDENCE},
    {"id": "T2", "title": "Exporter | CSV", "status": "failed", "attempts": 3, "covers": ["R1.1"], "depends_on": ["T1"],
     "verify": ["pytest -q"], "commit": None, "commit_short": "", "commit_url": None, "cost": "$0.4000",
     "duration": "9m 00s", "evidence": [EVIDENCE[1]],
     "error": explain(reason("task/verify_failed", command="pytest -q", timed_out=False, exit_code=1,
                              output="E   AssertionError: 2 != 3"))},
    {"id": "T3", "title": "Docs", "status": "pending", "attempts": 0, "covers": ["R1.1"], "depends_on": ["T2"],
     "verify": [], "commit": None, "commit_short": "", "commit_url": None, "cost": "$0.0000", "duration": "0s",
     "error": "", "evidence": []},
]
BUDGET_STOP = {"limit": "monthly", "spent_usd": "50.10", "limit_usd": "50.00", "spec_spent_usd": "4.20"}


def run_view(state, **over):
    view = {
        "spec_id": 12, "full_name": "octo/app", "issue_number": 7, "title": "Export issues to CSV",
        "branch": "omoi/issue-7-export-issues-to-csv", "run_state": state, "pr_number": 9, "check_id": 5,
        "check_sha": "b" * 40, "comment_id": 77, "tasks": TASK_ROWS,
        "counts": {"done": 1, "running": 0, "pending": 1, "failed": 1, "cancelled": 0}, "total": 3,
        "elapsed": "12m 05s" if state != "running" else None, "started": "2026-11-30 18:30 UTC",
        "cost": "$0.5200",
        "trace": [{"id": "R1.1", "text": "WHEN the user runs export, THE CLI SHALL write a CSV file",
                   "tasks": TASK_ROWS[:2]},
                  {"id": "R2.1", "text": "WHEN x, THE CLI SHALL y", "tasks": []}],
        "summary": "Export issues to CSV.", "overview": "An exporter module.",
        "failed": [TASK_ROWS[1]], "issue_url": "https://github.com/octo/app/issues/7",
        "pr_url": "https://github.com/octo/app/pull/9", "max_attempts": 3,
        "run_error": explain(reason("run/task_failed", task="T2", attempts=3, cause=reason(
            "task/verify_failed", command="pytest -q", timed_out=False, exit_code=1, output="E   AssertionError"))),
        "budget_stop": None, "stalled": None, "max_discovered": 5,
        "discoveries": [
            {"id": 1, "task": "T1", "kind": "bug", "title": "Parser drops | in cells", "status": "added", "new_task": "T4",
             "duplicate_of": None, "phase": "tasks"},
            {"id": 2, "task": "T2", "kind": "missing_requirement", "title": "Unicode paths", "status": "proposed",
             "new_task": None, "duplicate_of": None, "phase": "requirements"},
            {"id": 3, "task": "T2", "kind": "refactor", "title": "Same as 1", "status": "duplicate", "new_task": None,
             "duplicate_of": "T4", "phase": "tasks"},
            {"id": 4, "task": "T3", "kind": "investigation", "title": "Why slow", "status": "over_limit",
             "new_task": None, "duplicate_of": None, "phase": "tasks"}],
        "interventions": [
            {"task": "T2", "attempt": 1, "source": "guardian", "verdict": "drifting", "reason": "it edits the docs",
             "action": "redirect", "guidance": "Work on the exporter.", "delivered": True},
            {"task": "T2", "attempt": 2, "source": "guardian", "verdict": "looping", "reason": "the same call 4 times",
             "action": "retry_with_guidance", "guidance": "Read the error first.", "delivered": False},
            {"task": "T3", "attempt": 1, "source": "conductor", "verdict": "duplicate",
             "reason": explain(reason("supervision/runs_after", after="T2", cause=reason(
                 "supervision/both_write", task="T3", other="T2", files=["src/export.py"]))),
             "action": "pause", "guidance": None, "delivered": False}],
    }
    return {**view, **over}


RUN_VIEWS = [run_view("running", stalled="1h 05m"), run_view("succeeded"), run_view("failed"),
             run_view("paused_budget", budget_stop=BUDGET_STOP),
             run_view("paused_budget", budget_stop={**BUDGET_STOP, "limit": "installation"}),
             run_view("cancelled", run_error=explain(reason("run/cancelled", user="alice")), pr_url=None),
             run_view("running", tasks=[dict(t, evidence=[]) for t in TASK_ROWS], discoveries=[], interventions=[]),
             run_view("merged"), run_view("closed")]

GATE_ROWS = [{"name": "Criterion coverage", "passed": True, "severity": "error", "message": ""},
             {"name": "Files", "passed": False, "severity": "error",
              "message": "T2 creates src/app.py, which already exists in the repository"},
             {"name": "Tests first", "passed": False, "severity": "warning", "message": "T2 implements R1.1 without …"}]
STAGE_ROWS = [{"stage": "requirements", "revision": 1, "status": "approved", "gates": GATE_ROWS[:1]},
              {"stage": "design", "revision": 2, "status": "approved", "gates": GATE_ROWS[:1]},
              {"stage": "tasks", "revision": 1, "status": "blocked", "gates": GATE_ROWS}]
BUDGET_VIEW = {"spec_spent": "4.20", "spec_limit": "10.00", "month_spent": "50.10", "month_limit": "50.00",
               "installation_spent": "80.00", "installation_limit": None, "task_usd": "2.00", "task_minutes": 30}
THREADS = [{"id": "PRRT_1", "path": "src/export.py", "line": 12, "outdated": False, "author": "alice",
            "comments": [{"author": "alice", "body": "Use `csv.writer` here."}]},
           {"id": "PRRT_2", "path": "README.md", "line": None, "outdated": True, "author": "bob",
            "comments": [{"author": "bob", "body": "Typo."}, {"author": "alice", "body": "Agreed."}]}]
CI_CHECK = {"name": "ci / test", "conclusion": "failure", "title": "1 test failed", "summary": "test_greet FAILED",
            "text": "AssertionError", "annotations": [{"path": "hello.py", "line": 3, "level": "failure",
                                                         "title": "test_greet", "message": "expected 'Hello Ann'"},
                                                        {"path": "hello.py", "line": None, "level": "warning",
                                                         "title": "", "message": "unused import"}]}
CI_ROUND = {"round": 1, "head": "a" * 40, "head_short": "aaaaaaa", "status": "pushed", "fix": "b" * 40,
            "fix_short": "bbbbbbb", "reason": "", "cost": "0.06", "tail": "",
            "checks": [{"id": 7, "name": "ci / test", "conclusion": "failure", "title": "1 test failed", "url": "",
                        "app": "github-actions"}]}
TRAJECTORY = [{"type": "tool_use", "name": "Bash", "input": "{'command': 'pytest'}", "is_error": False, "content": "None",
               "role": "None", "text": "None"},
              {"type": "tool_result", "name": "None", "input": "None", "is_error": True, "content": "1 failed",
               "role": "None", "text": "None"},
              {"type": "text", "name": "None", "input": "None", "is_error": False, "content": "None",
               "role": "assistant", "text": "Let me fix the test."}]
SPEC_PAGE = {
    "repo_full_name": "octo/app", "issue_number": 7, "issue_url": "https://github.com/octo/app/issues/7",
    "title": "Export <b>issues</b>", "state": "tasks", "requested_by": "alice", "base_sha": "c" * 40,
    "branch": "omoi/issue-7-export", "last_error": explain(reason("planning/gates_failed", stage="tasks", attempts=3)),
    "created_at": "2026-12-01 10:00:00Z", "updated_at": "2026-12-01 11:00:00Z", "age": "1h 00m",
    "installation_id": 42, "installation_link": "/status/installations/42?sig=x", "run": None,
    "stages": [{"stage": "requirements", "revision": 1, "status": "approved", "attempts": 1,
                "gates": [{"name": "EARS form", "passed": True, "severity": "error", "message": ""},
                          {"name": "Reviewer", "passed": False, "severity": "warning", "message": "consider a flag"}],
                "gates_failed": 1, "feedback": "", "approved_by": "alice", "approved_at": "2026-12-01 10:20:00Z",
                "created_at": "2026-12-01 10:10:00Z"},
               {"stage": "tasks", "revision": 2, "status": "blocked", "attempts": 3, "gates": [], "gates_failed": 0,
                "feedback": "smaller tasks", "approved_by": "", "approved_at": "", "created_at": "2026-12-01 10:50:00Z"}],
    "timings": [{"what": "requested", "stage": None, "at": "10:00", "after": ""},
                {"what": "written", "stage": "requirements", "at": "10:10", "after": "10m"},
                {"what": "approved", "stage": "requirements", "at": "10:20", "after": "20m"},
                {"what": "changed", "stage": None, "at": "11:00", "after": "1h 00m"}],
    "llm_calls": [{"purpose": "requirements", "model": "claude", "input_tokens": 10, "output_tokens": 5, "cache_write": 0,
                   "cache_read": 0, "cost": "0.0100", "duration": "1.0s", "ok": True, "error": "", "at": "10:05"},
                  {"purpose": "tasks", "model": "claude", "input_tokens": 10, "output_tokens": 0, "cache_write": 0,
                   "cache_read": 0, "cost": "0.0000", "duration": "0.5s", "ok": False, "error": "overloaded",
                   "at": "10:40"}],
    "llm_truncated": True,
    "llm_totals": {"calls": 2, "input_tokens": 20, "output_tokens": 5, "cache_write": 0, "cache_read": 0,
                   "cost": "0.0100", "duration": "1.5s"},
}
SPEC_PAGE["approvals"] = [SPEC_PAGE["stages"][0]]
MANIFEST = {"name": "omoi", "default_permissions": {"issues": "write", "contents": "write"},
            "default_events": ["issues", "issue_comment"], "hook_attributes": {"url": "https://omoi.example/webhook"},
            "redirect_url": "https://omoi.example/setup/done"}


# Every template but the reasons -> a list of contexts, or of functions that render it.
SAMPLES: dict[str, list] = {
    "ack.md.j2": [{"issue_number": 7, "label": "omoi", "requested_by": "alice"}],
    "checks/spec.md.j2": [{"issue_number": 7, "state": "blocked", "stages": STAGE_ROWS}],
    "checks/spec_title.j2": [{"state": s} for s in ("approved", "blocked", "rejected", "design")],
    "execution/_checklist.md.j2": [{"tasks": TASK_ROWS}],
    "execution/_end_state.md.j2": RUN_VIEWS + END_STATE_SAMPLES,
    "execution/_supervision.md.j2": RUN_VIEWS,
    "execution/check_action.j2": [{"action": a, "part": p} for a in ("cancel", "retry") for p in ("label", "description")],
    "execution/check_summary.md.j2": RUN_VIEWS,
    "execution/check_title.j2": RUN_VIEWS,
    "execution/commit_message.txt.j2": [{"issue_number": 7, "spec_id": 12, "task": {"id": "T1", "title": "Tests",
                                                                                   "covers": ["R1.1"]}}],
    "execution/discovery_proposal.md.j2": [{"spec_id": 12, "d": {
        "id": 2, "task": "T2", "kind": "missing_requirement", "title": "Unicode paths", "phase": "requirements",
        "description": "Paths with @mentions <b>break</b>.", "evidence": "src/export.py:10", "status": "proposed"}}],
    "execution/discovery_texts.j2": [
        {"part": "tool"}, {"part": "invalid", "error": "1 validation error for Finding"}, {"part": "too_many", "limit": 5},
        {"part": "recorded"}, {"part": "task_title", "kind": "refactor", "title": "Split the parser"},
        {"part": "task_description", "body": "Fix it.", "evidence": "a.py:3", "task": "T1"},
        {"part": "feedback", "kind": "missing_requirement", "task": "T2", "user": "alice", "title": "Unicode",
         "description": "Paths break.", "evidence": ""}],
    "execution/exploration.md.j2": [{"part": "label"}, {"part": "empty"}],
    "execution/pr_body.md.j2": RUN_VIEWS,
    "execution/pr_title.j2": [{"title": "Export issues to CSV", "issue_number": 7}],
    "execution/reply_cancelled.md.j2": [{}],
    "execution/reply_retrying.md.j2": [{"tasks": ["T2", "T3"]}, {"tasks": []}],
    "execution/reply_run_started.md.j2": [{"tasks": ["T1", "T2"]}, {"tasks": []}],
    "execution/reply_run_state.md.j2": [{"state": s, "task": "T9"} for s in (
        "running", "succeeded", "not-approved", "no-run", "unknown-task", "not-failed", "not-running", "paused",
        "merged", "complete", "closed", "stopped", "stale")],
    "execution/task_prompt.md.j2": [{
        "issue_number": 7, "title": "Export issues to CSV", "workdir": "/workspace/repo", "sandbox_id": "sb-1",
        "attempt": 2, "task": {"id": "T2", "title": "Exporter", "description": "Write it.", "kind": k},
        "criteria": [{"id": "R1.1", "text": "WHEN x, THE CLI SHALL y", "verification": "unit test"}],
        "files": ["src/export.py"], "verify": ["pytest -q"], "design": "An exporter.",
        "guidance": "Read the failing test first." if k == "implement" else None,
        "discoveries_file": ".omoi-discoveries.json"} for k in ("implement", "explore")],
    "execution/tracking.md.j2": RUN_VIEWS,
    "prompts/_feedback.j2": [{"gate_feedback": ["error: T1 depends on itself"], "user_feedback": "Smaller tasks.",
                              "previous": "{\"tasks\": []}"}],
    "prompts/agent_mode.j2": [{"mode": m} for m in ("explore", "implement", "validate")],
    "prompts/ask.j2": [{"question": "Why CSV?", "title": "Export", "body": "Please.", "plan": "requirements: ..."},
                       {"question": "Why?", "title": "Export", "body": "", "plan": ""}],
    "prompts/design.j2": [{"issue_number": 7, "title": "Export", "requirements": "{}", "gate_feedback": [],
                           "user_feedback": None, "previous": None}],
    "prompts/guardian.j2": [{"task": {"id": "T2", "title": "Exporter", "description": "Write it.",
                                      "criteria": ["R1.1: WHEN x, THE CLI SHALL y"], "trajectory": TRAJECTORY,
                                      "repeats": 1}},
                            {"task": {"id": "T2", "title": "Exporter", "description": "Write it.", "criteria": [],
                                      "trajectory": [], "repeats": 0}}],
    "prompts/guardian_messages.j2": [{"kind": "redirect", "verdict": "drifting", "reason": "it edits docs"},
                                     {"kind": "retry", "verdict": "stuck", "reason": "it waits"}, {"kind": "loop"}],
    "prompts/redirect.j2": [{"message": "Work on the exporter, not the docs."}],
    "prompts/clipped.j2": [{"count": 1200}],
    "prompts/digest_notes.j2": [{"part": "title", "full_name": "octo/app", "branch": "main", "sha": "c" * 40},
                                {"part": "files"}, {"part": "more_files", "count": 12}, {"part": "file_cut"},
                                {"part": "digest_cut"}],
    "prompts/requirements.j2": [{"issue_number": 7, "title": "Export", "body": "Please add CSV.",
                                 "gate_feedback": ["error: there are no user stories"], "user_feedback": None,
                                 "previous": None}],
    "prompts/review.j2": [{"stage": "design", "document": "{}", "issue_number": 7, "title": "Export"}],
    "prompts/structured.j2": [{"part": "tool", "type_name": "Requirements"},
                              {"part": "feedback", "feedback": ["error: x", "warning: y"]},
                              {"part": "answer", "tool": "emit_requirements"},
                              {"part": "repair", "tool": "emit_requirements", "summary": "stories: Field required"},
                              {"part": "repair_no_call", "tool": "emit_requirements", "summary": "no call"},
                              {"part": "no_call", "tool": "emit_requirements", "stop_reason": "end_turn"},
                              {"part": "cut_off"}],
    "prompts/system.j2": [{}],
    "prompts/tasks.j2": [{"issue_number": 7, "title": "Export", "requirements": "{}", "design": "{}",
                          "gate_feedback": [], "user_feedback": "Fewer tasks.", "previous": "{}"}],
    "replies/already_planning.md.j2": [{"state": "design"}],
    "replies/answer.md.j2": [{"question": "Why @bob?", "answer": "Because.\n\n- one\n- two"}],
    "replies/approve_blocked.md.j2": [{"stage": "tasks", "revision": 2}],
    "replies/approve_nothing.md.j2": [{"state": "acknowledged"}],
    "replies/approve_stale.md.j2": [{"stage": "design", "asked": 1, "revision": 2}],
    "replies/approve_wrong_stage.md.j2": [{"stage": "design", "asked": "tasks", "revision": 2}],
    "replies/approved.md.j2": [{"stage": "requirements", "revision": 1, "next_stage": "design"},
                               {"stage": "tasks", "revision": 2, "next_stage": None}],
    "replies/budget.md.j2": [
        {"mode": "add", "amount": "5", "resumed": True, "hit": None, "b": BUDGET_VIEW, "run_state": "running"},
        {"mode": "set", "amount": "20", "resumed": False, "hit": BUDGET_STOP, "b": BUDGET_VIEW,
         "run_state": "paused_budget"},
        {"mode": "show", "amount": None, "resumed": False, "hit": {**BUDGET_STOP, "limit": "installation"},
         "b": {**BUDGET_VIEW, "installation_limit": "100.00"}, "run_state": None}],
    "replies/config_error.md.j2": [{"sha": "f" * 40, "error": explain(reason(
        "config/invalid_yaml", path=".github/omoi.yml", line=2))}],
    "replies/discovery_approved.md.j2": [{"id": 2, "title": "Unicode paths"}],
    "replies/help.md.j2": [{"verbs": VERBS}],
    "replies/invalid.md.j2": [{"raw": "/omoi deploy `x`", "error": reason("command/unknown_verb", verb="'deploy'"),
                               "verbs": VERBS}],
    "replies/no_spec.md.j2": [{"label": "omoi"}],
    "replies/not_an_approver.md.j2": [{"user": "bob"}],
    "replies/nothing_to_revise.md.j2": [{"state": "approved"}, {"state": "design", "asked": "tasks"}],
    "replies/permission_denied.md.j2": [{"user": "mallory", "where": w} for w in (
        "comment", "label", "button", "reopen", "review")] + [{"user": "mallory"}],
    "replies/planning.md.j2": [{}],
    "replies/pr_only_spec.md.j2": [{"verb": "approve"}],
    "replies/rejected.md.j2": [{"reason": "Out of scope."}, {"reason": ""}, {"reason": "", "run_stopped": True}],
    "replies/reply.md.j2": [{"comment_id": 123, "sections": ["✅ Approved **design r2**.", "📋 **Status: tasks**"]}],
    "replies/review_on_pr_only.md.j2": [{}],
    "replies/reviewing.md.j2": [{}],
    "replies/revising.md.j2": [{"stage": "design", "revision": 2}],
    "replies/status.md.j2": [{"state": "tasks", "stages": STAGE_ROWS}, {"state": "acknowledged", "stages": []},
                             *status_samples(STAGE_ROWS)],
    "replies/unavailable.md.j2": [{"verb": "pause"}],
    "ci/agent_prompt.j2": [{"pr": {"number": 9, "title": "Greet"}, "title": "Greet users", "issue": 5, "head": "a" * 40,
                            "verify": ["pytest -q"], "checks": [CI_CHECK]},
                           {"pr": {"number": 9, "title": "Greet"}, "title": "Greet users", "issue": 5, "head": "a" * 40,
                            "verify": [], "checks": [{**CI_CHECK, "title": "", "summary": "", "text": "",
                                                      "annotations": []}]}],
    "ci/commit_message.j2": [{"pr": {"number": 9}, "checks": [CI_CHECK], "key": "ci-1-1", "round": 1}],
    "ci/comment.md.j2": [{"spec_id": 1, "passed": None, "passed_short": "", "rounds": [
                              {**CI_ROUND, "status": "running", "cost": "0.00"}]},
                         {"spec_id": 1, "passed": "c" * 40, "passed_short": "ccccccc", "rounds": [
                              CI_ROUND, {**CI_ROUND, "round": 2, "status": "verify_failed", "fix": None,
                                         "reason": explain(reason("ci/verify_failed", cause=reason(
                                             "task/verify_failed", command="pytest", timed_out=False, exit_code=1,
                                             output="1 failed"))), "tail": "E  assert 1 == 2\n1 failed"},
                              {**CI_ROUND, "round": 3, "status": "no_change", "fix": None},
                              {**CI_ROUND, "round": 3, "status": "failed", "fix": None,
                               "reason": explain(reason("review/agent_stopped", cause=reason("agent/timed_out",
                                                                                             seconds=600)))},
                              {**CI_ROUND, "round": 0, "status": "stopped", "fix": None,
                               "reason": explain(reason("ci/round_limit", rounds=3))}]}],
    "review/agent_prompt.j2": [{"pr": {"number": 9, "title": "Export"}, "threads": THREADS, "notes": [],
                                "result_file": ".omoi-review-result.json", "verify": []},
                               {"pr": {"number": 9, "title": "Export"}, "threads": [], "verify": ["pytest -q"],
                                "notes": [{"author": "alice", "body": "Handle empty names.", "source": "comment"}],
                                "result_file": ".omoi-review-result.json"}],
    "review/applied.md.j2": [{"thread_id": "PRRT_1", "round": "9:1", "sha": "abc1234", "reason": "Used csv.writer.",
                              "excerpt": "-a\n+b"},
                             {"thread_id": "PRRT_1", "round": "9:1", "sha": "abc1234", "reason": "", "excerpt": ""}],
    "review/commit_message.j2": [{"pr": {"number": 9}, "threads": THREADS, "key": "9:1", "notes": []},
                                 {"pr": {"number": 9}, "threads": [], "key": "9:1",
                                  "notes": [{"author": "alice", "body": "x", "source": "review"}]}],
    "review/failed.md.j2": [{"reason": "GitHub answered 502"}],
    "review/needs_human.md.j2": [{"thread_id": "PRRT_2", "round": "9:1", "reason": explain(reason("review/unclear"))},
                                 {"thread_id": "PRRT_2", "round": "9:1", "reason": ""}],
    "review/not_applied.md.j2": [{"thread_id": "PRRT_2", "round": "9:1",
                                  "reason": explain(reason("review/not_a_writer"))},
                                 {"thread_id": "PRRT_2", "round": "9:1", "reason": ""}],
    "review/not_ours.md.j2": [{}],
    "review/nothing.md.j2": [{}],
    "review/summary.md.j2": [{"sha": "abc1234", "counts": {"applied": 1, "not_applied": 1, "needs_human": 0},
                              "threads": 2, "notes": 0, "failure": "", "tail": "", "cost": "0.42"},
                             {"sha": None, "counts": {"applied": 0, "not_applied": 0, "needs_human": 2},
                              "threads": 2, "notes": 0, "failure": "", "tail": "", "cost": None},
                             {"sha": None, "counts": {"applied": 0, "not_applied": 1, "needs_human": 0},
                              "threads": 1, "notes": 1, "cost": None, "tail": "AssertionError\n1 failed",
                              "failure": explain(reason("task/verify_failed", command="pytest -q", timed_out=False,
                                                        exit_code=1, output="1 failed"))},
                             {"sha": "abc1234", "counts": {"applied": 0, "not_applied": 0, "needs_human": 0},
                              "threads": 0, "notes": 1, "failure": "", "tail": "", "cost": None}],
    "review/summary_wrapper.md.j2": [{"round": "9:1", "body": "🔁 **Review feedback addressed**: 1 applied."}],
    "sandbox/notes.j2": [{"part": "truncated", "limit": 1048576}, {"part": "cannot_start", "program": "bwrap",
                                                                    "error": "No such file or directory"}, {"part": "timed_out", "seconds": 300, "killed": True},
                         {"part": "timed_out", "seconds": 2.5, "killed": False}, {"part": "killed",
                                                                                  "why": reason("sandbox/disk_limit",
                                                                                                size_mb=9, limit_mb=5)}],
    "spec/_footer.md.j2": _comments("requirements"),
    "spec/_header.md.j2": _comments("requirements") + _comments("tasks"),
    "spec/commit_message.txt.j2": [{"approved": True, "stage": "design", "revision": 2, "issue_number": 7},
                                   {"approved": False, "stage": "tasks", "revision": 3, "issue_number": 7}],
    "spec/design.md.j2": _comments("design"),
    "spec/failed.md.j2": [{"stage": "design", "reason": "LLMError: <overloaded>"}],
    "spec/file_design.md.j2": [_file("design")],
    "spec/file_requirements.md.j2": [_file("requirements")],
    "spec/file_tasks.md.j2": [_file("tasks")],
    "spec/gate_name.md.j2": [{"gate": g} for g in ("ears_form", "file_plan", "reviewer", "Old stored name")],
    "spec/overflow_link.md.j2": [{"stage": "tasks", "overflow_url": "https://github.com/o/r/blob/b/t.md"},
                                 {"stage": "tasks", "overflow_url": None}],
    "spec/requirements.md.j2": _comments("requirements"),
    "spec/status.md.j2": [{"status": s, "approved_by": "alice", "stage": "design"} for s in documents.STATUSES],
    "spec/tasks.md.j2": _comments("tasks"),
    "spec/truncated.md.j2": [{"overflow_link": "[the full tasks file](https://github.com/o/r/blob/b/t.md)"}],
    "web/base.html.j2": [{}],
    "web/error.html.j2": [{"status_code": c, "reason": r} for c, r in (
        (400, "bad_state"), (400, "bad_code"), (400, "bad_org"), (502, "conversion_failed"), (403, "forbidden"),
        (404, "not_found"), (500, "other"))],
    "web/setup.html.j2": [{"action": "https://github.com/settings/apps/new?state=x", "github_web_url": "https://github.com",
                           "manifest": MANIFEST, "manifest_json": "{\"name\": \"omoi\"}", "org": o}
                          for o in ("octo", "")],
    "web/setup_done.html.j2": [{"app_id": 1, "app_name": "omoi", "env_path": "/srv/omoi/.env",
                                "html_url": "https://github.com/apps/omoi", "install_url": "https://github.com/apps/omoi/installations/new",
                                "webhook_secret_written": w} for w in (True, False)],
    "web/status_installation.html.j2": [
        {"installation_id": 42, "account_login": "octo", "account_type": "Organization", "suspended": s, "deleted": False,
         "known": True, "specs": [{"repo_full_name": "octo/app", "issue_number": 7, "title": "Export", "state": "tasks",
                                   "run_state": "running" if s else "", "updated_at": "2026-12-01", "cost": "0.0100", "link": "/status/octo/app/7?sig=x"}]}
        for s in (False, True)] + [{"installation_id": 43, "account_login": "", "account_type": "", "suspended": False,
                                    "deleted": True, "known": False, "specs": []}],
    "web/status_spec.html.j2": [SPEC_PAGE, {**SPEC_PAGE, "stages": [], "approvals": [], "llm_calls": [],
                                            "last_error": "", "installation_link": ""}] + with_run(SPEC_PAGE),
    "web/status_run.html.j2": RUN_SAMPLES,
    **LIFECYCLE_SAMPLES,
    **ATTEMPT_SAMPLES,
}
