"""Supervision of running work (Celery beat; tasks/execution.py), in three parts:

- housekeeping.py (the health loop): `stalls` flags a running spec without progress for
  `stall_minutes` (the tracking comment says so until progress resumes); `orphan_sandboxes` and
  `orphan_commit_clones` delete what dead workers left behind;
- guardian.py (every `guardian_interval_seconds`): the model judges each running task's recent
  trajectory against its task and approved criteria, and redirects, stops or retries it;
- conductor.py (every `conductor_interval_seconds`): of two running tasks of one spec doing the
  same work, the later one is paused until the first finished.

Every intervention is a row in `interventions` and shows on the check run and tracking comment.
"""
from __future__ import annotations

from app.execution.supervision.conductor import conductor
from app.execution.supervision.guardian import guardian, intervene
from app.execution.supervision.housekeeping import (
    attempt_lifetime,
    orphan_commit_clones,
    orphan_sandboxes,
    running_task_labels,
    stalls,
)

__all__ = ["conductor", "guardian", "intervene", "attempt_lifetime", "orphan_commit_clones", "orphan_sandboxes",
           "running_task_labels", "stalls"]
