"""Sample data for the templates of a spec's endings, stale stages and refusals (issue 16), merged into
tests/support/template_samples.py SAMPLES."""
from __future__ import annotations

from tests.support.steering_samples import STEERING_SAMPLES


def status_samples(stage_rows: list[dict]) -> list[dict]:
    """`/omoi status` in each state a spec and its run can be in."""
    return [{"state": st, "stages": stage_rows, "run_state": rs, "done": 1, "total": 3, "running": 1, "failed": 0,
             "pr_number": 8, "stopped_from": "approved"}
            for st, rs in (("approved", "running"), ("stopped", "cancelled"), ("complete", "merged"),
                           ("approved", "closed"), ("stale", None), ("approved", "failed"), ("approved", None),
                           ("planning", None), ("design", None), ("blocked", None), ("approved", "paused_budget"), ("approved", "paused"))]


LIFECYCLE_SAMPLES: dict[str, list] = {  # replaces template_samples' own entry where both have one
    "checks/spec_title.j2": [{"state": s} for s in ("approved", "blocked", "rejected", "design", "complete",
                                                     "stopped", "stale", "planning", "failed")],
    "replies/not_in_review.md.j2": [{"verb": v, "where": w} for v, w in (("approve", "review"),
                                                                          ("ask", "review comment"))],
    "replies/button_noop.md.j2": [{"spec_id": 3, "what": "button", "issue_number": 5, "action": a, "state": s,
                                   "user": "alice"} for a, s in (("cancel", "not-running"), ("retry", "running"))],
    "replies/approve_unseen.md.j2": [{"stage": "design", "revision": 2}],
    "replies/busy_writing.md.j2": [{"verb": "approve"}, {"verb": "revise"}],
    "replies/spec_ended.md.j2": [{"state": "complete", "pr_number": 8}, {"state": "stopped", "pr_number": None}],
    "replies/kept.md.j2": [{"kept": [("requirements", 2)], "start": False},
                           {"kept": [("requirements", 2), ("design", 1)], "start": True}],
    "replies/resumed.md.j2": [{"resumed_to": "design", "run_state": None, "done": 0, "total": 0},
                              {"resumed_to": "approved", "run_state": "running", "done": 1, "total": 3}],
    "replies/ended_complete.md.j2": [{"spec_id": 3, "what": "complete", "issue_number": 5, "pr_number": 8,
                                      "user": "alice", "done": 3, "total": 3, "cost": "$1.20", "took": "2h 05m",
                                      "branch": "omoi/issue-5-greet"}],
    "replies/ended_pr_closed.md.j2": [{"spec_id": 3, "what": "closed", "issue_number": 5, "pr_number": 8,
                                       "user": "alice", "done": 1, "total": 3, "cost": "$0.20", "took": "5m 02s",
                                       "branch": "omoi/issue-5-greet", "reopened": r} for r in (False, True)],
    "replies/stopped.md.j2": [{"spec_id": 3, "what": "stopped", "issue_number": 5, "why": w, "user": "alice",
                               "had_run": h, "resumed": r} for w, h, r in (("issue_closed", True, False),
                                                                           ("label_removed", False, False),
                                                                           ("", True, True))],
    "replies/issue_edited.md.j2": [{"spec_id": 3, "what": "edited", "issue_number": 5,
                                    "stale": [("requirements", 2), ("design", 1)], "waits": True},
                                   {"spec_id": 3, "what": "edited", "issue_number": 5,
                                    "stale": [("requirements", 1)], "waits": False}],
    **STEERING_SAMPLES,  # issue 16 items 1 and 5
}
