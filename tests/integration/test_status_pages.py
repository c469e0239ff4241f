"""Read-only status pages behind signed, expiring links (app/web/links.py)."""
from __future__ import annotations

import hashlib
import hmac
import re
import time
from datetime import timedelta
from decimal import Decimal
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from app.config import get_settings
from app.db.models import Discovery, Installation, Intervention, LLMCall, Spec, SpecStage, SpecTask, TaskTranscript
from app.db.session import session_scope
from app.web.links import (
    LINK_TTL_SECONDS,
    installation_status_url,
    run_status_url,
    sign_path,
    signature,
    spec_status_path,
    spec_status_url,
    verify,
)
from app.timeutil import utc_now
from app.web.server import create_app
from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_available
from tests.support.env import WEBHOOK_SECRET
from tests.support.services import require_service

LEAKED_TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0K1l2"


def seed() -> dict:
    now = utc_now()
    with session_scope() as s:
        s.add(Installation(id=77, account_login="octo", account_type="Organization"))
        spec = Spec(
            installation_id=77, repository_id=5, repo_full_name="octo/hello", issue_number=12,
            title="Add <script>alert(1)</script> export", state="design", requested_by="alice",
            base_sha="a" * 40, branch="omoi/issue-12-add-export",
            last_error=f"push failed with token {LEAKED_TOKEN} and secret {WEBHOOK_SECRET}",
            created_at=now - timedelta(hours=3),
        )
        other = Spec(installation_id=77, repo_full_name="octo/other", issue_number=3, title="Other", state="blocked")
        elsewhere = Spec(installation_id=99, repo_full_name="evil/corp", issue_number=1, title="Not yours")
        s.add_all([spec, other, elsewhere])
        s.flush()
        s.add_all([
            SpecStage(spec_id=spec.id, stage="requirements", revision=1, status="approved", document={},
                      gates=[{"name": "coverage", "passed": True, "message": "ok", "severity": "error"}],
                      approved_by="bob", approved_at=now - timedelta(hours=2), created_at=now - timedelta(hours=2, minutes=50)),
            SpecStage(spec_id=spec.id, stage="design", revision=1, status="superseded", document={},
                      gates=[{"name": "references", "passed": False, "message": "D9 is not defined", "severity": "error"}],
                      feedback="please use sqlite", created_at=now - timedelta(hours=1, minutes=30)),
            SpecStage(spec_id=spec.id, stage="design", revision=2, status="waiting", document={},
                      gates=[{"name": "references", "passed": True, "message": "ok", "severity": "error"},
                             {"name": "size", "passed": False, "message": "large design", "severity": "warning"}],
                      created_at=now - timedelta(hours=1)),
            LLMCall(spec_id=spec.id, purpose="requirements", model="claude-sonnet-4-5", input_tokens=1200,
                    output_tokens=300, cache_creation_input_tokens=1000, cache_read_input_tokens=0,
                    cost_usd=Decimal("0.012345"), duration_ms=4200),
            LLMCall(spec_id=spec.id, purpose="design", model="claude-sonnet-4-5", input_tokens=800, output_tokens=200,
                    cache_read_input_tokens=1000, cost_usd=Decimal("0.005"), duration_ms=3000, ok=False,
                    error=f"upstream said Authorization: Bearer {LEAKED_TOKEN}"),
            LLMCall(spec_id=other.id, purpose="tasks", model="claude-haiku-4-5", input_tokens=10, output_tokens=1,
                    cost_usd=Decimal("0.5")),
        ])
        return {"spec_id": spec.id}


@pytest.fixture
async def client(omoi_env, aiohttp_client, monkeypatch):
    monkeypatch.setenv("OMOI_PUBLIC_URL", "https://omoi.example.test")
    from app.config import reset_settings_cache

    reset_settings_cache()
    seed()
    return await aiohttp_client(create_app(get_settings()))


def spec_id_of(repo: str, issue: int) -> int:
    with session_scope() as s:
        return s.query(Spec.id).filter(Spec.repo_full_name == repo, Spec.issue_number == issue).scalar()


def _relative(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


def _text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


async def test_spec_page_shows_phase_revisions_approvals_gates_calls_and_timings(client):
    url = spec_status_url(get_settings(), "octo/hello", 12)
    assert url.startswith("https://omoi.example.test/status/octo/hello/12?exp=")
    resp = await client.get(_relative(url))
    html = await resp.text()
    assert resp.status == 200, html
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    text = " ".join(_text(html).split())
    assert '<span class="state" id="state">design</span>' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html  # escaped, not run
    assert "octo/hello#12" in text and "Requested by alice" in text
    # revisions with their gates and the revision feedback
    assert "requirements 1 approved" in text
    assert "design 1 superseded" in text and "✗ references: D9 is not defined" in text
    assert "Revision requested: please use sqlite" in text
    assert "design 2 waiting" in text and "! size: large design" in text
    assert "requirements revision 1: approved by bob" in text
    # timings
    assert "Requirements written" in text and "Requirements approved" in text and "Design written" in text
    # model calls and totals (only this spec's calls)
    assert "claude-sonnet-4-5 1200 300 1000 0 0.0123" in text
    assert "Total (2 calls) 2000 500 1000 1000 0.0173 7.2s" in text
    assert "claude-haiku" not in text
    # secrets never shown
    assert LEAKED_TOKEN not in html and WEBHOOK_SECRET not in html
    assert html.count("[REDACTED]") >= 3
    assert 'href="http' in html and "/octo/hello/issues/12" in html


async def test_installation_page_lists_its_specs_with_working_links(client):
    resp = await client.get(_relative(installation_status_url(get_settings(), 77)))
    html = await resp.text()
    assert resp.status == 200, html
    text = _text(html)
    assert "octo/hello#12" in text and "octo/other#3" in text
    assert "evil/corp" not in text
    assert "0.5000" in text  # per-spec model cost
    links = re.findall(r'href="(/status/[^"]+)"', html)
    assert len(links) == 2
    for link in links:
        assert (await client.get(unescape(link))).status == 200


async def test_anything_but_a_valid_unexpired_signature_is_403(client):
    settings = get_settings()
    path = spec_status_path("octo/hello", 12)
    good = sign_path(settings, path)
    exp = parse_qs(urlsplit(good).query)["exp"][0]
    sig = parse_qs(urlsplit(good).query)["sig"][0]
    expired = sign_path(settings, path, now=time.time() - LINK_TTL_SECONDS - 10)
    far = int(time.time()) + LINK_TTL_SECONDS * 4
    webhook_style = hmac.new(WEBHOOK_SECRET.encode(), f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()
    bad = [
        path,
        f"{path}?exp={exp}",
        f"{path}?sig={sig}",
        f"{path}?exp={int(exp) + 1}&sig={sig}",
        f"{path}?exp={exp}&sig={sig[:-1]}0" if sig[-1] != "0" else f"{path}?exp={exp}&sig={sig[:-1]}1",
        f"{path}?exp={exp}&sig={webhook_style}",  # the key is derived, not the webhook secret itself
        f"{path}?exp={far}&sig={signature(settings, path, far)}",  # further ahead than 7 days
        f"{path}?exp=-1&sig={sig}",
        expired,
        "/status/octo/hello/13?" + good.split("?", 1)[1],  # another issue's link
        "/status/installations/77?" + good.split("?", 1)[1],
        "/status/octo/hello/12abc?" + good.split("?", 1)[1],
    ]
    for target in bad:
        resp = await client.get(target)
        assert resp.status == 403, target
        assert "invalid or has expired" in await resp.text()
    assert (await client.get(good)).status == 200


async def test_valid_link_to_unknown_spec_is_404(client):
    resp = await client.get(sign_path(get_settings(), spec_status_path("octo/hello", 999)))
    assert resp.status == 404
    assert (await client.get(sign_path(get_settings(), "/status/installations/5"))).status == 404


def test_links_expire_after_seven_days_and_follow_the_webhook_secret(omoi_env):
    settings = get_settings()
    path = spec_status_path("octo/hello", 12)
    t0 = 1_700_000_000
    link = sign_path(settings, path, now=t0)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    assert int(query["exp"]) == t0 + 7 * 24 * 3600
    assert verify(settings, path, query, now=t0 + 6 * 24 * 3600)
    assert not verify(settings, path, query, now=t0 + 7 * 24 * 3600 + 1)
    rotated = settings.model_copy(update={"webhook_secret": type(settings.webhook_secret)("another-secret-xyz")})
    assert not verify(rotated, path, query, now=t0 + 60)


async def test_spec_page_in_a_browser(omoi_env, aiohttp_server, monkeypatch):
    require_service(browser_available(), "playwright with Debian's chromium")
    from playwright.async_api import async_playwright

    seed()
    server = await aiohttp_server(create_app(get_settings()))
    url = f"http://127.0.0.1:{server.port}" + sign_path(get_settings(), spec_status_path("octo/hello", 12))
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            resp = await page.goto(url)
            assert resp.status == 200
            assert await page.inner_text("#state") == "design"
            assert "Total (2 calls)" in await page.inner_text("#llm-totals")
            await page.screenshot(path=str(ARTIFACTS / f"status-{omoi_env['OMOI_DATABASE_URL'].split(':')[0]}.png"),
                                  full_page=True)
            resp = await page.goto(url.replace("sig=", "sig=0"))
            assert resp.status == 403
        finally:
            await browser.close()


# --------------------------------------------------------------------------------------------
# the run (app/web/run_page.py)

HOSTILE = "<script>alert('pwned')</script><img src=x onerror=alert(2)>"


def seed_run(spec_id: int, *, running: bool = True) -> None:
    """A run of the seeded spec: T1 done, T2 running its second attempt (a hostile agent's transcript),
    T3 waiting for both; the guardian's and a person's messages, one discovery."""
    now = utc_now()
    trajectory = [
        {"role": "system", "type": "init"},
        {"role": "assistant", "type": "text", "text": f"Here is my plan {HOSTILE}"},
        {"role": "assistant", "type": "tool_use", "id": "tu1", "name": "Bash",
         "input": '{"command": "echo \\"</pre><script>steal()</script>\\""}'},
        {"role": "user", "type": "tool_result", "tool_use_id": "tu1", "is_error": False,
         "content": f"token={LEAKED_TOKEN} </pre><script>steal()</script>"},
        {"role": "assistant", "type": "tool_use", "id": "tu2", "name": "Write",
         "input": '{"file_path": "/workspace/export.py", "content": "print(1)"}'},
    ]
    with session_scope() as s:
        spec = s.get(Spec, spec_id)
        spec.state, spec.run_state, spec.pr_number = "running", "running" if running else "succeeded", 31
        spec.run_started_at = now - timedelta(minutes=20)
        spec.run_finished_at = None if running else now
        s.add_all([
            SpecTask(spec_id=spec_id, task_id="T1", title="Parser", status="done", attempts=1, files=["parse.py"],
                     cost_usd=Decimal("0.25"), duration_s=62, commit_sha="b" * 40,
                     evidence=[{"command": "pytest -q", "exit_code": 0, "tail": "1 passed"}],
                     trajectory=[{"role": "result", "type": "success", "result": "T1 is done."}]),
            SpecTask(spec_id=spec_id, task_id="T2", title="Export <b>CSV</b>", status="running" if running else "done",
                     attempts=2, depends_on=[], cost_usd=Decimal("0.5"), trajectory=trajectory,
                     trajectory_at=now, heartbeat_at=now, guidance="Write export.py first."),
            SpecTask(spec_id=spec_id, task_id="T3", title="Wire it up", status="pending" if running else "done",
                     depends_on=["T1", "T2"]),
            Intervention(spec_id=spec_id, task_id="T2", attempt=1, source="guardian", verdict="looping",
                         action="retry_with_guidance", reason="it runs ls again and again",
                         guidance="Write export.py first."),
            Intervention(spec_id=spec_id, task_id="T2", attempt=2, source="person", verdict="on_track",
                         action="redirect", reason="", reason_params={"user": "carol"},
                         guidance=f"Use semicolons {HOSTILE}", delivered_at=now),
            # the first attempt's transcript, kept after the retry reset the task row's trajectory
            TaskTranscript(spec_id=spec_id, task_id="T2", attempt=1, total=130, cost_usd=Decimal("0.125"),
                           entries=[{"role": "assistant", "type": "tool_use", "id": f"t{i}", "name": "Bash",
                                     "input": f'{{"command": "ls # round {i}"}}'} for i in range(70, 130)]),
            Discovery(spec_id=spec_id, task_id="T2", kind="bug", title="Dates <i>break</i>",
                      description="Parsing 2026-02-30 crashes.", status="added", new_task_id="T4"),
        ])


async def test_spec_page_shows_the_run_its_tasks_transcripts_and_supervision(client):
    seed_run(spec_id_of("octo/hello", 12))
    url = _relative(spec_status_url(get_settings(), "octo/hello", 12))
    resp = await client.get(url + "&extra=%22%3E%3Cb%3E")  # other parameters are ignored, never echoed
    html = await resp.text()
    assert resp.status == 200, html
    text = " ".join(_text(html).split())
    assert '<span class="state" id="run-state">running</span>' in html
    assert "Cost of the tasks $0.7500" in text and 'href="https://github.com/octo/hello/pull/31"' in html
    assert "1 done · 1 pending · 1 running" in text
    # the graph: T1 and T2 first, T3 after both; each node shows the task's state
    graph = html[html.index('id="task-graph"'):html.index('id="tasks"')]
    assert graph.index('id="node-T1"') < graph.index('id="node-T3"') and graph.index('id="node-T2"') < graph.index('id="node-T3"')
    assert re.search(r'id="node-T2"><strong>T2</strong> <span class="node-state">running</span>', html)
    assert "after T1, T2" in text
    # the task table: attempts, cost, commit
    assert "T1 Parser done 1 0.2500 1m 02s bbbbbbb" in text
    assert "T2 Export <b>CSV</b> running 2 0.5000" in text
    # per task: attempts with what happened in each, the latest attempt's transcript
    assert "Attempt 1" in text and "guardian: looping, retry_with_guidance: it runs ls again and again" in text
    assert "Attempt 2 (the latest)" in text and "message from carol" in text
    transcript = html[html.index('id="transcript-T2"'):]
    transcript = transcript[:transcript.index("</ol>")]
    assert "tool call</span> <code>Bash</code>" in transcript and "tool call</span> <code>Write</code>" in transcript
    assert "/workspace/export.py" in transcript and "Here is my plan" in transcript
    first = html[html.index('id="transcript-T2-1"'):]
    first = first[:first.index("</ol>")]
    assert first.count("<li") == 60 and "round 129" in first and "round 69" not in first
    assert "Attempt 1 · $0.1250" in text and "Transcript: the last 60 of 130 messages and tool calls" in text
    assert "pytest -q" in text
    # people's messages, supervision and discoveries
    assert "Use semicolons" in html[html.index('id="messages"'):]
    assert "it runs ls again and again" in html[html.index('id="interventions"'):]
    assert "Dates <i>break</i>" in text and "added: T4" in text
    # model output is escaped, never markup, and secrets never shown
    # the only script is the page's own (its nonce is the one the CSP allows), no image at all
    nonce = re.search(r"script-src 'nonce-([\w-]+)'", resp.headers["Content-Security-Policy"]).group(1)
    assert re.findall(r"<script[^>]*>", html) == [f'<script nonce="{nonce}">'] and "<img" not in html
    assert "connect-src 'self'" in resp.headers["Content-Security-Policy"]
    assert "</pre><script>" not in html and "&lt;script&gt;steal()&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert LEAKED_TOKEN not in html and "token=[REDACTED]" in html
    # something runs: the page updates itself (its script; a refresh of the same signed link without scripts)
    refresh = re.search(r'<noscript><meta http-equiv="refresh" content="3; url=([^"]+)"></noscript>', html)
    assert refresh and unescape(refresh.group(1)) == url  # the same link: it still expires when it says
    assert "extra" not in html


async def test_a_finished_run_or_no_run_does_not_refresh(client):
    url = _relative(spec_status_url(get_settings(), "octo/hello", 12))
    html = await (await client.get(url)).text()
    assert 'id="run"' not in html and "http-equiv" not in html and "<script" not in html  # planning only
    seed_run(spec_id_of("octo/hello", 12), running=False)
    html = await (await client.get(url)).text()
    assert '<span class="state" id="run-state">succeeded</span>' in html and "3 done" in _text(html)
    assert "http-equiv" not in html and 'id="live"' not in html and "<script" not in html
    assert "script-src" not in (await client.get(url)).headers["Content-Security-Policy"]


def test_run_links_stay_the_same_all_day_and_point_at_the_run(omoi_env, monkeypatch):
    from app.config import reset_settings_cache

    settings = get_settings()
    day = 1_700_006_400  # a UTC midnight
    first, later = (run_status_url(settings, "octo/hello", 12, now=day + h * 3600) for h in (1, 23))
    assert first == later and first.endswith("#run")
    assert run_status_url(settings, "octo/hello", 12, now=day + 86400 + 1) != first
    query = {k: v[0] for k, v in parse_qs(urlsplit(first.removesuffix("#run")).query).items()}
    assert verify(settings, spec_status_path("octo/hello", 12), query, now=day + 23 * 3600)
    assert verify(settings, spec_status_path("octo/hello", 12), query, now=day + 6 * 86400)
    monkeypatch.delenv("OMOI_WEBHOOK_SECRET")
    reset_settings_cache()
    assert run_status_url(get_settings(), "octo/hello", 12) is None


async def test_a_running_run_updates_in_the_browser_without_a_reload(omoi_env, aiohttp_server):
    """A person keeps the page of a running run open: a task's state changes in the database and the
    page shows it by itself; once the run has ended the page stops refreshing."""
    require_service(browser_available(), "playwright with Debian's chromium")
    from playwright.async_api import async_playwright, expect

    seed()
    spec_id = spec_id_of("octo/hello", 12)
    seed_run(spec_id)
    server = await aiohttp_server(create_app(get_settings()))
    url = f"http://127.0.0.1:{server.port}" + _relative(run_status_url(get_settings(), "octo/hello", 12))
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            loads, fetches, errors = [], [], []
            page.on("load", lambda: loads.append(time.monotonic()))
            page.on("request", lambda r: fetches.append(r.url) if r.resource_type == "fetch" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            assert (await page.goto(url)).status == 200
            assert await page.inner_text("#node-T2 .node-state") == "running"
            assert await page.inner_text("#row-T2 .task-state") == "running"
            assert "Here is my plan <script>" in await page.text_content("#transcript-T2")  # shown as text
            assert await page.evaluate("document.querySelectorAll('main script, img').length") == 0
            await page.screenshot(path=str(ARTIFACTS / f"run-{omoi_env['OMOI_DATABASE_URL'].split(':')[0]}.png"),
                                  full_page=True)
            # the person opens T1's transcript and scrolls down to T3; a browser without scripts looks too
            await page.click("#transcript-box-T1 summary")
            await page.evaluate("window.scrollTo(0, document.getElementById('task-T3').offsetTop)")
            scrolled = await page.evaluate("window.scrollY")
            plain = await (await browser.new_context(java_script_enabled=False)).new_page()
            plain_loads = []
            plain.on("load", lambda: plain_loads.append(time.monotonic()))
            assert (await plain.goto(url)).status == 200
            with session_scope() as s:  # the worker's side: T2 finishes
                s.query(SpecTask).filter_by(spec_id=spec_id, task_id="T2").update({"status": "done"})
            # the page's CSP allows only its own script, so waits go through locators, not wait_for_function
            await expect(page.locator("#node-T2 .node-state")).to_have_text("done", timeout=15_000)
            assert await page.inner_text("#row-T2 .task-state") == "done"
            assert await page.get_attribute("#transcript-box-T1", "open") is not None  # still open
            assert abs(await page.evaluate("window.scrollY") - scrolled) < 50  # still where the person was
            await expect(plain.locator("#node-T2 .node-state")).to_have_text("done", timeout=15_000)
            assert len(plain_loads) >= 2  # without scripts: the page reloaded itself
            with session_scope() as s:  # the run ends
                s.query(SpecTask).filter_by(spec_id=spec_id, task_id="T3").update({"status": "done"})
                s.query(Spec).filter_by(id=spec_id).update({"run_state": "succeeded", "run_finished_at": utc_now()})
            await expect(page.locator("#run-state")).to_have_text("succeeded", timeout=15_000)
            assert await page.locator("#live").count() == 0
            asked = len(fetches)
            await page.wait_for_timeout(4_000)  # longer than the update period: nothing is fetched any more
            assert len(fetches) == asked and len(loads) == 1  # updated in place, never reloaded
            assert errors == []  # no script error, nothing the CSP refused
        finally:
            await browser.close()
