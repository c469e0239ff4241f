"""Sample data for the templates of steering a run and budgets that keep work (issue 16 items 1 and 5),
merged into tests/support/template_samples.py SAMPLES through the lifecycle samples."""
from __future__ import annotations

_OUTCOMES = ("paused", "resumed", "stopped", "retrying", "told", "not-running", "unknown-task", "not-stoppable",
             "no-run", "paused_budget", "already-paused", "merged")

STEERING_SAMPLES: dict[str, list] = {
    "replies/steering.md.j2": [{"verb": v, "outcome": o, "task": "T3", "user": "alice"}
                               for v, o in [("pause", o) for o in _OUTCOMES] + [("resume", "running")]],
    "prompts/checkpoint.j2": [{}],
    "execution/wip_commit.txt.j2": [{"kind": k, "at": "2026-12-01 10:00 UTC", "spec_id": 3, "issue_number": 5,
                                     "task": {"id": "T2", "title": "Write bye.py"}}
                                    for k in ("paused", "task", "task_minutes", "spec")],
    "prompts/person_message.j2": [{"message": "Use the helper in util.py.", "user": "alice"}],
}

STEERING_REASONS: dict[str, list[dict]] = {
    "run/paused": [{"user": "alice"}],
    "run/waiting_on_stopped": [{"tasks": ["T3"]}, {"tasks": ["T2", "T3"]}],
    "task/stopped_by_person": [{"user": "alice"}],
    "task/checkpoint": [{"kind": k, "sha": sha} for k, sha in (("paused", "0123456789abcdef"), ("task", None),
                                                                 ("task_minutes", "0123456789abcdef"), ("spec", None))],
    "command/needs_task": [{"verb": "tell", "token": None}, {"verb": "stop", "token": "'T3,'"}],
}
