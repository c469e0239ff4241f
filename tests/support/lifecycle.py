"""People end or change an issue's life on the GitHub stand-in, and GitHub tells omoi (issue 16): merge
or close omoi's pull request, close, reopen, edit or unlabel the issue. Each helper changes the
stand-in first (tests/fakes/github/rest/people.py), as GitHub does before it delivers the webhook, then
delivers the signed event to the World's web process. Also: reading omoi's notices and the spec back.
"""
from __future__ import annotations

from tests.fakes.github.rest import people
from tests.fakes.webhooks import (
    _installation_ref,
    _rewrite_api_url,
    _rewrite_repository,
    example,
    issue_comment_created_payload,
    issues_labeled_payload,
    user_json,
)
from tests.support.conversation import deliver


def _pr_event(world, action: str, pr: dict, sender: str) -> None:
    site = world.site
    payload = _rewrite_repository(example("pull_request", "closed"), site.repo)
    payload.pop("organization", None)
    payload.update(action=action, number=pr["number"], pull_request=pr, sender=user_json(sender),
                   installation=_installation_ref(site.installation))
    assert deliver(world, "pull_request", _rewrite_api_url(payload, None))[0] == 202


def merge_pr(world, number: int, sender: str = "alice") -> None:
    _pr_event(world, "closed", people.merge_pull_request(world.github, world.site.repo, number, user=sender), sender)


def close_pr(world, number: int, sender: str = "alice") -> None:
    _pr_event(world, "closed", people.set_pull_request_state(world.github, world.site.repo, number, "closed"), sender)


def reopen_pr(world, number: int, sender: str = "alice") -> None:
    _pr_event(world, "reopened", people.set_pull_request_state(world.github, world.site.repo, number, "open"), sender)


def _issue_event(world, action: str, issue: dict, sender: str, **extra) -> None:
    site = world.site
    payload = issues_labeled_payload(installation_id=site.installation, repo_full_name=site.repo,
                                     issue_number=site.issue, label="omoi", sender_login=sender)
    payload.pop("label")
    payload.update(action=action, issue=issue, **extra)
    assert deliver(world, "issues", payload)[0] == 202


def close_issue(world, sender: str = "alice") -> None:
    site = world.site
    _issue_event(world, "closed", people.set_issue_state(world.github, site.repo, site.issue, "closed",
                                                         reason="not_planned"), sender)


def reopen_issue(world, sender: str = "alice") -> None:
    site = world.site
    _issue_event(world, "reopened", people.set_issue_state(world.github, site.repo, site.issue, "open",
                                                           reason="reopened"), sender)


def unlabel(world, sender: str = "alice", name: str = "omoi") -> None:
    site = world.site
    issue = people.remove_label(world.github, site.repo, site.issue, name)
    label = issues_labeled_payload(installation_id=site.installation, repo_full_name=site.repo,
                                   issue_number=site.issue, label=name, sender_login=sender)["label"]
    _issue_event(world, "unlabeled", issue, sender, label=label)


def relabel(world, sender: str = "alice", name: str = "omoi") -> None:
    site = world.site
    issue = people.add_label(world.github, site.repo, site.issue, name)
    label = issues_labeled_payload(installation_id=site.installation, repo_full_name=site.repo,
                                   issue_number=site.issue, label=name, sender_login=sender)["label"]
    _issue_event(world, "labeled", issue, sender, label=label)


def edit_issue(world, *, body: str | None = None, title: str | None = None, sender: str = "alice") -> None:
    site = world.site
    issue, changes = people.edit_issue(world.github, site.repo, site.issue, body=body, title=title)
    _issue_event(world, "edited", issue, sender, changes=changes)


def notices(world, what: str) -> list[str]:
    """omoi's notices of one kind on the issue (`<!-- omoi:notice spec=N what=... -->`)."""
    return [c["body"] for c in world.github.issue_comments(world.site.repo, world.site.issue)
            if c["body"].startswith("<!-- omoi:notice ") and f" what={what} " in c["body"].split("\n", 1)[0]]


def spec_row(world):
    """The (only) spec in the World's database, detached."""
    from sqlalchemy import select

    from app.db.models import Spec
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        return s.scalars(select(Spec)).first()


def stage_rows(world) -> list[tuple]:
    """(stage, revision, status, stale_reason) of every stage revision, in the order written."""
    from sqlalchemy import select

    from app.db.models import SpecStage
    from app.db.session import session_scope

    with session_scope(world.database_url) as s:
        return [(r.stage, r.revision, r.status, r.stale_reason)
                for r in s.scalars(select(SpecStage).order_by(SpecStage.id))]


# --- commands written on a pull request ------------------------------------------------------------


def _pr_payload(world, event: str, action: str, number: int, sender: str) -> dict:
    site = world.site
    payload = _rewrite_repository(example(event, action), site.repo)
    payload.pop("organization", None)
    payload.update(pull_request=world.github.pull_request(site.repo, number), sender=user_json(sender),
                   installation=_installation_ref(site.installation))
    return payload


def review_comment(world, number: int, body: str, sender: str = "alice", path: str = "README.md") -> dict:
    """A person starts a review thread on pull request `number` with `body`; the comment's JSON."""
    created = world.github.add_review_thread(world.site.repo, number, path=path, line=1, body=body, user=sender)
    payload = _pr_payload(world, "pull_request_review_comment", "created", number, sender)
    payload["comment"] = created
    assert deliver(world, "pull_request_review_comment", _rewrite_api_url(payload, None))[0] == 202
    return created


def submit_review(world, number: int, body: str, sender: str = "alice", state: str = "commented",
                  review_id: int = 4242) -> int:
    """A person submits a review (its body and state) on pull request `number`; the review's id."""
    payload = _pr_payload(world, "pull_request_review", "submitted", number, sender)
    payload["review"].update(id=review_id, body=body, state=state, user=user_json(sender))
    assert deliver(world, "pull_request_review", _rewrite_api_url(payload, None))[0] == 202
    return review_id


def pr_comment(world, number: int, body: str, sender: str = "alice") -> int:
    """A person comments in pull request `number`'s conversation; the comment's id."""
    site = world.site
    created = world.github.add_issue_comment(site.repo, number, body=body, user=sender)
    payload = issue_comment_created_payload(installation_id=site.installation, repo_full_name=site.repo,
                                            issue_number=number, body=body, sender_login=sender,
                                            comment_id=created["id"])
    payload["issue"] = world.github.issue(site.repo, number)  # a pull request's issue (`pull_request` key)
    assert deliver(world, "issue_comment", payload)[0] == 202
    return created["id"]


def thread_replies(world, number: int, root_id: int) -> list[str]:
    """The replies in the review thread that starts with comment `root_id`."""
    for thread in world.github.review_threads(world.site.repo, number):
        if thread["comments"][0]["id"] == root_id:
            return [c["body"] for c in thread["comments"][1:]]
    return []
