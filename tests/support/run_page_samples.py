"""Sample data for the run on a spec's status page (templates/web/status_run.html.j2, app/web/run_page.py):
a running run with every kind of entry, and an ended one with nothing in it (tests/support/template_samples.py)."""
from __future__ import annotations

_NOTE = {"task": "T2", "attempt": 1, "source": "guardian", "verdict": "looping", "action": "retry_with_guidance",
         "reason": "it runs `ls` again", "text": "Write the file <now>.", "at": "10:41", "delivered_at": "", "person": False,
         "sender": "guardian"}
_ENTRIES = ([{"role": "assistant", "kind": k, "name": n, "text": x, "is_error": False} for k, n, x in (
    ("text", "", "I will <b>write</b> it."), ("thinking", "", "hmm"), ("tool_use", "Write", '{"file_path": "parse.py"}'))]
    + [{"role": "user", "kind": "tool_result", "name": "", "text": "ok", "is_error": True},
       {"role": "user", "kind": "text", "name": "", "text": "omoi-redirect: stop", "is_error": False},
       {"role": "system", "kind": "init", "name": "", "text": "", "is_error": False},
       {"role": "assistant", "kind": "error", "name": "", "text": "rate_limit", "is_error": False},
       {"role": "result", "kind": "success", "name": "", "text": "Done.", "is_error": False}])
_PERSON = {**_NOTE, "source": "person", "sender": "alice", "person": True, "delivered_at": "10:45"}
_RUN_TASK = {"id": "T1", "title": "Parser", "description": "Parse it.", "status": "done", "kind": "implement", "origin": "plan",
             "depends_on": [], "files": ["parse.py"], "attempts": 1, "cost": "0.1200", "duration": "1m 02s", "error": "",
             "guidance": "", "commit": "d" * 40, "commit_url": "https://github.com/octo/app/commit/" + "d" * 40,
             "started_at": "10:30", "finished_at": "10:31", "heartbeat_at": "10:31",
             "evidence": [{"command": "pytest -q", "exit_code": 0, "tail": ""}], "discoveries": [],
             "attempt_rows": [{"attempt": 1, "latest": True, "notes": [], "transcript": _ENTRIES, "total": 8,
                               "at": "10:31", "cost": "0.1200"}]}
_RUN_TASK2 = {**_RUN_TASK, "id": "T2", "title": "CLI", "status": "running", "kind": "explore", "origin": "discovery",
              "depends_on": ["T1"], "files": [], "attempts": 3, "cost": "0.0000", "duration": "", "commit": "",
              "commit_url": "", "finished_at": "", "error": "verify failed", "guidance": "Smaller steps.",
              "evidence": [{"command": "pytest", "exit_code": 1, "tail": "1 failed"}],
              "attempt_rows": [{"attempt": 1, "latest": False, "notes": [_NOTE], "transcript": _ENTRIES[:2], "total": 90,
                                "at": "10:40", "cost": "0.0100"},
                               {"attempt": 2, "latest": False, "notes": [], "transcript": [], "total": 0, "at": "", "cost": ""},
                               {"attempt": 3, "latest": True, "notes": [_PERSON], "transcript": [], "total": 0, "at": "",
                                "cost": ""}],
              "discoveries": [{"task": "T2", "kind": "bug", "title": "Crash", "description": "x", "evidence": "",
                               "status": "added", "new_task": "T3", "duplicate_of": "", "at": "10:44"}]}
_RUN_TASK3 = {**_RUN_TASK, "id": "T3", "status": "pending", "attempts": 0, "attempt_rows": [], "evidence": [],
              "started_at": "", "commit": "", "commit_url": ""}
RUN_PAGE = {"state": "running", "live": True, "refresh_seconds": 3, "error": "", "started_at": "10:30", "finished_at": "",
            "duration": "15m 00s", "cost": "0.1200", "budget": "5.00", "budget_stop": {},
            "pr_url": "https://github.com/octo/app/pull/9", "pr_number": 9,
            "counts": [("done", 1), ("pending", 1), ("running", 1)], "tasks": [_RUN_TASK, _RUN_TASK2, _RUN_TASK3],
            "levels": [[_RUN_TASK], [_RUN_TASK2], [_RUN_TASK3]], "supervision": [_NOTE],
            "messages": [_PERSON], "discoveries": _RUN_TASK2["discoveries"]}
RUN_PAGE_ENDED = {**RUN_PAGE, "state": "failed", "live": False, "refresh_seconds": 0, "error": "T2 failed twice",
                  "finished_at": "10:50", "budget": "", "budget_stop": {"limit": "spec", "spent_usd": "5.01", "limit_usd": "5.00"},
                  "pr_url": "", "pr_number": 0, "counts": [], "tasks": [], "levels": [], "supervision": [], "messages": [],
                  "discoveries": []}
RUN_SAMPLES = [{"run": RUN_PAGE}, {"run": RUN_PAGE_ENDED}]


def with_run(spec_page: dict) -> list[dict]:
    """The spec page's samples with a run: one going (its script, a refresh without scripts), one ended."""
    return [{**spec_page, "run": RUN_PAGE, "script_nonce": "n0nce", "refresh_url": "/status/o/r/7?exp=1&sig=a"},
            {**spec_page, "run": RUN_PAGE_ENDED}]
