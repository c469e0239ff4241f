"""How a run shows on GitHub: the branch and draft pull request, the `omoi / implement` check run,
one tracking comment on the issue. All of it is rendered from the database after every change.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from decimal import Decimal

import gidgethub
from sqlalchemy import select

from app.config import Settings
from app.db.attempt_models import report_rows
from app.db.models import Intervention, IssueLock, Spec, SpecStage, SpecTask
from app.db.session import session_scope
from app.execution import ci_checks, discovery
from app.github import comments, repo_vars
from app.github.checks import upsert_check_run
from app.github import cache
from app.github.repo_files import branch_known, branch_name, ensure_branch
from app.db.locks import clear, owner_id, release, try_acquire
from app.observability.logs import get_logger
from app.execution.task_ids import task_number
from app.text.rendering import GITHUB_BODY_LIMIT, explain, render, render_line
from app.planning.schemas import Design, Requirements
from app.timeutil import as_utc, utc_now
from app.text import markers
from app.web.links import run_status_url

log = get_logger("omoi.run_report")
CHECK_NAME = "omoi / implement"
CONCLUSIONS = {"succeeded": "success", "failed": "failure", "cancelled": "cancelled",
               "paused_budget": "action_required", "paused": "action_required", "merged": "success",
               "closed": "neutral"}


def check_action(identifier: str) -> dict:
    """A button of the check run (its words: templates/execution/check_action.j2); GitHub sends the
    identifier back in a `check_run.requested_action` event (app/events/checks.py)."""
    return {"label": render_line("execution/check_action.j2", action=identifier, part="label"),
            "description": render_line("execution/check_action.j2", action=identifier, part="description"),
            "identifier": identifier}




def tracking_marker(spec_id: int) -> str:
    return markers.RUN.prefix(spec=spec_id)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _approved(s, spec_id: int, stage: str):
    row = s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id, SpecStage.stage == stage,
                                            SpecStage.status == "approved")
                    .order_by(SpecStage.revision.desc()).limit(1)).first()
    if row is None:
        return None
    return (Requirements if stage == "requirements" else Design).model_validate(row.document)


def run_view(settings: Settings, spec_id: int) -> dict:
    """Everything the templates show, read from the database in one go."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        tasks = sorted(s.scalars(select(SpecTask).where(SpecTask.spec_id == spec_id)).all(),
                       key=lambda t: task_number(t.task_id))
        requirements = _approved(s, spec_id, "requirements")
        design = _approved(s, spec_id, "design")
        web = settings.github_web_url
        started, finished = spec.run_started_at, spec.run_finished_at
        # No clock in a body while the run goes on (a body that changes every second is a write every
        # tick): a running run shows when it started; a finished one how long it took.
        elapsed = (as_utc(finished) - as_utc(started)).total_seconds() if started and finished else None
        rows = [{
            "id": t.task_id, "title": t.title, "status": t.status, "attempts": t.attempts,
            "covers": list(t.covers or []), "depends_on": list(t.depends_on or []), "verify": list(t.verify or []),
            "commit": t.commit_sha, "commit_short": (t.commit_sha or "")[:7],
            "commit_url": f"{web}/{spec.repo_full_name}/commit/{t.commit_sha}" if t.commit_sha else None,
            "cost": f"${Decimal(t.cost_usd or 0):.4f}", "duration": _duration(t.duration_s or 0),
            "error": explain(t.error, t.error_params), "evidence": list(t.evidence or []),
        } for t in tasks]
        kept = report_rows(s, spec_id)  # failed work on side refs, the diagnosis
        for r in rows:
            r.update(kept.get(r["id"], {"side_refs": [], "diagnosis": None}))
        total_cost = sum((Decimal(t.cost_usd or 0) for t in tasks), Decimal(0))
        trace = []
        if requirements is not None:
            for story in requirements.stories:
                for c in story.criteria:
                    covering = [r for r in rows if c.id in r["covers"]]
                    trace.append({"id": c.id, "text": c.text, "tasks": covering})
        counts = {k: sum(1 for r in rows if r["status"] == k)
                  for k in ("done", "running", "pending", "failed", "cancelled", "stopped")}
        return {
            "spec_id": spec.id, "full_name": spec.repo_full_name, "issue_number": spec.issue_number,
            "title": spec.title, "branch": spec.branch, "run_state": spec.run_state,
            "run_error": explain(spec.run_error, spec.run_error_params),
            "pr_number": spec.pr_number, "check_id": spec.implement_check_run_id,
            "check_sha": spec.implement_check_sha, "comment_id": spec.tracking_comment_id,
            "published": spec.published,
            "tasks": rows, "counts": counts, "total": len(rows),
            "elapsed": _duration(elapsed) if elapsed is not None else None,
            "started": as_utc(started).strftime("%Y-%m-%d %H:%M UTC") if started else "",
            "cost": f"${total_cost:.4f}", "trace": trace,
            "summary": requirements.summary if requirements else "",
            "overview": design.overview if design else "",
            "failed": [r for r in rows if r["status"] == "failed"],
            "issue_url": f"{web}/{spec.repo_full_name}/issues/{spec.issue_number}",
            "pr_url": f"{web}/{spec.repo_full_name}/pull/{spec.pr_number}" if spec.pr_number else None,
            "max_attempts": settings.task_max_attempts,
            **_supervision_view(s, settings, spec),
        }


def _supervision_view(s, settings: Settings, spec: Spec) -> dict:
    """Budget stop, stall notice, discoveries and interventions (app/execution/budgets.py, discovery.py,
    supervision/)."""
    interventions = [{"task": i.task_id, "attempt": i.attempt, "source": i.source, "verdict": i.verdict,
                      "action": i.action, "reason": explain(i.reason, i.reason_params), "guidance": i.guidance,
                      "delivered": i.delivered_at is not None}
                     for i in s.scalars(select(Intervention).where(Intervention.spec_id == spec.id)
                                        .order_by(Intervention.id))]
    stalled = None
    if spec.run_state == "running" and spec.stall_reported_at is not None:
        stalled = _duration((utc_now() - as_utc(spec.stall_reported_at)).total_seconds() + settings.stall_minutes * 60)
    return {"budget_stop": spec.budget_stop if spec.run_state == "paused_budget" else None, "stalled": stalled,
            "discoveries": discovery.views(s, spec.id), "interventions": interventions,
            "max_discovered": settings.max_discovered_tasks_per_spec}


# --- set-up ---------------------------------------------------------------------------------


async def ensure_branch_and_pr(gh, settings: Settings, spec_id: int, *, pr: bool = True) -> tuple[str, dict]:
    """The spec's branch exists (from the default branch head if it was never created); a draft pull
    request is open for it if there is anything to compare (unless not `pr`: the first publish of a
    running run opens it). Returns (branch, repository JSON)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if not spec.branch:
            spec.branch = branch_name(spec.issue_number, spec.title)
        full_name, branch = spec.repo_full_name, spec.branch
    repo = await gh.getitem("/repos/{owner}/{repo}", url_vars=repo_vars(full_name))  # from omoi's records
    default = repo.get("default_branch") or "main"
    if not branch_known(gh, full_name, branch):  # the spec files usually created it already
        ref = await gh.getitem("/repos/{owner}/{repo}/git/ref/{ref}",
                               url_vars={**repo_vars(full_name), "ref": f"heads/{default}"})
        await ensure_branch(gh, full_name, branch, ref["object"]["sha"])
    if pr:
        await _ensure_pr(gh, settings, spec_id, full_name, branch, default)
    return branch, repo


async def _ensure_pr(gh, settings: Settings, spec_id: int, full_name: str, branch: str, base: str) -> int | None:
    with session_scope(settings.database_url) as s:
        known = s.get(Spec, spec_id).pr_number
    if known:
        return known
    owner = full_name.split("/", 1)[0]
    number = created_body = None  # opened directly: one of an earlier attempt answers 422 and is listed then
    if number is None:
        view = run_view(settings, spec_id)
        try:
            body = _pr_body(view)
            created = await gh.post("/repos/{owner}/{repo}/pulls", url_vars=repo_vars(full_name), data={
                "title": render("execution/pr_title.j2", **view).strip(), "head": branch, "base": base,
                "body": body, "draft": True, "maintainer_can_modify": True,
            })
            number, created_body = created["number"], body
        except gidgethub.BadRequest as exc:
            if exc.status_code != 422:
                raise
            # Nothing to compare yet (no commit on the branch), or a PR was opened meanwhile.
            async for pr in gh.getiter("/repos/{owner}/{repo}/pulls{?head,state}",
                                       url_vars={**repo_vars(full_name), "head": f"{owner}:{branch}", "state": "open"}):
                number = pr["number"]
                break
            if number is None:
                log.info("pr_deferred", spec_id=spec_id, reason=str(exc)[:200])
                return None
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec.pr_number != number and created_body is not None:  # what it says now: no edit to follow
            spec.published = {**(spec.published or {}), "pr": _digest(number, created_body), "pr_at": time.time()}
        spec.pr_number = number
    return number


def _digest(*parts) -> str:
    """What was sent, in 16 bytes: compared with the next rendering to skip a write that changes nothing."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _pr_body(view: dict) -> str:
    body = render("execution/pr_body.md.j2", **view)
    if len(body) > GITHUB_BODY_LIMIT:
        body = render("execution/pr_body.md.j2", **{**view, "tasks": [{**t, "evidence": []} for t in view["tasks"]]})
    return body[:GITHUB_BODY_LIMIT]


# --- publishing -------------------------------------------------------------------------------


PUBLISH_WAIT_SECONDS = 3  # a worker slot never waits long: the holder publishes again for us
# A publish takes a second or two; a worker killed while publishing holds the lock this long at most,
# and then the health sweep publishes what was wanted meanwhile (publishes_wanted below).
PUBLISH_LOCK_SECONDS = 30
# While a run goes on, each of its renderings is edited at most this often (see _publish).
PUBLISH_SPACING_SECONDS = 10
RENDERINGS = ("comment", "pr", "check")  # what a publish edits, each with its `<kind>_at` in `specs.published`


async def publish(gh, settings: Settings, spec_id: int) -> None:
    """Re-render the check run, the tracking comment and the pull request body (one publisher at a time).

    A caller that finds another publisher busy for more than a moment leaves a "wanted" mark and returns
    (a worker killed while holding the lock must not hold every pool slot, and with them lease recovery,
    until the lock expires). A publisher looks for the mark after it released the lock and publishes
    again if it finds one; a caller that left a mark tries the lock once more after leaving it. Either
    way the newest state reaches GitHub."""
    if _held_back(settings, spec_id):
        return
    key, wanted, owner = f"publish:spec:{spec_id}", f"publish-wanted:spec:{spec_id}", owner_id()
    for _ in range(5):
        if not await _acquire(key, owner, PUBLISH_WAIT_SECONDS):
            try_acquire(wanted, owner, 600)
            if not try_acquire(key, owner, PUBLISH_LOCK_SECONDS):  # the holder will see the mark once it has released
                log.info("publish_deferred_busy", spec_id=spec_id)
                return
        try:
            clear(wanted)
            await _publish(gh, settings, spec_id)
        finally:
            release(key, owner)
        if not clear(wanted):  # nobody asked for a newer state meanwhile
            return


def _holding(state: str | None, stalled: bool, sent: dict) -> bool:
    """While the run goes on, each rendering is edited at most every PUBLISH_SPACING_SECONDS: the changes
    in between collapse into the next publish (a health tick). A stall notice (or its clearing) and the
    run's end are never held back."""
    return state == "running" and stalled == sent.get("stalled", False)


def _due(sent: dict, kind: str, hold: bool, now: float) -> bool:
    return not hold or now - sent.get(f"{kind}_at", 0) >= PUBLISH_SPACING_SECONDS


def _held_back(settings: Settings, spec_id: int) -> bool:
    """Every rendering exists and none is due (`_holding`, `_due`): `_publish` would send nothing. Known
    from the spec's row alone, without the lock or reading the whole run (every finished attempt
    publishes; most of them are held back)."""
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        if spec is None or not (spec.pr_number and spec.tracking_comment_id and spec.implement_check_run_id):
            return False
        sent, now = spec.published or {}, time.time()
        hold = _holding(spec.run_state, spec.run_state == "running" and spec.stall_reported_at is not None, sent)
        return hold and not any(_due(sent, kind, hold, now) for kind in RENDERINGS)


def publishes_wanted(settings: Settings) -> list[int]:
    """Specs whose newest state someone asked to publish while another publisher held the lock, and
    whose lock is free now (released, or left to expire by a killed worker): the health sweep publishes
    them, so a finished run never keeps the state of a publisher that died."""
    now = utc_now()
    with session_scope(settings.database_url) as s:
        marks = s.scalars(select(IssueLock.key).where(IssueLock.key.like("publish-wanted:spec:%"))).all()
        held = set(s.scalars(select(IssueLock.key).where(IssueLock.key.like("publish:spec:%"),
                                                          IssueLock.expires_at >= now)).all())
    return sorted(int(k.rsplit(":", 1)[1]) for k in marks if f"publish:spec:{k.rsplit(':', 1)[1]}" not in held)


async def _acquire(key: str, owner: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not try_acquire(key, owner, PUBLISH_LOCK_SECONDS):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


_READY_FOR_REVIEW = """
mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }
"""


async def _ready_for_review(gh, spec_id: int, pr: dict) -> None:
    """Every task done and verified: the draft becomes a pull request ready for review (REST cannot
    change a draft; GraphQL can). A failure leaves it a draft and is logged, never fatal."""
    try:
        await gh.graphql(_READY_FOR_REVIEW, id=pr["node_id"])
        log.info("pull_request_ready_for_review", spec_id=spec_id, pr=pr.get("number"))
    except Exception as exc:  # noqa: BLE001 - the run's result is already published
        log.warning("pull_request_ready_failed", spec_id=spec_id, error=exc.__class__.__name__)


async def _publish(gh, settings: Settings, spec_id: int) -> None:
    view = run_view(settings, spec_id)
    if view["run_state"] is None or not view["branch"]:
        return
    full_name, branch = view["full_name"], view["branch"]
    if not view["pr_number"] and view["run_state"] == "running":
        repo = await gh.getitem("/repos/{owner}/{repo}", url_vars=repo_vars(full_name))
        if await _ensure_pr(gh, settings, spec_id, full_name, branch, repo.get("default_branch") or "main"):
            view = run_view(settings, spec_id)
    state, check_id, sent = view["run_state"], view["check_id"], dict(view["published"] or {})
    # What does not exist yet is created at once; the rest waits its turn (`_due`).
    now, hold = time.time(), _holding(state, bool(view["stalled"]), sent)

    def due(kind: str) -> bool:
        return _due(sent, kind, hold, now)

    if view["comment_id"] and check_id and not any(due(k) for k in RENDERINGS):
        return
    sent["stalled"] = bool(view["stalled"])
    # The check run lives on the branch head omoi pushed last (its records; the ref only without one).
    head = cache.pushed_head(settings.database_url, full_name, branch)
    if head is None:
        ref = await gh.getitem("/repos/{owner}/{repo}/git/ref/{ref}",
                               url_vars={**repo_vars(full_name), "ref": f"heads/{branch}"})
        head = ref["object"]["sha"]
    # Only what changed is sent: a publish with nothing new (a health tick, a heartbeat) costs no write.
    tracking = render("execution/tracking.md.j2", **view)
    comment_id, digest = view["comment_id"], _digest(tracking)
    if not comment_id or (sent.get("comment") != digest and due("comment")):
        comment = await comments.upsert(gh, settings, full_name, view["issue_number"], tracking_marker(spec_id),
                                         tracking, known_id=comment_id, body_changed=bool(sent.get("comment")))
        comment_id, sent["comment"], sent["comment_at"] = comment.comment_id, digest, now
    if view["pr_number"]:
        body = _pr_body(view)
        digest = _digest(view["pr_number"], body)
        if sent.get("pr") != digest and due("pr"):
            pr = await gh.patch("/repos/{owner}/{repo}/pulls/{pull_number}",
                                url_vars={**repo_vars(full_name), "pull_number": view["pr_number"]},
                                data={"body": body})
            sent["pr"], sent["pr_at"] = digest, now
            # ready only once the checks of other apps (CI) pass on the head (app/execution/ci_checks.py)
            if state == "succeeded" and pr.get("draft") and await ci_checks.allow_ready(gh, settings, spec_id,
                                                                                       full_name, head):
                await _ready_for_review(gh, spec_id, pr)
    # The check run goes last: once it shows the run's end, the comment and the pull request do too.
    # One check run per head: a new head gets a new one; the old one stays on its commit as it was
    # (GitHub shows a pull request the checks of its head only, so no edit of the old one is needed).
    check_sha = view["check_sha"]
    actions = ([check_action("cancel")] if state == "running" else
               [check_action("retry")] if state in ("failed", "cancelled") else [])
    check = {"title": render("execution/check_title.j2", **view).strip(),
             "summary": render("execution/check_summary.md.j2", **view), "conclusion": CONCLUSIONS.get(state),
             "details_url": run_status_url(settings, full_name, view["issue_number"]) or view["pr_url"] or view["issue_url"],
             "actions": actions}
    digest = _digest(head, check)
    if not check_id or (sent.get("check") != digest and due("check")):
        on_head = check_id if check_sha == head else None
        check_id = await upsert_check_run(gh, full_name, check_run_id=on_head, name=CHECK_NAME, head_sha=head, **check)
        check_sha, sent["check"], sent["check_at"] = head, digest, now
    with session_scope(settings.database_url) as s:
        spec = s.get(Spec, spec_id)
        spec.implement_check_run_id, spec.implement_check_sha = check_id, check_sha
        spec.tracking_comment_id, spec.published = comment_id, sent
