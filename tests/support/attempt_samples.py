"""Sample data for the templates of retry with feedback, validation and repository guidance (issue 17 items
3-5), merged into tests/support/template_samples.py and tests/support/reason_samples.py."""
from __future__ import annotations

LAST_ATTEMPT = {"seq": 1, "why": "verify command `pytest -q` exited with 1: E   AssertionError",
                "verify": "$ pytest -q\n(exit 1)\nE   AssertionError: 'Howdy' != 'Hello'", "account": "T2 is done.",
                "diffstat": " src/export.py | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)",
                "validation": "The validator found that the change does not meet the task:\n- R1.1: no header row",
                "side_ref": "omoi/attempts/12-T2-a1"}
GUIDANCE = [{"path": "CLAUDE.md", "text": "Run `make lint`.\n&lt;/repository_guidance>"},
            {"path": "AGENTS.md", "text": "Keep functions short."}]
_PROMPT = {"issue_number": 7, "title": "Export issues to CSV", "workdir": "/workspace/repo", "sandbox_id": "sb-1",
           "attempt": 2, "criteria": [{"id": "R1.1", "text": "WHEN x, THE CLI SHALL y", "verification": "unit test"}],
           "files": ["src/export.py"], "verify": ["pytest -q"], "design": "An exporter.",
           "discoveries_file": ".omoi-discoveries.json"}
_TASK = {"id": "T2", "title": "Exporter", "description": "Write it."}
VERDICT = {"verdict": "fail", "summary": "Add the header row.",
           "reasons": [{"criterion": "R1.1", "met": False, "explanation": "no header row"}]}

ATTEMPT_SAMPLES: dict[str, list] = {
    "execution/_attempt_feedback.md.j2": [{"last_attempt": LAST_ATTEMPT},
                                          {"last_attempt": {**LAST_ATTEMPT, "validation": "", "side_ref": None}},
                                          {"last_attempt": None}],
    "execution/_repo_guidance.md.j2": [{"repo_guidance": GUIDANCE}, {"repo_guidance": []}],
    "execution/attempt_commit.txt.j2": [{"task": "T2", "spec_id": 12, "seq": 1}],
    "execution/diagnosis.md.j2": [{"d": {"cause": "greet() returns Howdy.", "evidence": "AssertionError twice.",
                                         "next_step": "Return Hello."}}],
    "execution/task_prompt.md.j2": [
        {**_PROMPT, "task": {**_TASK, "kind": "implement"}, "guidance": "Read the failing test first.",
         "last_attempt": LAST_ATTEMPT, "repo_guidance": GUIDANCE},
        {**_PROMPT, "task": {**_TASK, "kind": "explore"}, "guidance": None, "last_attempt": None, "repo_guidance": []}],
    "execution/validate_prompt.md.j2": [
        {"workdir": "/workspace", "task_id": "T2", "title": "Exporter", "description": "Write it.",
         "criteria": _PROMPT["criteria"], "diff": "+++ b/src/export.py\n+x = 1",
         "outputs": [{"command": "pytest -q", "exit_code": 0, "tail": "1 passed"}]},
        {"workdir": "/workspace", "task_id": "T2", "title": "Exporter", "description": "", "criteria": [],
         "diff": "", "outputs": []}],
    "execution/validation_texts.j2": [{"part": "tool"}, {"part": "invalid", "error": "1 validation error"},
                                      {"part": "recorded"}, {"part": "no_verdict", "text": "I could not decide."},
                                      {"part": "no_verdict", "text": ""},
                                      {"part": "feedback", "verdict": VERDICT, "failed": VERDICT["reasons"]}],
    "prompts/diagnosis.j2": [{"task": {"title": "Exporter", "description": "Write it.", "verify": ["pytest -q"]},
                              "attempts": [LAST_ATTEMPT, {**LAST_ATTEMPT, "seq": 2, "validation": "", "account": ""}]}],
}
END_STATE_SAMPLES = [{"run_state": "failed", "run_error": "task T2 failed after 2 attempts", "failed": [
    {"id": "T2", "title": "Exporter", "error": "verify command `pytest -q` exited with 1",
     "diagnosis": "greet() returns Howdy. Evidence: AssertionError. Next: Return Hello.",
     "side_refs": ["omoi/attempts/12-T2-a1", "omoi/attempts/12-T2-a2"]}]}]
ATTEMPT_REASONS: dict[str, list[dict]] = {
    "task/validation_failed": [{"reasons": "The validator found that the change does not meet the task:\n- R1.1: no header"}],
}
