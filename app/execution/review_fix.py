"""Answering review threads on omoi's pull requests.

One batched agent job per request: collect the unresolved threads (GraphQL, whole thread),
run the agent on the PR branch in a sandbox, commit and push its fix (never forced, on top
of any human commits), then reply in every thread - applied, not applied, or needs a human -
and resolve only the threads omoi fixed, only where the repository allows it.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from pydantic import BaseModel, Field, ValidationError

from app.agent.session import run_agent
from app.config import Settings, get_settings
from app.db import claims
from app.db.locks import issue_lock
from app.execution import gitwork, policy
from app.github import bot_identity, comments, repo_config, url_with_token
from app.github.client import installation_client
from app.github.permissions import check_sender
from app.observability.logs import get_logger, redact
from app.sandbox import make_sandbox
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
                  round_key: str, blocked_paths: list[str]) -> tuple[ReviewResult, str]:
    """Sandbox + agent on the PR head; commit and push the fix. Returns per-thread outcomes."""
    repo = await gh.getitem("/repos/{owner}/{repo}", url_vars=dict(zip(("owner", "repo"), full_name.split("/", 1))))
    branch, head = pr["head"]["ref"], pr["head"]["sha"]
    provider = make_sandbox(settings)
    sandbox = await provider.create(repo_url=url_with_token(repo["clone_url"], token), ref=head, label=f"review-{pr['number']}")
    try:
        prompt = render("review/agent_prompt.j2", threads=threads, result_file=RESULT_FILE, pr=pr)
        result = await run_agent(mode="implement", prompt=prompt, sandbox=sandbox, settings=settings,
                                 max_turns=settings.review_max_turns, max_budget_usd=settings.review_budget_usd,
                                 timeout_s=settings.review_timeout_seconds)
        report = await _read_report(sandbox)
        patch = await sandbox.diff()
    finally:
        await sandbox.destroy()
    ids = {t.id for t in threads}
    outcomes = {r.id: ThreadOutcome(r.status, r.reason) for r in (report.threads if report else []) if r.id in ids}
    if not result.ok and not patch.strip():
        return ReviewResult(None, {t.id: ThreadOutcome("needs_human", reason("review/agent_stopped", cause=result.error))
                                   for t in threads}, threads), ""
    limits = policy.Limits(blocked_paths=tuple(blocked_paths))
    refusal = policy.precheck(patch, limits) if patch.strip() else None
    if refusal is not None:
        return ReviewResult(None, {t.id: ThreadOutcome("not_applied", refusal.reason) for t in threads}, threads), ""
    sha = None
    if patch.strip():
        clone = gitwork.Clone(url=repo["clone_url"], token=token, branch=branch,
                              author=bot_identity(settings.app_name, settings.github_app_id))
        message = render("review/commit_message.j2", pr=pr, threads=threads, key=round_key)
        try:
            await asyncio.to_thread(clone.clone)
            pushed = await asyncio.to_thread(gitwork.commit_and_push, clone, base_sha=head, patch=patch,
                                             message=message, task_key=round_key, limits=limits,
                                             secrets=policy.secrets_from_settings(settings, extra=[token]))
            sha = pushed.sha
        except policy.Refused as exc:  # the applied change broke a rule: nothing was pushed
            return ReviewResult(None, {t.id: ThreadOutcome("not_applied", exc.reason) for t in threads}, threads), ""
        finally:
            clone.cleanup()
    changed = set(policy.changed_paths(patch)) if patch.strip() else set()
    for t in threads:  # the agent did not say: decide from what changed
        if t.id not in outcomes:
            outcomes[t.id] = (ThreadOutcome("applied") if t.path in changed and sha
                              else ThreadOutcome("needs_human", reason("review/unclear")))
        elif outcomes[t.id].status == "applied" and not sha:
            outcomes[t.id] = ThreadOutcome("not_applied", reason("review/no_files_changed"))
    return ReviewResult(sha, outcomes, threads), patch


async def _read_report(sandbox) -> AgentReport | None:
    try:
        raw = await sandbox.download(RESULT_FILE)
    except Exception:  # noqa: BLE001 - no report is a normal outcome
        return None
    finally:
        await sandbox.exec(["rm", "-f", RESULT_FILE], timeout=10)  # never part of the commit
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


async def address_review(gh, settings: Settings, token: str, full_name: str, number: int, round_key: str) -> str:
    """The whole job; returns the summary comment's body."""
    owner, name = full_name.split("/", 1)
    pr = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                          url_vars={"owner": owner, "repo": name, "pull_number": number})
    if not is_omoi_pull_request(pr):
        return render("review/not_ours.md.j2")
    cfg = await repo_config.load_effective(gh, settings, full_name)
    threads, refused = await unresolved_threads(gh, settings, full_name, number)
    if not threads and not refused:
        return render("review/nothing.md.j2")
    result, patch = (await run_fix(gh, settings, token, full_name, pr, threads, round_key, cfg.blocked_paths)
                     if threads else (ReviewResult(None), ""))
    counts = await reply_all(gh, settings, full_name, number, result, patch, refused, round_key,
                             cfg.auto_resolve_threads)
    log.info("review_addressed", pr=number, sha=result.sha, **counts)
    return render("review/summary.md.j2", sha=result.sha, counts=counts, round=round_key)


def run_job(installation_id: int, full_name: str, number: int, round_key: str) -> str:
    """Celery entry: one review round at a time per pull request, ending in a summary comment."""
    settings = get_settings()
    if claims.status(f"review-round:{round_key}") == "done":
        return "already-done"

    async def go() -> None:
        async with installation_client(settings, installation_id) as gh:
            try:
                body = await address_review(gh, settings, gh.oauth_token, full_name, number, round_key)
            except Exception as exc:  # noqa: BLE001 - the person who asked always hears back
                log.error("review_failed", pr=number, error=redact(str(exc))[:300])
                body = render("review/failed.md.j2", reason=redact(str(exc))[:300])
            await comments.upsert(gh, settings, full_name, number, markers.REVIEW.prefix(round=round_key),
                                  render("review/summary_wrapper.md.j2", round=round_key, body=body))

    with issue_lock(f"{full_name}#{number}", settings.issue_lock_seconds):
        asyncio.run(go())
    claims.claim(f"review-round:{round_key}", "review-round", "done")
    return "done"
