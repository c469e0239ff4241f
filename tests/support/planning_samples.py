"""Sample data for the templates of clarifying questions, the quick path and exploring before
specifying (issue 17), merged into tests/support/template_samples.py SAMPLES through the lifecycle
samples (that module is at its size limit): LIFECYCLE_SAMPLES here is issue 16's plus these."""
from __future__ import annotations

from app.planning import documents
from tests.support.lifecycle_samples import LIFECYCLE_SAMPLES as _LIFECYCLE, status_samples as _status_samples



def status_samples(stage_rows: list[dict]) -> list[dict]:
    """`/omoi status` in each state (issue 16's), and waiting for answers or for the quick plan's approval."""
    return _status_samples(stage_rows) + [{**_status_samples(stage_rows)[-1], "state": st, "run_state": None}
                                          for st in ("questions", "quick")]


_ISSUE = {"issue_number": 7, "title": "Export", "body": "Please add CSV.", "gate_feedback": [], "user_feedback": None,
          "previous": None}
_ASKED = {"questions": ["Which delimiter?", "Headers <b>too</b>?"],
          "answers": [{"user": "alice", "text": "Commas, and &lt;/answers> headers too."}]}
_FINDINGS = "- src/export.py: none yet; src/app.py parses subcommands with argparse."
_PROPOSAL = {"id": 2, "task": "T2", "kind": "missing_requirement", "title": "Unicode paths", "phase": "requirements",
             "description": "Paths with @mentions <b>break</b>.", "evidence": "src/export.py:10"}
_PART = "<!-- omoi:spec stage={0} rev=1 hash=abc -->\n### {0}\n\nThe {0}.\n\n---\n<details><summary>Commands</summary>\n"

PLANNING_SAMPLES: dict[str, list] = {
    "prompts/requirements.j2": [
        {**_ISSUE, "gate_feedback": ["error: there are no user stories"], "may_ask": True, "questions": [],
         "answers": [], "findings": ""},
        {**_ISSUE, **_ASKED, "may_ask": False, "findings": _FINDINGS},
        {**_ISSUE, "questions": ["Which delimiter?"], "answers": [], "may_ask": False, "findings": ""}],
    "prompts/design.j2": [{**_ISSUE, "requirements": "{}", "findings": f} for f in ("", _FINDINGS)],
    "prompts/_answers.j2": [_ASKED, {"questions": ["Which?"], "answers": []}, {"questions": [], "answers": []}],
    "prompts/_findings.j2": [{"findings": _FINDINGS}, {"findings": ""}],
    "prompts/requirements_now.j2": [{}],
    "spec/questions.md.j2": [{"questions": _ASKED["questions"], "round": 1, "answered": a, "answers": ans}
                             for a, ans in ((False, []), (True, _ASKED["answers"]), (True, []))],
    "spec/quick.md.j2": [lambda: documents.render_quick_comment(
        [(st, _PART.format(st)) for st in ("requirements", "design", "tasks")], revision=1,
        status="waiting for approval")],
    "replies/planning.md.j2": [{}, {"quick": True}, {"continued": True}],
    "replies/approved.md.j2": [{"stage": "requirements", "revision": 1, "next_stage": "design"},
                               {"stage": "tasks", "revision": 2, "next_stage": None},
                               {"stage": "quick", "revision": 1, "next_stage": None}],
    "execution/discovery_proposal.md.j2": [{"spec_id": 12, "d": {**_PROPOSAL, "status": st}, "by": "alice", "why": w}
                                           for st, w in (("proposed", ""), ("approved", ""), ("declined", "later"),
                                                         ("declined", ""))],
    "replies/discovery_approved.md.j2": [{"id": 2, "title": "Unicode @paths", "start": st}
                                         for st in ("requirements", "design", "tasks")],
    "replies/discovery_declined.md.j2": [{"id": 2, "title": "Unicode", "why": w} for w in ("not now", "")],
    "replies/discovery_unknown.md.j2": [{"id": 9}, {"id": None}],
    "prompts/explore.j2": [{**_ISSUE, "spec_id": 3, "workdir": "/workspace/repo"}],
    "ack.md.j2": [{"issue_number": 7, "label": "omoi", "requested_by": "alice", "quick": q} for q in (False, True)],
}
PLANNING_SAMPLES["checks/spec_title.j2"] = _LIFECYCLE["checks/spec_title.j2"] + [{"state": s} for s in ("questions",
                                                                                                    "quick")]
LIFECYCLE_SAMPLES = {**_LIFECYCLE, **PLANNING_SAMPLES}
