"""What a failed attempt leaves for the next one, and its work kept on a side ref.

During an attempt the task runner fills `Notes` (the patch and its base, the agent's own account, the
failing verify output, the validator's reasons). Before omoi's host clone is cleaned up, `preserve`
commits a failed attempt's patch there (inspected by app/execution/policy.py like any commit: a patch
the policy refuses is not pushed) and pushes it to `refs/heads/omoi/attempts/<spec>-<task>-a<N>` with
omoi's token; the sandbox never holds a credential. `record` stores the attempt (app/db/attempt_models.py)
and `previous` gives the next attempt's prompt the last one's feedback, trimmed, redacted and sanitised,
as data (templates/execution/_attempt_feedback.md.j2).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import func, select

from app.config import Settings
from app.db.attempt_models import TaskAttempt
from app.db.session import session_scope
from app.execution import policy
from app.execution.gitwork import Clone, GitError
from app.execution.leases import Attempt, Lease
from app.observability.logs import get_logger
from app.text.redaction import redactor_for
from app.text.rendering import explain, render, stored
from app.text.sanitize import sanitize_untrusted

log = get_logger("omoi.attempts")
VERIFY_CHARS, ACCOUNT_CHARS, DIFFSTAT_CHARS, VALIDATION_CHARS = 3000, 2000, 1500, 2000
SIDE_PREFIX = "omoi/attempts/"
# The data tags of the task prompt: text inside one cannot close it (sanitize_untrusted knows the others).
_OWN_TAGS = re.compile(r"[<\uff1c\ufe64](\s*/?\s*(?:task|previous_attempt|verify_output|agent_account|diffstat|"
                       r"validation|repository_guidance|guidance_file|diagnosis|diff|"
                       r"criteria|verify_results|acceptance_criteria|design_summary|guidance)\b)", re.IGNORECASE)


@dataclass
class Notes:
    """Filled by the task runner while the attempt goes on."""

    seq: int = 1
    patch: str = ""
    base: str | None = None
    account: str = ""
    verify: str = ""
    validation: str = ""
    diffstat: str = ""
    side_ref: str | None = None
    failed: bool = False  # the patch did not make it: keep it on the side ref
    secrets: list[str] = field(default_factory=list)


def as_data(text: str | None, limit: int, settings: Settings, secrets=(), *, keep_head: bool = False) -> str:
    """Untrusted text for a prompt's data block: redacted, sanitised, no way out of its tags, bounded (the
    tail kept: the end of an output says most; the head with `keep_head`)."""
    clean = redactor_for(settings, secrets).text(text or "")
    clean = _OWN_TAGS.sub(r"&lt;\1", sanitize_untrusted(clean)).strip()
    if len(clean) <= limit:
        return clean
    return clean[:limit] + "…" if keep_head else "…" + clean[-limit:]


def next_seq(s, spec_id: int, task_id: str) -> int:
    last = s.scalar(select(func.max(TaskAttempt.seq)).where(TaskAttempt.spec_id == spec_id,
                                                             TaskAttempt.task_id == task_id))
    return (last or 0) + 1


def previous(s, settings: Settings, spec_id: int, task_id: str) -> dict | None:
    """The latest failed attempt of the task, as the next attempt's prompt shows it."""
    row = s.scalars(select(TaskAttempt).where(TaskAttempt.spec_id == spec_id, TaskAttempt.task_id == task_id)
                    .order_by(TaskAttempt.seq.desc()).limit(1)).first()
    if row is None or row.ok:
        return None
    fb = row.feedback or {}
    return {"seq": row.seq, "why": as_data(explain(row.error, row.error_params), 600, settings),
            "verify": as_data(fb.get("verify"), VERIFY_CHARS, settings),
            "account": as_data(fb.get("account"), ACCOUNT_CHARS, settings),
            "diffstat": as_data(fb.get("diffstat"), DIFFSTAT_CHARS, settings),
            "validation": as_data(fb.get("validation"), VALIDATION_CHARS, settings), "side_ref": row.side_ref}


def failing_output(evidence: list[dict]) -> str:
    """The output of the verify (or setup) command that failed."""
    failed = [e for e in evidence if e.get("exit_code") not in (0, None) or e.get("timed_out")]
    if not failed:
        return ""
    e = failed[-1]
    return f"$ {e.get('command')}\n(exit {e.get('exit_code')}{', timed out' if e.get('timed_out') else ''})\n{e.get('tail', '')}"


def side_ref_name(spec_id: int, task_id: str, seq: int) -> str:
    return f"{SIDE_PREFIX}{spec_id}-{task_id}-a{seq}"


def preserve(clone: Clone, notes: Notes, lease: Lease, limits: policy.Limits | None, secrets=()) -> None:
    """Push a failed attempt's patch to its side ref from omoi's host clone. Blocking; never raises."""
    if not notes.patch.strip() or not notes.base:
        return
    try:
        notes.diffstat = clone.out("apply", "--stat", "-", stdin=notes.patch.encode())[-DIFFSTAT_CHARS:]
        message = render("execution/attempt_commit.txt.j2", task=lease.task_id, spec_id=lease.spec_id, seq=notes.seq)
        sha = clone.commit_patch(notes.base, notes.patch, message, limits, list(secrets))
        ref = side_ref_name(lease.spec_id, lease.task_id, notes.seq)
        proc = clone.git("push", "-q", "--porcelain", "origin", f"{sha}:refs/heads/{ref}", auth=True, check=False)
        if proc.returncode != 0:
            log.warning("attempt_side_ref_rejected", ref=ref, error=clone._clean(proc.stderr + proc.stdout))
            return
        notes.side_ref = ref
        log.info("attempt_side_ref_pushed", spec_id=lease.spec_id, task=lease.task_id, ref=ref, commit=sha)
    except (policy.Refused, GitError, OSError) as exc:  # refused by the policy or git failed: nothing pushed
        log.warning("attempt_side_ref_skipped", spec_id=lease.spec_id, task=lease.task_id,
                    error=clone._clean(str(exc).encode()))


def record(settings: Settings, lease: Lease, result: Attempt, notes: Notes) -> int | None:
    """Store the attempt for the next one (a lost attempt is not recorded); its row id."""
    if result.lost or result.budget_stop:
        return None
    error, params = stored(result.reason)
    verify = notes.verify or ("" if result.ok else failing_output(result.evidence))
    feedback = {"verify": as_data(verify, VERIFY_CHARS, settings, notes.secrets),
                "account": as_data(notes.account, ACCOUNT_CHARS, settings, notes.secrets),
                "diffstat": notes.diffstat, "validation": as_data(notes.validation, VALIDATION_CHARS, settings)}
    with session_scope(settings.database_url) as s:
        row = TaskAttempt(spec_id=lease.spec_id, task_id=lease.task_id, seq=notes.seq, ok=result.ok, error=error,
                          error_params=params, feedback=feedback, side_ref=notes.side_ref)
        s.add(row)
        s.flush()
        return row.id

