"""The issue as people and omoi have it on the GitHub stand-in, for a World (tests/support/world.py).

People label the issue, comment on it and press the buttons of omoi's check run: each is a signed
webhook delivery to omoi's web process. omoi's replies, its comments, the run's tracking comment,
the `omoi / implement` check run and the commits of each task are read back from the stand-in.
"""
from __future__ import annotations

import re

from tests.fakes.webhooks import (
    _installation_ref,
    _rewrite_api_url,
    _rewrite_repository,
    example,
    issue_comment_created_payload,
    issues_labeled_payload,
    post_delivery,
    user_json,
)
from tests.support.env import APP_ID


def deliver(world, event: str, payload, delivery_id: str | None = None) -> tuple[int, str]:
    """GitHub delivers `payload` to omoi, signed with the world's webhook secret: (status, body)."""
    return post_delivery(world.url + "/webhooks/github", event, payload, world.webhook_secret, delivery_id=delivery_id)


def label(world, issue: int | None = None, delivery_id: str | None = None, *, sender: str = "alice",
          sender_type: str = "User") -> tuple[int, str]:
    """`sender` adds the `omoi` label to the issue (the site's, or `issue`)."""
    site = world.site
    payload = issues_labeled_payload(installation_id=site.installation, repo_full_name=site.repo,
                                     issue_number=issue or site.issue, label="omoi", sender_login=sender,
                                     sender_type=sender_type)
    return deliver(world, "issues", payload, delivery_id)


def comment(world, body: str, sender: str = "alice", issue: int | None = None) -> int:
    """A person comments on the issue (in the stand-in) and GitHub delivers the webhook; the comment's id."""
    site = world.site
    number = issue or site.issue
    created = world.github.add_issue_comment(site.repo, number, body=body, user=sender)
    payload = issue_comment_created_payload(installation_id=site.installation, repo_full_name=site.repo,
                                            issue_number=number, body=body, sender_login=sender,
                                            comment_id=created["id"])
    assert deliver(world, "issue_comment", payload)[0] == 202
    return created["id"]


def reply_to(world, comment_id: int, issue: int | None = None) -> str | None:
    """omoi's reply to a command comment, if there is one yet."""
    return next((c["body"] for c in world.github.issue_comments(world.site.repo, issue or world.site.issue)
                 if c["body"].startswith(f"<!-- omoi:reply to={comment_id} ")), None)


def omoi_comments(world, prefix: str, issue: int | None = None) -> list[dict]:
    """Comments on the issue whose body starts with `prefix` (omoi's hidden marker)."""
    return [c for c in world.github.issue_comments(world.site.repo, issue or world.site.issue)
            if c["body"].startswith(prefix)]


def press_button(world, check_run: dict, identifier: str, sender: str = "alice") -> None:
    """GitHub's `check_run` / `requested_action` delivery for a button on our check run."""
    site = world.site
    payload = _rewrite_repository(example("check_run", "requested_action"), site.repo)
    payload.pop("organization", None)
    payload["check_run"].update({"id": check_run["id"], "name": check_run["name"], "head_sha": check_run["head_sha"],
                                 "app": {**payload["check_run"]["app"], "id": APP_ID, "slug": "omoi"}})
    payload["check_run"]["check_suite"]["head_branch"] = site.branch
    payload["requested_action"] = {"identifier": identifier}
    payload["sender"] = user_json(sender)
    payload["installation"] = _installation_ref(site.installation)
    payload = _rewrite_api_url(payload, None)
    assert deliver(world, "check_run", payload)[0] == 202


def tracking(world) -> str:
    """The run's tracking comment on the issue (there is at most one)."""
    found = [c["body"] for c in omoi_comments(world, "<!-- omoi:run ")]
    assert len(found) <= 1, "duplicate tracking comments"
    return found[0] if found else ""


def implement_check(world) -> dict | None:
    """The `omoi / implement` check run on the branch head."""
    repo = world.site.repo
    head = world.github.branch_sha(repo, world.site.branch)
    runs = [r for r in world.github.check_runs(repo) if r["name"] == "omoi / implement" and r["head_sha"] == head]
    return runs[-1] if runs else None


def task_commits(world) -> dict[str, list[str]]:
    """The branch's commits by the task key in their `Omoi-Task:` trailer."""
    out: dict[str, list[str]] = {}
    for c in world.github.commits(world.site.repo, world.site.branch):
        for key in re.findall(r"^Omoi-Task: (\S+)$", c["message"], re.M):
            out.setdefault(key, []).append(c["sha"])
    return out
