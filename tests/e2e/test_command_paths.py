"""Every command path answers (issue 16), end to end through omoi's real processes and the GitHub
stand-in: a command written in a review comment, a review's body or a pull request's conversation
either works or gets a one-line reply; a refused `/omoi fix`, a refused review, a refused button press
and a refused label each leave one notice per issue or pull request, never more.
"""
from __future__ import annotations

import pytest

from app.db.models import WebhookDelivery
from app.db.session import session_scope
from sqlalchemy import select
from tests.support.conversation import comment, omoi_comments, press_button, reply_to
from tests.support.lifecycle import pr_comment, review_comment, submit_review, thread_replies
from tests.support.waits import wait_for
from tests.support.world import Issue, Site, approve_plan
from tests.support.plans import HAPPY

REPO = "octo/greeter"
BRANCH = "omoi/issue-3-greet"
SITE = Site(REPO, 94, {"README.md": "# greeter\n", "greeter.py": "print('hi')\n"},
            people={"alice": "write", "rita": "read"}, issues={3: Issue("Greet", "Say hello.", "alice")},
            branch=BRANCH)


@pytest.fixture
def pr_world(fake_github, omoi_world):
    """omoi and its pull request for issue 3 (a spec whose plan was approved), plus a person's own PR."""
    fake = fake_github
    procs = omoi_world(github=fake, site=SITE, start=False)
    fake.push_human_commit(REPO, BRANCH, {"greeter.py": "print('hello')\n"}, "omoi: T1")
    ours = fake.add_pull_request(REPO, head=BRANCH, title="Greet", user="omoi[bot]", draft=True)
    fake.push_human_commit(REPO, "feature/x", {"NOTES.md": "notes\n"}, "a person's change")
    theirs = fake.add_pull_request(REPO, head="feature/x", title="Notes", user="alice")
    procs.start_all()
    approve_plan(procs, HAPPY)
    return procs, ours["number"], theirs["number"]


def _settled(procs) -> bool:
    with session_scope(procs.database_url) as s:
        return all(st in ("done", "failed") for st in s.scalars(select(WebhookDelivery.status)))


def _refusals(fake, number) -> list[str]:
    return [c["body"] for c in fake.issue_comments(REPO, number) if c["body"].startswith("<!-- omoi:refused")]


def test_refused_fix_and_review_get_one_notice_per_pull_request(pr_world, fake_github):
    procs, ours, _ = pr_world
    fake = fake_github
    root = review_comment(procs, ours, "/omoi fix please", sender="rita")
    notice = wait_for(lambda: _refusals(fake, ours), timeout=30, message="refusal notice on the PR")
    assert "@rita" in notice[0] and "write access" in notice[0]
    submit_review(procs, ours, "needs work", sender="rita", state="changes_requested")
    review_comment(procs, ours, "/omoi fix this too", sender="rita")
    wait_for(lambda: _settled(procs), timeout=30, message="deliveries processed")
    assert len(_refusals(fake, ours)) == 1  # one notice, however often they try
    assert thread_replies(procs, ours, root["id"]) == []  # nothing was worked on
    assert fake.reactions_on_comment(REPO, root["id"]) == []
    assert fake.violations == []


def test_other_verbs_in_reviews_get_a_one_line_reply(pr_world, fake_github):
    procs, ours, theirs = pr_world
    fake = fake_github
    root = review_comment(procs, ours, "/omoi approve\n/omoi frobnicate", sender="alice")
    replies = wait_for(lambda: thread_replies(procs, ours, root["id"]), timeout=30, message="thread reply")
    assert len(replies) == 1 and "`/omoi approve` is not read in a review comment" in replies[0]
    assert "unknown" in replies[0].lower()
    review = submit_review(procs, ours, "/omoi status", sender="alice")
    body = wait_for(lambda: next((c["body"] for c in fake.issue_comments(REPO, ours)
                                  if c["body"].startswith(f"<!-- omoi:reply to=review-{review} ")), None),
                    timeout=30, message="review body reply")
    assert "`/omoi status` is not read in a review" in body
    # `/omoi fix` on a pull request omoi did not open: said so, in the thread
    other = review_comment(procs, theirs, "/omoi fix", sender="alice")
    said = wait_for(lambda: thread_replies(procs, theirs, other["id"]), timeout=30, message="not-ours reply")
    assert "pull requests it opened" in said[0]
    # the pull request's conversation: spec and run verbs point to the issue
    c = pr_comment(procs, ours, "/omoi cancel")
    assert "works on the issue" in wait_for(lambda: reply_to(procs, c, issue=ours), message="PR conversation reply")
    assert fake.violations == []


def test_refused_and_idle_button_presses_are_answered(pr_world, fake_github):
    procs, ours, _ = pr_world
    fake = fake_github
    check = {"id": 777, "name": "omoi / implement", "head_sha": fake.branch_sha(REPO, BRANCH)}
    press_button(procs, check, "cancel", sender="rita")
    notice = wait_for(lambda: _refusals(fake, 3), timeout=30, message="refusal on the issue")
    assert "press the buttons" in notice[0]
    press_button(procs, check, "cancel", sender="alice")  # nothing is running
    noop = wait_for(lambda: omoi_comments(procs, "<!-- omoi:notice ", issue=3), timeout=30, message="noop notice")
    assert "changed nothing" in noop[0]["body"] and "nothing is running" in noop[0]["body"]
    press_button(procs, check, "retry", sender="rita")
    c = comment(procs, "/omoi status", sender="rita")
    wait_for(lambda: _settled(procs), timeout=30, message="deliveries processed")
    assert len(_refusals(fake, 3)) == 1 and reply_to(procs, c, issue=3) is None
    assert fake.violations == []
