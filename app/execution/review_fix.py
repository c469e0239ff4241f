"""Answering review threads on omoi's pull requests.

One batched agent job per request: collect the unresolved threads (GraphQL, whole thread) and the
feedback outside them (a review's body, a PR comment's `/omoi fix <text>`), run the fix session on
the PR branch (app/execution/fix_session.py: sandbox, agent, the spec's and the repository's verify
commands - a failing one means nothing is pushed - then omoi's commit, never forced, on top of any
human commits; its cost counts in the spec's budget), then reply in every thread - applied, not
applied, or needs a human - and resolve only the threads omoi fixed, only where the repository allows it.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, ValidationError

from app.config import Settings, get_settings
from app.db import claims
from app.db.locks import issue_lock
from app.execution import fix_session, policy
from app.github import comments, repo_config
from app.github.client import installation_client
from app.github.permissions import check_sender
from app.observability.logs import get_logger, redact
from app.text.rendering import Reason, explain, reason, render
from app.text import markers

log = get_logger("omoi.review")
RESULT_FILE = ".omoi-review-result.json"
THREADS_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 50, after: $after) {
        nodes {
          id isResolved isOutdated path line
          comments(first: 50) { nodes { id databaseId body author { login } createdAt } }
        }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}
"""
RESOLVE_MUTATION = """
mutation($threadId: ID!) { resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } } }
"""


@dataclass
class Thread:
    id: str
    path: str
    line: int | None
    outdated: bool
    root_comment_id: int
    comments: list[dict]  # {author, body} from people with write access only
    author: str


@dataclass
class ThreadOutcome:
    status: str  # applied | not_applied | needs_human
    reason: Reason | str = ""  # a Reason, or the agent's own words


@dataclass
class ReviewResult:
    sha: str | None
    outcomes: dict[str, ThreadOutcome] = field(default_factory=dict)
    threads: list[Thread] = field(default_factory=list)
    failure: Reason | None = None  # why nothing was pushed (a failing verify, the budget, the policy)
    tail: str = ""                 # a failing verify command's output, trimmed
    cost: float = 0.0


class AgentThreadResult(BaseModel):
    id: str = Field(max_length=200)
    status: str = Field(pattern="^(applied|not_applied|needs_human)$")
    reason: str = Field(default="", max_length=500)


class AgentReport(BaseModel):
    threads: list[AgentThreadResult] = Field(default_factory=list, max_length=100)


def is_omoi_pull_request(pr: dict) -> bool:
    head, base = pr.get("head") or {}, pr.get("base") or {}
    same_repo = (head.get("repo") or {}).get("full_name") == (base.get("repo") or {}).get("full_name")
    return same_repo and str(head.get("ref", "")).startswith("omoi/issue-")


async def unresolved_threads(gh, settings: Settings, full_name: str, number: int) -> tuple[list[Thread], list[Thread]]:
    """(threads to work on, threads started by people without write access)."""
    owner, name = full_name.split("/", 1)
    nodes, after = [], None
    while True:
        data = await gh.graphql(THREADS_QUERY, owner=owner, name=name, number=number, after=after)
        page = data["repository"]["pullRequest"]["reviewThreads"]
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    usable, refused = [], []
    for node in nodes:
        if node["isResolved"]:
            continue
        comments = node["comments"]["nodes"]
        if not comments:
            continue
        allowed = []
        for c in comments:
            login = (c.get("author") or {}).get("login", "")
            if login.lower() == f"{settings.app_name}[bot]".lower():
                continue  # our own earlier replies are context, not instructions
            decision = await check_sender(gh, settings, full_name, {"login": login, "type": "User"})
            if decision.allowed:
                allowed.append({"author": login, "body": c["body"]})
        thread = Thread(node["id"], node["path"], node.get("line"), node["isOutdated"],
                        comments[0]["databaseId"], allowed, (comments[0].get("author") or {}).get("login", ""))
        (usable if allowed else refused).append(thread)
    return usable, refused


def _excerpt(patch: str, path: str, max_lines: int = 12) -> str:
    lines, inside = [], False
    for line in patch.splitlines():
        if line.startswith("diff --git "):
            inside = line.endswith(f" b/{path}")
            continue
        if inside and (line.startswith(("+", "-")) and not line.startswith(("+++", "---"))):
            lines.append(line)
    return "\n".join(lines[:max_lines])



async def run_fix(gh, settings: Settings, token: str, full_name: str, pr: dict, threads: list[Thread],
                  notes: list[dict], round_key: str, cfg, spec_id: int | None) -> tuple[ReviewResult, str]:
    """The fix session (app/execution/fix_session.py) on the PR head: verified before it is pushed,
    its cost counted in the spec's budget. Returns per-thread outcomes and the patch."""
    extra = (await repo_config.load(gh, settings, full_name)).config.ci.verify
    verify = fix_session.verify_commands(settings, spec_id, list(extra))
    allowance, hit = fix_session.budget_left(settings, spec_id, cfg)
    if hit is not None:
        why = reason("review/budget", limit=hit["limit"], spent_usd=hit["spent_usd"], limit_usd=hit["limit_usd"])
        return ReviewResult(None, {t.id: ThreadOutcome("not_applied", why) for t in threads}, threads, failure=why), ""
    prompt = render("review/agent_prompt.j2", threads=threads, notes=notes, result_file=RESULT_FILE, pr=pr,
                    verify=verify)
    fix = await fix_session.run(gh, settings, token, full_name, pr, cfg, prompt=prompt, key=round_key,
                                label=f"review-{pr['number']}", verify=verify, max_budget_usd=allowance,
                                message=render("review/commit_message.j2", pr=pr, threads=threads, notes=notes,
                                               key=round_key), result_file=RESULT_FILE)
    fix_session.record_cost(settings, spec_id, "review_fix", fix.agent)
    report = _parse_report(fix.report)
    ids = {t.id for t in threads}
    outcomes = {r.id: ThreadOutcome(r.status, r.reason) for r in (report.threads if report else []) if r.id in ids}
    result = ReviewResult(fix.sha, outcomes, threads, failure=fix.failure if not fix.sha else None,
                          tail=fix.tail if fix.verify_failed else "", cost=fix.cost_usd)
    if fix.failure is not None and not fix.sha:
        status = "needs_human" if fix.failure.code == "review/agent_stopped" else "not_applied"
        result.outcomes = {t.id: ThreadOutcome(status, fix.failure) for t in threads}
        return result, ""
    changed = set(policy.changed_paths(fix.patch)) if fix.patch.strip() else set()
    for t in threads:  # the agent did not say: decide from what changed
        if t.id not in outcomes:
            outcomes[t.id] = (ThreadOutcome("applied") if t.path in changed and fix.sha
                              else ThreadOutcome("needs_human", reason("review/unclear")))
        elif outcomes[t.id].status == "applied" and not fix.sha:
            outcomes[t.id] = ThreadOutcome("not_applied", reason("review/no_files_changed"))
    return result, fix.patch


def _parse_report(raw: str | None) -> AgentReport | None:
    if raw is None:
        return None
    try:
        return AgentReport.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None


async def reply_all(gh, settings: Settings, full_name: str, number: int, result: ReviewResult, patch: str,
                    refused: list[Thread], round_key: str, auto_resolve: bool) -> dict[str, int]:
    owner, name = full_name.split("/", 1)
    counts = {"applied": 0, "not_applied": 0, "needs_human": 0}
    replies = [(t, result.outcomes[t.id]) for t in result.threads]
    replies += [(t, ThreadOutcome("not_applied", reason("review/not_a_writer")))
                for t in refused]
    for thread, outcome in replies:
        counts[outcome.status] += 1
        reply_key = f"review-reply:{round_key}:{thread.id}"
        if claims.status(reply_key) == "done":
            continue  # already answered in this round (a retry)
        body = render(f"review/{outcome.status}.md.j2", sha=result.sha, reason=explain(outcome.reason),
                      excerpt=_excerpt(patch, thread.path), thread_id=thread.id, round=round_key)
        await gh.post("/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
                      url_vars={"owner": owner, "repo": name, "pull_number": number,
                                "comment_id": thread.root_comment_id}, data={"body": body})
        claims.claim(reply_key, "review-reply", "done")
        if outcome.status == "applied" and auto_resolve:
            await gh.graphql(RESOLVE_MUTATION, threadId=thread.id)
    return counts


async def address_review(gh, settings: Settings, token: str, full_name: str, number: int, round_key: str,
                         notes: list[dict] | None = None) -> str:
    """The whole job; returns the summary comment's body."""
    owner, name = full_name.split("/", 1)
    pr = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                          url_vars={"owner": owner, "repo": name, "pull_number": number})
    if not is_omoi_pull_request(pr):
        return render("review/not_ours.md.j2")
    # Feedback outside the threads (a review's body, a PR comment's `/omoi fix <text>`) from a writer, as data.
    notes = [{"author": str(n.get("author", ""))[:100], "source": "review" if n.get("source") == "review" else "comment",
              "body": fix_session.as_data(n.get("body"), 4000)} for n in (notes or []) if str(n.get("body") or "").strip()]
    cfg = await repo_config.load_effective(gh, settings, full_name)
    threads, refused = await unresolved_threads(gh, settings, full_name, number)
    if not threads and not refused and not notes:
        return render("review/nothing.md.j2")
    spec_id = fix_session.spec_for_pull_request(settings, full_name, pr)
    result, patch = (await run_fix(gh, settings, token, full_name, pr, threads, notes, round_key, cfg, spec_id)
                     if threads or notes else (ReviewResult(None), ""))
    counts = await reply_all(gh, settings, full_name, number, result, patch, refused, round_key,
                             cfg.auto_resolve_threads)
    log.info("review_addressed", pr=number, sha=result.sha, spec_id=spec_id, cost=result.cost, **counts)
    return render("review/summary.md.j2", sha=result.sha, counts=counts, round=round_key, notes=len(notes),
                  threads=len(result.threads) + len(refused), failure=explain(result.failure), tail=result.tail,
                  cost=f"{result.cost:.2f}" if spec_id is not None and result.cost else None)


def run_job(installation_id: int, full_name: str, number: int, round_key: str, notes: list[dict] | None = None) -> str:
    """Celery entry: one review round at a time per pull request, ending in a summary comment."""
    settings = get_settings()
    if claims.status(f"review-round:{round_key}") == "done":
        return "already-done"

    async def go() -> None:
        async with installation_client(settings, installation_id) as gh:
            try:
                body = await address_review(gh, settings, gh.oauth_token, full_name, number, round_key, notes)
            except Exception as exc:  # noqa: BLE001 - the person who asked always hears back
                log.error("review_failed", pr=number, error=redact(str(exc))[:300])
                body = render("review/failed.md.j2", reason=redact(str(exc))[:300])
            await comments.upsert(gh, settings, full_name, number, markers.REVIEW.prefix(round=round_key),
                                  render("review/summary_wrapper.md.j2", round=round_key, body=body))

    with issue_lock(f"{full_name}#{number}", settings.issue_lock_seconds):
        asyncio.run(go())
    claims.claim(f"review-round:{round_key}", "review-round", "done")
    return "done"
