"""The repository's CI, played by a test: another app's check run on a commit of omoi's branch, then
GitHub's `check_suite` or `check_run` `completed` delivery to omoi (tests/fakes/github/rest/ci.py);
and omoi's CI comment and CI rounds read back."""
from __future__ import annotations

from tests.fakes.github.rest.ci import (
    add_check_run,
    check_run_completed_payload,
    check_suite_completed_payload,
)
from tests.support.conversation import deliver


def ci_reports(world, head: str, conclusion: str, *, name: str = "ci / test", output: dict | None = None,
               event: str = "check_suite") -> dict:
    """CI finishes `name` on `head` with `conclusion` and GitHub tells omoi; the check run's JSON."""
    site, fake = world.site, world.github
    run = add_check_run(fake, site.repo, head_sha=head, name=name, conclusion=conclusion, output=output)
    if event == "check_suite":
        payload = check_suite_completed_payload(fake, site.repo, site.installation, head)
    else:
        payload = check_run_completed_payload(fake, site.repo, site.installation, run)
    assert deliver(world, event, payload)[0] == 202
    return run


def ci_comment(world, pr_number: int) -> str:
    """omoi's CI comment on the pull request ('' while there is none)."""
    found = [c["body"] for c in world.github.issue_comments(world.site.repo, pr_number)
             if c["body"].startswith("<!-- omoi:ci ")]
    assert len(found) <= 1, "duplicate CI comments"
    return found[0] if found else ""


def ci_rounds(world) -> list:
    """The CI rounds in omoi's database, oldest first."""
    from sqlalchemy import select

    from app.db.models import CIRound
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        rows = s.scalars(select(CIRound).order_by(CIRound.id)).all()
        for r in rows:
            s.expunge(r)
        return rows


def spent_on(world, purpose: str) -> float:
    """What the llm_calls rows of `purpose` cost (the spec budget counts them: app/execution/budgets.py)."""
    from sqlalchemy import func, select

    from app.db.models import LLMCall
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        return float(s.scalar(select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(LLMCall.purpose == purpose)))
