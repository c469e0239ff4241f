"""Recovery sweep of GitHub's delivery log (app/intake/redelivery.py): deliveries GitHub could not hand
over are redelivered, once per failed attempt, only when a retry can help, and never beyond the limit.

The sweep runs in this process against the GitHub stand-in (whose delivery log is filled by
`send_webhook`) on both databases; the last test runs the real web process and a Celery worker
with beat on SQLite and shows a delivery sent while omoi was down arriving and being processed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.config import get_settings, reset_settings_cache
from app.db.models import WebhookDelivery, WebhookRedelivery
from app.db.session import session_scope
from app.intake.redelivery import sweep_github_deliveries, worth_redelivering
from app.timeutil import utc_now
from tests.fakes.webhooks import issue_comment_created_payload
from tests.support.env import ROOT, WEBHOOK_SECRET, base_env
from tests.support.services import free_port
from tests.support.waits import wait_for
from tests.support.world import Issue, Site

REPO = "octo/redeliver"
INSTALLATION = 91
SITE = Site(REPO, INSTALLATION, {"README.md": "# redeliver\n"}, people={"alice": "write"},
            issues={1: Issue("Lost while down", "", "alice"), 2: Issue("Arrived", "", "alice")})


def _payload(n: int) -> dict:
    return {"action": "created", "n": n, "installation": {"id": INSTALLATION}, "repository": {"id": 7}}


def _down_url() -> str:
    return f"http://127.0.0.1:{free_port()}/webhooks/github"


def _rows(database_url: str) -> list[tuple[str, int, str]]:
    with session_scope(database_url) as s:
        return [(r.guid, r.attempt, r.status) for r in
                s.scalars(select(WebhookRedelivery).order_by(WebhookRedelivery.id))]


@pytest.fixture
def sweep_env(github_env, monkeypatch):
    """Settings for sweeps in this process; GitHub errors are not retried, to keep the tests fast."""
    monkeypatch.setenv("OMOI_GITHUB_MAX_RETRIES", "0")
    reset_settings_cache()
    yield get_settings()
    reset_settings_cache()


def test_policy_redelivers_what_a_retry_can_fix():
    assert all(worth_redelivering(c) for c in (0, 408, 429, 500, 502, 503, 504))
    assert not any(worth_redelivering(c) for c in (200, 202, 301, 400, 401, 403, 404, 413, 415, 422))


def test_sweep_redelivers_only_retryable_failures_and_stops_after_max_attempts(sweep_env, fake_github, receiver):
    fake, settings = fake_github, sweep_env
    receiver.answers = [503, 202, 401, 503]
    five = fake.send_webhook(receiver.url, WEBHOOK_SECRET, "issue_comment", _payload(1))
    ok = fake.send_webhook(receiver.url, WEBHOOK_SECRET, "issue_comment", _payload(2))
    unauthorized = fake.send_webhook(receiver.url, WEBHOOK_SECRET, "issue_comment", _payload(3))
    stored = fake.send_webhook(receiver.url, WEBHOOK_SECRET, "issue_comment", _payload(4))
    down = fake.send_webhook(_down_url(), WEBHOOK_SECRET, "issues", _payload(5))
    # GitHub recorded a failure, but omoi has the delivery (e.g. it answered after GitHub's 10 s).
    with session_scope(settings.database_url) as s:
        s.add(WebhookDelivery(delivery_id=stored, event="issue_comment", payload=_payload(4), status="done"))
    receiver.answers = [503] * 10  # the receiver keeps failing: every redelivery fails again

    first = sweep_github_deliveries(settings)
    assert first.error is None and first.requested == [five, down]
    assert (first.failed, first.permanent, first.stored, first.scanned) == (4, 1, 1, 5)
    for _ in range(2):
        fake.wait_for_redeliveries()
        again = sweep_github_deliveries(settings)
        assert again.requested == [five, down]  # the redelivery failed too: its new attempt is redelivered
    fake.wait_for_redeliveries()
    last = sweep_github_deliveries(settings)
    assert last.requested == [] and last.exhausted == 2

    assert len(fake.redelivery_requests(five)) == len(fake.redelivery_requests(down)) == 3
    for guid in (ok, unauthorized, stored):
        assert fake.redelivery_requests(guid) == []
    # Each request redelivered the newest attempt at the time, never the same attempt twice.
    attempts = fake.hook_deliveries(five)
    assert fake.redelivery_requests(five) == [a["id"] for a in attempts[:3]]
    assert [a["redelivery"] for a in attempts] == [False, True, True, True]
    assert [(g, n, st) for g, n, st in _rows(settings.database_url) if g == five] == [
        (five, 1, "requested"), (five, 2, "requested"), (five, 3, "requested")]
    assert fake.violations == []


def test_a_pending_redelivery_is_not_asked_again_and_concurrent_sweeps_ask_once(sweep_env, fake_github, receiver):
    fake, settings = fake_github, sweep_env
    receiver.answers = [503] * 6
    guids = [fake.send_webhook(receiver.url, WEBHOOK_SECRET, "issue_comment", _payload(i)) for i in range(6)]
    receiver.release.clear()  # GitHub's redeliveries hang: their attempts are not logged yet

    reports = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        barrier.wait()
        reports.append(sweep_github_deliveries(settings))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.error for r in reports] == [None, None]
    assert sorted(reports[0].requested + reports[1].requested) == sorted(guids)  # each asked by one sweep
    for guid in guids:
        assert len(fake.redelivery_requests(guid)) == 1

    # Asked, not yet redelivered: the next sweep waits instead of asking again.
    pending = sweep_github_deliveries(settings)
    assert pending.requested == [] and pending.pending == 6

    receiver.release.set()  # the redeliveries arrive and succeed (202)
    fake.wait_for_redeliveries()
    settled = sweep_github_deliveries(settings)
    assert settled.requested == [] and settled.failed == 0
    assert sum(len(fake.redelivery_requests(g)) for g in guids) == 6
    assert fake.violations == []


def test_github_errors_end_the_sweep_without_raising(sweep_env, fake_github, receiver, monkeypatch):
    fake, settings = fake_github, sweep_env
    receiver.answers = [503]  # then 202: the first redelivery succeeds
    guid = fake.send_webhook(receiver.url, WEBHOOK_SECRET, "issue_comment", _payload(1))

    fake.fail_next("GET", r"^/app/hook/deliveries$", 502)
    listing_failed = sweep_github_deliveries(settings)
    assert listing_failed.error and "502" in listing_failed.error and listing_failed.requested == []

    # GitHub fails the redelivery request itself: the claim is released so the next sweep asks again.
    fake.fail_next("POST", r"^/app/hook/deliveries/\d+/attempts$", 500)
    request_failed = sweep_github_deliveries(settings)
    assert request_failed.error and request_failed.requested == [] and _rows(settings.database_url) == []
    retried = sweep_github_deliveries(settings)
    assert retried.requested == [guid] and _rows(settings.database_url) == [(guid, 1, "requested")]
    fake.wait_for_redeliveries()
    assert [a["status_code"] for a in fake.hook_deliveries(guid)] == [503, 202]

    # GitHub refuses (404: the delivery is gone): recorded, and not asked again.
    gone = fake.send_webhook(_down_url(), WEBHOOK_SECRET, "issues", _payload(2))
    fake.fail_next("POST", r"^/app/hook/deliveries/\d+/attempts$", 404)
    refused = sweep_github_deliveries(settings)
    assert refused.error is None and refused.refused == [gone] and refused.requested == []
    assert (gone, 1, "refused") in _rows(settings.database_url)
    assert sweep_github_deliveries(settings).requested == []
    assert fake.redelivery_requests(gone) == []

    # Without App credentials the sweep does nothing at all.
    monkeypatch.delenv("OMOI_GITHUB_PRIVATE_KEY")
    reset_settings_cache()
    calls = len(fake.calls)
    assert sweep_github_deliveries(get_settings()).skipped == "no_app_credentials"
    assert len(fake.calls) == calls


def test_only_the_look_back_window_and_the_page_cap_are_read(sweep_env, fake_github, monkeypatch):
    fake = fake_github  # sweep_env: in-process settings on this database
    guids = [fake.send_webhook(_down_url(), WEBHOOK_SECRET, "issues", _payload(i)) for i in range(5)]
    with fake.state.lock:  # the first one failed two hours ago: outside the 60-minute window
        fake.state.hook_deliveries[0].delivered_at -= 7200
    monkeypatch.setattr("app.intake.redelivery.PER_PAGE", 2)
    monkeypatch.setenv("OMOI_GITHUB_REDELIVERY_MAX_PAGES", "1")
    reset_settings_cache()
    capped = sweep_github_deliveries(get_settings())
    assert capped.requested == guids[3:] and capped.scanned == 2
    assert len(fake.calls_matching("GET", r"^/app/hook/deliveries$")) == 1
    monkeypatch.setenv("OMOI_GITHUB_REDELIVERY_MAX_PAGES", "10")
    reset_settings_cache()
    fake.wait_for_redeliveries()
    windowed = sweep_github_deliveries(get_settings())
    assert guids[0] not in windowed.requested and set(guids[1:3]) <= set(windowed.requested)
    assert fake.redelivery_requests(guids[0]) == []


def test_a_claim_left_by_a_dead_sweep_is_released_after_15_minutes(sweep_env, fake_github):
    fake, settings = fake_github, sweep_env
    old = fake.send_webhook(_down_url(), WEBHOOK_SECRET, "issues", _payload(1))
    fresh = fake.send_webhook(_down_url(), WEBHOOK_SECRET, "issues", _payload(2))
    with session_scope(settings.database_url) as s:  # claimed, then the sweep died before asking GitHub
        for guid, age in ((old, 20), (fresh, 1)):
            [attempt] = fake.hook_deliveries(guid)
            s.add(WebhookRedelivery(guid=guid, attempt=1, github_delivery_id=attempt["id"], event="issues",
                                    status="claimed", requested_at=utc_now() - timedelta(minutes=age)))
    report = sweep_github_deliveries(settings)
    assert report.requested == [old] and report.pending == 1
    assert sorted(_rows(settings.database_url)) == sorted([(old, 1, "requested"), (fresh, 1, "claimed")])


def test_redeliver_command_runs_one_sweep(fake_github, rsa_keypair, tmp_path: Path):
    env = {**os.environ, **base_env(fake_github, rsa_keypair, f"sqlite:///{tmp_path}/omoi.db", "memory://",
                                    tmp_path / "data", free_port()), "PYTHONPATH": str(ROOT)}
    guid = fake_github.send_webhook(_down_url(), WEBHOOK_SECRET, "issues", _payload(1))

    def run(*args: str) -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "app", "redeliver", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr

    code, report = run("--dry-run")
    assert code == 0 and report["would_request"] == [guid] and report["requested"] == []
    assert fake_github.redelivery_requests() == []
    code, report = run()
    assert code == 0 and report["requested"] == [guid]
    assert len(fake_github.redelivery_requests(guid)) == 1
    env["OMOI_GITHUB_API_URL"] = f"http://127.0.0.1:{free_port()}"  # GitHub unreachable: exit 1, no traceback
    env["OMOI_GITHUB_MAX_RETRIES"] = "0"
    code, report = run()
    assert code == 1 and "ClientConnectorError" in report["error"]


def test_delivery_sent_while_omoi_was_down_is_redelivered_once_and_processed(fake_github, omoi_world):
    fake = fake_github
    procs = omoi_world(github=fake, site=SITE, extra_env={"OMOI_GITHUB_REDELIVERY_INTERVAL_SECONDS": "1"},
                       start=False)  # omoi is down
    hook_url = procs.url + "/webhooks/github"

    def help_comment(number: int) -> tuple[int, dict]:
        created = fake.add_issue_comment(REPO, number, body="/omoi help", user="alice")
        return created["id"], issue_comment_created_payload(
            installation_id=INSTALLATION, repo_full_name=REPO, issue_number=number, body="/omoi help",
            sender_login="alice", comment_id=created["id"])

    def replies(number: int, comment_id: int) -> list[dict]:
        marker = f"<!-- omoi:reply to={comment_id} "
        return [c for c in fake.issue_comments(REPO, number) if c["body"].startswith(marker)]

    def status(guid: str) -> str | None:
        with session_scope(procs.database_url) as s:
            return s.scalars(select(WebhookDelivery.status).where(WebhookDelivery.delivery_id == guid)).first()

    # omoi is down: GitHub records "failed to connect to host".
    lost_comment, lost_payload = help_comment(1)
    lost = fake.send_webhook(hook_url, WEBHOOK_SECRET, "issue_comment", lost_payload)
    assert [(a["status_code"], a["status"]) for a in fake.hook_deliveries(lost)] == [(0, "failed to connect to host")]

    # The web process is back: one delivery arrives, one is refused for its signature (401: not redelivered).
    procs.start("web", "web")
    procs.wait_healthy()
    ok_comment, ok_payload = help_comment(2)
    ok = fake.send_webhook(hook_url, WEBHOOK_SECRET, "issue_comment", ok_payload)
    forged = fake.send_webhook(hook_url, "not-the-secret", "issue_comment", _payload(9))
    assert [a["status_code"] for a in fake.hook_deliveries(ok) + fake.hook_deliveries(forged)] == [202, 401]

    # A worker with beat (redelivery sweep every second) finds the lost delivery and asks for it once.
    procs.start("worker", "worker", "--beat")
    wait_for(lambda: status(lost) == "done" and replies(1, lost_comment), timeout=90,
             message=f"the lost delivery redelivered and processed\n{procs.log_text('worker')[-3000:]}")
    wait_for(lambda: replies(2, ok_comment), timeout=60, message="the delivered comment answered")

    # Several more sweeps change nothing.
    sweeps = len(fake.calls_matching("GET", r"^/app/hook/deliveries$"))
    wait_for(lambda: len(fake.calls_matching("GET", r"^/app/hook/deliveries$")) >= sweeps + 3, timeout=30,
             message=f"three more sweeps\n{procs.log_text('worker')[-3000:]}")
    assert len(fake.redelivery_requests(lost)) == 1
    assert fake.redelivery_requests(ok) == [] and fake.redelivery_requests(forged) == []
    assert [(a["redelivery"], a["status_code"]) for a in fake.hook_deliveries(lost)] == [(False, 0), (True, 202)]
    assert len(replies(1, lost_comment)) == 1 and len(replies(2, ok_comment)) == 1
    assert status(forged) is None
    assert _rows(procs.database_url) == [(lost, 1, "requested")]
    assert fake.violations == []
