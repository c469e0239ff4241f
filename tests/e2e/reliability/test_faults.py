"""Faults: the database, GitHub, the model API and the broker failing while omoi works.

The real web process and a real Celery worker run against the GitHub and Anthropic stand-ins;
faults are injected with the stand-ins' `fail_next`, by closing the database to connections, and
by killing a private redis-server. Every test checks that nothing acknowledged is lost and
nothing is done twice: comments are counted in the GitHub stand-in, rows in the database.
"""
from __future__ import annotations

import shutil
import signal
import time

import pytest
from sqlalchemy import select

from app.db.models import LLMCall, Spec, SpecStage, WebhookDelivery
from app.db.session import get_engine, session_scope
from tests.fakes.anthropic import FakeAnthropic, is_repair, request_text
from tests.support.conversation import label, omoi_comments
from tests.support.plans import FLAG_FILES, FLAG_REQUIREMENTS
from tests.support.processes import OmoiProcesses, send_sweep
from tests.support.services import (
    PrivateRedis,
    create_pg_database,
    drop_pg_database,
    pg_admin,
    postgres_available,
    require_service,
)
from tests.support.waits import wait_for
from tests.support.world import Site, World, make_world, start_github

REPO = "octo/faults"
INSTALLATION = 81
FILES = {"README.md": "# faults\nRun `pytest`.\n", **FLAG_FILES}
SITE = Site(REPO, INSTALLATION, FILES, people={"alice": "maintain"})
REQUIREMENTS = FLAG_REQUIREMENTS
MALFORMED = {"summary": 42, "stories": "none"}  # fails the schema: the repair round-trip must fix it


def _requirements(req: dict) -> dict:
    if "MALFORMED-OUTPUT" in request_text(req) and not is_repair(req):
        return MALFORMED
    return REQUIREMENTS


def _stand_ins(rsa_keypair) -> tuple:
    """The GitHub and Anthropic stand-ins of a test (or of this module's stack); the model drafts
    requirements (malformed once where the issue asks for it) and finds nothing in review."""
    gh = start_github(rsa_keypair)
    ai = FakeAnthropic().start()
    ai.on_tool("emit_requirements_draft", _requirements, once=False)
    ai.on_tool("emit_review", {"findings": []}, once=False)
    return gh, ai


def _start(workdir, rsa_keypair, gh, ai, **options) -> World:
    """web + worker against the stand-ins, SITE seeded; SQLite and the embedded broker in `workdir`
    unless `options` (tests/support/world.py make_world) say otherwise."""
    return make_world(workdir, rsa_keypair, github=gh, anthropic=ai, site=SITE, **options).start_all()


def _kill(procs: OmoiProcesses) -> None:
    for name in list(procs.procs):
        procs.stop(name, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(rsa_keypair, tmp_path_factory):
    """web + worker on SQLite and the embedded broker, shared by the tests of this module (each
    uses its own issue number, so counts never mix)."""
    tmp = tmp_path_factory.mktemp("faults")
    gh, ai = _stand_ins(rsa_keypair)
    procs = _start(tmp, rsa_keypair, gh, ai)
    yield procs
    _kill(procs)
    gh.stop()
    ai.stop()


# --- helpers --------------------------------------------------------------------------------


def wait_requirements(procs, number: int, timeout: float = 60) -> dict:
    def ready():
        found = omoi_comments(procs, "<!-- omoi:spec stage=requirements ", number)
        return found[0] if found and "waiting for approval" in found[0]["body"] else None
    return wait_for(ready, timeout=timeout, message=f"requirements of #{number}\n{procs.log_text('worker')[-3000:]}")


def assert_planned_once(procs, number: int) -> None:
    """One acknowledgement, one requirements comment, one requirements row, one spec."""
    assert len(omoi_comments(procs, "<!-- omoi:ack", number)) == 1
    assert len(omoi_comments(procs, "<!-- omoi:spec stage=requirements ", number)) == 1
    with session_scope(procs.database_url) as s:
        spec = s.scalars(select(Spec).where(Spec.repo_full_name == REPO, Spec.issue_number == number)).one()
        rows = s.scalars(select(SpecStage).where(SpecStage.spec_id == spec.id)).all()
        assert [(r.stage, r.revision, r.status) for r in rows] == [("requirements", 1, "waiting")]
    assert procs.github.violations == []


def delivery(procs, delivery_id: str) -> WebhookDelivery | None:
    with session_scope(procs.database_url) as s:
        row = s.scalars(select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id)).one_or_none()
        if row is not None:
            s.expunge(row)
        return row


def statuses(procs, method: str, path_regex: str) -> list[int]:
    return [c.status for c in procs.github.calls_matching(method, path_regex)]


# --- GitHub ---------------------------------------------------------------------------------


def test_github_500_then_502_then_success_posts_each_comment_once(stack):
    stack.github.add_issue(REPO, 21, title="Flag", body="Add a flag.")
    stack.github.fail_next("POST", rf"^/repos/{REPO}/issues/21/comments$", 500)
    stack.github.fail_next("POST", rf"^/repos/{REPO}/issues/21/comments$", 502)
    status, _ = label(stack, 21, delivery_id="gh-5xx")
    assert status == 202
    wait_requirements(stack, 21)
    assert_planned_once(stack, 21)
    assert statuses(stack, "POST", rf"^/repos/{REPO}/issues/21/comments$")[:3] == [500, 502, 201]
    row = delivery(stack, "gh-5xx")
    assert (row.status, row.attempts) == ("done", 1)  # retried inside the client, not redone


def test_comment_created_before_its_answer_was_lost_is_not_posted_twice(stack):
    """GitHub created the comment, then answered 502 (or the connection dropped): omoi finds it by
    its marker instead of posting it again."""
    stack.github.add_issue(REPO, 29, title="Flag", body="Add a flag.")
    stack.github.fail_next("POST", rf"^/repos/{REPO}/issues/29/comments$", 502, performed=True, times=2)
    status, _ = label(stack, 29, delivery_id="gh-lost-answer")
    assert status == 202
    wait_requirements(stack, 29)
    assert_planned_once(stack, 29)  # one acknowledgement, one requirements comment
    assert statuses(stack, "POST", rf"^/repos/{REPO}/issues/29/comments$") == [502, 502]  # both made, never re-sent
    assert delivery(stack, "gh-lost-answer").status == "done"


def test_secondary_rate_limit_403_waits_for_retry_after(stack):
    stack.github.add_issue(REPO, 22, title="Flag", body="Add a flag.")
    # the acknowledgement is omoi's first write for a labelled issue
    stack.github.fail_next("POST", rf"^/repos/{REPO}/issues/22/comments$", 403, headers={"retry-after": "1"})
    started = time.monotonic()
    assert label(stack, 22, delivery_id="gh-403")[0] == 202
    wait_for(lambda: omoi_comments(stack, "<!-- omoi:ack", 22), message="ack of #22")
    assert time.monotonic() - started >= 1.0
    wait_requirements(stack, 22)
    assert_planned_once(stack, 22)
    assert statuses(stack, "POST", rf"^/repos/{REPO}/issues/22/comments$")[:2] == [403, 201]
    assert len(omoi_comments(stack, "<!-- omoi:ack", 22)) == 1
    assert '"status": 403' in stack.log_text("worker") and '"delay": 1.0' in stack.log_text("worker")
    assert delivery(stack, "gh-403").status == "done"


def test_deleted_issue_404_ends_failed_with_a_reason_and_is_not_retried(stack):
    # issue #23 was deleted after the label event was sent: GitHub answers 404
    assert label(stack, 23, delivery_id="gh-404")[0] == 202
    row = wait_for(lambda: (d := delivery(stack, "gh-404")) and d.status == "failed" and d,
                   message="delivery gh-404 failed\n" + stack.log_text("worker")[-3000:])
    assert row.attempts == 1 and "BadRequest: Not Found" in row.error  # the 404, recorded
    calls_before = len(stack.github.calls_matching("POST", rf"^/repos/{REPO}/issues/23/"))
    send_sweep(stack.env)  # the minute sweep must not pick a failed delivery up again
    assert label(stack, 23, delivery_id="gh-404")[0] == 200  # nor a redelivery of the same id
    time.sleep(1.5)
    row = delivery(stack, "gh-404")
    assert (row.status, row.attempts) == ("failed", 1)
    assert len(stack.github.calls_matching("POST", rf"^/repos/{REPO}/issues/23/")) == calls_before
    # the worker is alive and well: the next issue is planned
    stack.github.add_issue(REPO, 24, title="Flag", body="Add a flag.")
    assert label(stack, 24)[0] == 202
    wait_requirements(stack, 24)
    assert_planned_once(stack, 24)


# --- the model API --------------------------------------------------------------------------


def test_model_429_then_success_writes_the_stage_once(stack):
    stack.github.add_issue(REPO, 25, title="Flag", body="Add a flag.")
    before = len(stack.anthropic.requests)
    stack.anthropic.fail_next(429)
    assert label(stack, 25, delivery_id="ai-429")[0] == 202
    wait_requirements(stack, 25)
    assert_planned_once(stack, 25)
    answered = [r.status for r in stack.anthropic.requests[before:] if r.path == "/v1/messages"]
    assert answered[:2] == [429, 200]
    with session_scope(stack.database_url) as s:
        spec_id = s.scalars(select(Spec.id).where(Spec.repo_full_name == REPO, Spec.issue_number == 25)).one()
        purposes = [c.purpose for c in s.scalars(select(LLMCall).where(LLMCall.spec_id == spec_id, LLMCall.ok))]
    assert purposes.count("requirements") == 1


def test_malformed_tool_output_is_repaired_then_succeeds(stack):
    stack.github.add_issue(REPO, 26, title="Flag", body="Add a flag. MALFORMED-OUTPUT")
    assert label(stack, 26)[0] == 202
    comment = wait_requirements(stack, 26)
    assert_planned_once(stack, 26)
    assert "WHEN the user passes --flag" in comment["body"]
    tries = [r for r in stack.anthropic.message_requests() if "MALFORMED-OUTPUT" in request_text(r)
             and r.get("tool_choice", {}).get("name") == "emit_requirements_draft"]
    assert [is_repair(r) for r in tries] == [False, True]
    assert "summary" in request_text(tries[1])  # the validation errors went back to the model
    with session_scope(stack.database_url) as s:
        spec_id = s.scalars(select(Spec.id).where(Spec.repo_full_name == REPO, Spec.issue_number == 26)).one()
        calls = [(c.purpose, c.ok) for c in s.scalars(select(LLMCall).where(LLMCall.spec_id == spec_id)
                                                       .order_by(LLMCall.id))]
    assert calls[:2] == [("requirements", False), ("requirements:repair", True)]


def _spec_for(settings, number: int) -> int:
    from app.planning.flow import start_spec

    spec_id, started = start_spec(settings, REPO, number, repository_id=None, installation_id=INSTALLATION,
                                  title="Flag", requested_by="alice")
    assert started
    return spec_id


def test_model_529_until_exhausted_ends_in_one_visible_failure_comment(github_env, fake_github, fake_anthropic,
                                                                      monkeypatch):
    """The spec runner in-process (Celery's countdowns would make this take minutes): while
    attempts remain a 529 is retried quietly; the last attempt reports one failure comment."""
    from app.config import get_settings, reset_settings_cache
    from app.planning import runner

    monkeypatch.setenv("OMOI_LLM_MAX_RETRIES", "1")
    reset_settings_cache()
    fake_github.add_installation(INSTALLATION, "octo")
    fake_github.add_repo(REPO, installation_id=INSTALLATION, files=FILES)
    fake_github.add_issue(REPO, 27, title="Flag", body="Add a flag.")
    fake_anthropic.fail_next(529, times=1000)
    settings = get_settings()
    spec_id = _spec_for(settings, 27)

    result = runner.run_stage(spec_id, "requirements", None, "label:ai-529", attempt=0)
    assert (result.outcome, result.retry_in) == ("retry", 5)
    assert fake_github.issue_comments(REPO, 27) == []  # nothing shown while retries remain
    assert [r.status for r in fake_anthropic.requests] == [529, 529]  # the SDK's own retry, then ours

    result = runner.run_stage(spec_id, "requirements", None, "label:ai-529", attempt=runner.MAX_ATTEMPTS)
    assert result.outcome == "failed"
    errors = [c for c in fake_github.issue_comments(REPO, 27) if c["body"].startswith("<!-- omoi:error stage=requirements")]
    assert len(errors) == 1 and "could not write the requirements" in errors[0]["body"]
    assert "529" in errors[0]["body"] or "overloaded" in errors[0]["body"].lower()
    # the broker redelivers the finished task: it is not run, and nothing is posted twice
    assert runner.run_stage(spec_id, "requirements", None, "label:ai-529", attempt=0).outcome == "already-done"
    assert len(fake_github.issue_comments(REPO, 27)) == 1
    with session_scope() as s:
        spec = s.get(Spec, spec_id)
        assert spec.state == "failed" and spec.last_error == "planning/error"
        assert "529" in spec.last_error_params["detail"]
        assert s.scalars(select(SpecStage).where(SpecStage.spec_id == spec_id)).all() == []
        assert all(not c.ok for c in s.scalars(select(LLMCall).where(LLMCall.spec_id == spec_id)))
    assert fake_github.violations == []


@pytest.mark.soak
def test_model_529_until_exhausted_through_celery(stack):
    """The same through the real worker and Celery's retry countdowns (about two minutes)."""
    stack.github.add_issue(REPO, 28, title="Flag", body="Add a flag.")
    stack.anthropic.fail_next(529, times=10_000)
    try:
        assert label(stack, 28)[0] == 202
        wait_for(lambda: omoi_comments(stack, "<!-- omoi:error stage=requirements", 28), timeout=300,
                 interval=1, message="failure comment of #28")
    finally:
        with stack.anthropic._lock:
            stack.anthropic._faults.clear()
    assert len(omoi_comments(stack, "<!-- omoi:error", 28)) == 1
    assert len(omoi_comments(stack, "<!-- omoi:ack", 28)) == 1


# --- the database ---------------------------------------------------------------------------


def test_database_down_at_webhook_time_is_503_and_the_redelivery_is_processed_once(rsa_keypair, tmp_path):
    """PostgreSQL refuses connections while GitHub delivers: 503 (nothing acknowledged, nothing
    stored); GitHub's redelivery after the outage is stored and processed exactly once."""
    require_service(postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    url = create_pg_database()
    name = url.rsplit("/", 1)[1]
    gh, ai = _stand_ins(rsa_keypair)
    procs = None
    try:
        procs = _start(tmp_path, rsa_keypair, gh, ai, database=url)
        gh.add_issue(REPO, 41, title="Flag", body="Add a flag.")
        pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        pg_admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        try:
            status, body = label(procs, 41, delivery_id="db-down")
            assert status == 503, body
            assert "redeliver" in body
        finally:
            pg_admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert delivery(procs, "db-down") is None  # not stored: nothing was acknowledged
        assert gh.issue_comments(REPO, 41) == []
        # GitHub redelivers (same delivery id), perhaps twice
        assert label(procs, 41, delivery_id="db-down")[0] == 202
        assert label(procs, 41, delivery_id="db-down")[0] == 200
        wait_requirements(procs, 41)
        assert_planned_once(procs, 41)
        row = delivery(procs, "db-down")
        assert (row.status, row.attempts) == ("done", 1)
    finally:
        if procs is not None:
            _kill(procs)
        gh.stop()
        ai.stop()
        get_engine(url).dispose()
        drop_pg_database(url)


# --- the broker -----------------------------------------------------------------------------


def test_redis_restart_loses_no_delivery(rsa_keypair, tmp_path):
    """Redis dies (its queue lost) and comes back: deliveries that arrived meanwhile are stored and
    acknowledged, the ones whose messages were lost stay `queued`, and the sweep gets every one
    processed exactly once."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis_srv = PrivateRedis(tmp_path)
    redis_srv.start()
    gh, ai = _stand_ins(rsa_keypair)
    procs = None
    try:
        procs = _start(tmp_path, rsa_keypair, gh, ai, broker=f"redis://127.0.0.1:{redis_srv.port}/0")
        for n in (51, 52, 53, 54):
            gh.add_issue(REPO, n, title="Flag", body="Add a flag.")
        assert label(procs, 51, "rd-51")[0] == 202  # the broker works
        wait_requirements(procs, 51)

        # 1. with the worker stopped, a delivery is queued in Redis ... and Redis loses it
        procs.stop("worker", signal.SIGKILL)
        status, body = label(procs, 52, "rd-52")
        assert (status, '"queued"' in body) == (202, True)
        redis_srv.kill()
        # 2. deliveries while Redis is down: stored, acknowledged, to be enqueued later
        for n in (53, 54):
            started = time.monotonic()
            status, body = label(procs, n, f"rd-{n}")
            assert status == 202 and '"stored"' in body, body
            assert time.monotonic() - started < 10  # inside GitHub's 10 s
        assert [delivery(procs, f"rd-{n}").status for n in (52, 53, 54)] == ["queued", "received", "received"]
        # 3. Redis comes back empty; a worker starts; the sweep re-enqueues what is unfinished
        redis_srv.start()
        time.sleep(max(0, int(procs.env["OMOI_DELIVERY_STALE_SECONDS"]) - 1))
        procs.start("worker", "worker")  # its start-up sweep is one; beat's minute sweep another
        send_sweep(procs.env)
        for n in (52, 53, 54):
            wait_requirements(procs, n, timeout=90)
        for n in (51, 52, 53, 54):
            assert_planned_once(procs, n)
            row = delivery(procs, f"rd-{n}")
            assert row.status == "done", (n, row.status, row.error)
    finally:
        if procs is not None:
            _kill(procs)
        redis_srv.kill()
        gh.stop()
        ai.stop()
