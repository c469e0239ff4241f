"""End to end: the real web process and a real Celery worker acknowledge a labelled issue.

Runs on the embedded defaults (SQLite + filesystem broker) and on PostgreSQL + Redis.
Everything asserted is what reached the GitHub stand-in or what is in the database.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db.models import Spec, WebhookDelivery
from app.db.session import session_scope
from tests.support.conversation import label
from tests.support.env import WEBHOOK_SECRET
from tests.support.waits import wait_for
from tests.support.world import Issue, Site

REPO = "octo/hello"
INSTALLATION = 77
SITE = Site(REPO, INSTALLATION, {"README.md": "# hello\n"}, people={"alice": "write", "rita": "read"},
            issues={1: Issue("Add a greeting", "Say hello.", "alice")})


@pytest.fixture
def omoi(fake_github, database_url, broker_url, omoi_world):
    return omoi_world(github=fake_github, site=SITE, database=database_url, broker=broker_url)


def _acks(fake_github):
    return [c for c in fake_github.issue_comments(REPO, 1) if c["body"].startswith("<!-- omoi:ack")]


def _delivery_statuses(url):
    with session_scope(url) as s:
        return {d.delivery_id: d.status for d in s.scalars(select(WebhookDelivery))}


def _wait_done(procs, delivery_id):
    wait_for(
        lambda: _delivery_statuses(procs.database_url).get(delivery_id) in ("done", "failed"),
        timeout=60, message=lambda: f"delivery {delivery_id} processed\n{procs.log_text('worker')[-3000:]}",
    )
    assert _delivery_statuses(procs.database_url)[delivery_id] == "done", procs.log_text("worker")[-3000:]


def test_labelled_issue_is_acknowledged_once(omoi, fake_github):
    status, _ = label(omoi, delivery_id="first")
    assert status == 202
    _wait_done(omoi, "first")

    # permission checked, one comment with the hidden marker: it is the answer (no 👀 beside it, one write less)
    assert fake_github.calls_matching("GET", r"/repos/octo/hello/collaborators/alice/permission$")
    assert fake_github.reactions_on_issue(REPO, 1) == []
    comments = _acks(fake_github)
    assert len(comments) == 1
    assert comments[0]["body"].startswith("<!-- omoi:ack issue=1 -->")
    assert comments[0]["user"]["type"] == "Bot"
    with session_scope(omoi.database_url) as s:
        spec = s.scalars(select(Spec)).one()
        assert (spec.repo_full_name, spec.issue_number) == (REPO, 1)
        assert spec.state in ("planning", "failed")  # planning starts at once (no model configured here)
        assert spec.ack_comment_id == comments[0]["id"]

    # the same delivery again: 200, not processed twice
    status, _ = label(omoi, delivery_id="first")
    assert status == 200
    # a second delivery of the same label event: processed, but edits nothing
    status, _ = label(omoi, delivery_id="second")
    assert status == 202
    _wait_done(omoi, "second")
    assert len(_acks(fake_github)) == 1
    ack_posts = [c for c in fake_github.calls_matching("POST", r"/issues/1/comments$")
                 if c.json["body"].startswith("<!-- omoi:ack")]
    assert len(ack_posts) == 1
    assert [c for c in fake_github.calls_matching("PATCH", r"/issues/comments/")
            if c.json["body"].startswith("<!-- omoi:ack")] == []
    # (when planning already failed for want of a model, the second label resumes it: its answer is a 👀)
    assert len(fake_github.reactions_on_issue(REPO, 1)) <= 1
    # tokens are cached per worker process (concurrency 2), not fetched per delivery
    assert fake_github.tokens_issued[INSTALLATION] <= 2
    assert fake_github.violations == []


def test_sender_without_write_access_starts_nothing(omoi, fake_github):
    assert label(omoi, sender="rita", delivery_id="read-only")[0] == 202
    _wait_done(omoi, "read-only")
    assert fake_github.calls_matching("GET", r"/collaborators/rita/permission$")
    # one notice (issue 16), however often a labeller without write access tries
    assert label(omoi, sender="rita", delivery_id="read-only-2")[0] == 202
    _wait_done(omoi, "read-only-2")
    bodies = [c["body"] for c in fake_github.issue_comments(REPO, 1)]
    assert len(bodies) == 1 and bodies[0].startswith("<!-- omoi:refused") and "start omoi with its label" in bodies[0]
    assert fake_github.reactions_on_issue(REPO, 1) == []
    with session_scope(omoi.database_url) as s:
        assert s.scalars(select(Spec)).all() == []
    assert fake_github.violations == []


def test_bot_sender_is_denied_without_asking_github(omoi, fake_github):
    assert label(omoi, sender="renovate[bot]", sender_type="Bot", delivery_id="bot")[0] == 202
    _wait_done(omoi, "bot")
    assert fake_github.issue_comments(REPO, 1) == []
    assert not fake_github.calls_matching("GET", r"/collaborators/")


def test_without_a_model_key_the_issue_gets_a_visible_failure(omoi, fake_github):
    """Every start reaches a visible end state: here, a clear comment instead of silence."""
    assert label(omoi, delivery_id="no-llm")[0] == 202
    error = wait_for(
        lambda: next((c for c in fake_github.issue_comments(REPO, 1)
                      if c["body"].startswith("<!-- omoi:error stage=requirements")), None),
        timeout=60, message=lambda: "failure comment\n" + omoi.log_text("worker")[-3000:],
    )
    assert "ANTHROPIC_API_KEY" in error["body"]
    with session_scope(omoi.database_url) as s:
        spec = s.scalars(select(Spec)).one()
        assert spec.state == "failed" and spec.last_error == "planning/error"
        assert "Anthropic API key" in spec.last_error_params["detail"]
    logs = omoi.log_text("worker") + omoi.log_text("web")
    assert WEBHOOK_SECRET not in logs and "BEGIN PRIVATE KEY" not in logs and "ghs_" not in logs
