"""The run on its status page, end to end (issue 16, item 6): a real run through omoi's web process and
worker, the real Claude Code CLI against the Anthropic stand-in (an agent that writes markup into its
messages), git behind the GitHub stand-in; a person follows the `omoi / implement` check run's link in
a headless browser and watches the tasks change state without reloading.
"""
from __future__ import annotations

import re
import time
import urllib.request
from html import unescape

from sqlalchemy import select

from app.db.models import TaskTranscript
from app.db.session import session_scope
from tests.support.agents import Sessions, wait_step, write_step
from tests.support.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, browser_available
from tests.support.conversation import comment, implement_check
from tests.support.plans import BYE_AFTER_HELLO, CODE, HELLO
from tests.support.services import require_service
from tests.support.waits import tasks_in_db, wait_for, wait_run
from tests.support.world import approve_plan

HOSTILE = "<script>alert('agent')</script>"
WRONG_BYE = "def bye():\n    return 'Ciao'\n"


def test_check_run_links_to_a_page_that_follows_the_run(approved_run, fake_github, fake_anthropic, tmp_path):
    require_service(browser_available(), "playwright with Debian's chromium")
    from playwright.sync_api import expect, sync_playwright

    procs = approved_run(extra_env={"OMOI_SANDBOX_DIR": str(tmp_path / "sandboxes")})
    # T1 echoes markup, then works for a while (long enough to be seen running), then writes hello.py;
    # T2 waits for T1, writes a wrong bye.py first (its verification fails) and a right one when retried.
    Sessions(fake_anthropic, {
        "T1": [[{"tool": "Bash", "command": f'echo "{HOSTILE}"'}, wait_step(6), write_step("hello.py", CODE["hello.py"])]],
        "T2": [[write_step("bye.py", WRONG_BYE)], [write_step("bye.py", CODE["bye.py"])]],
    })
    approve_plan(procs, [HELLO, BYE_AFTER_HELLO])
    comment(procs, "/omoi implement")
    check = wait_for(lambda: (implement_check(procs) or {}).get("details_url", "").startswith(procs.url) and
                     implement_check(procs), timeout=60, message="the implement check run links to the page")
    link = check["details_url"]
    assert re.fullmatch(re.escape(procs.url) + r"/status/octo/greeter/5\?exp=\d+&sig=[0-9a-f]{64}#run", link)

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            loads, fetches, errors = [], [], []
            page.on("load", lambda: loads.append(time.monotonic()))
            page.on("request", lambda r: fetches.append(r.url) if r.resource_type == "fetch" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            assert page.goto(link).status == 200
            # one visit, no reload by hand from here on: the page follows the run
            expect(page.locator("#node-T1 .node-state")).to_have_text("running", timeout=30_000)
            expect(page.locator("#node-T2 .node-state")).to_have_text("pending")
            expect(page.locator("#transcript-T1")).to_contain_text(HOSTILE, timeout=15_000)  # as text
            assert page.locator("main script").count() == 0  # the agent's markup is text, not elements
            page.screenshot(path=str(ARTIFACTS / "run-e2e-running.png"), full_page=True)
            expect(page.locator("#node-T1 .node-state")).to_have_text("done", timeout=60_000)
            expect(page.locator("#node-T2 .node-state")).to_have_text("done", timeout=60_000)
            expect(page.locator("#run-state")).to_have_text("succeeded", timeout=30_000)
            assert page.locator("#live").count() == 0
            page.screenshot(path=str(ARTIFACTS / "run-e2e-done.png"), full_page=True)
            # the page updated itself in place while the run went on (a fetch every 3 s; the run takes
            # longer than two of them, however fast omoi gets: T1 alone works for 6 s)
            assert len(fetches) >= 2 and len(loads) == 1
            asked = len(fetches)
            page.wait_for_timeout(4_000)  # more than the update period: a finished run's page stays still
            assert len(fetches) == asked and errors == []
        finally:
            browser.close()

    wait_run(procs, "succeeded")
    db = tasks_in_db(procs)
    with urllib.request.urlopen(implement_check(procs)["details_url"], timeout=10) as resp:
        html = resp.read().decode()
    text = " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())
    for tid in ("T1", "T2"):  # each task's state, attempts, cost and commit, as the database has them
        row = db[tid]
        assert f"{tid} Write {'hello' if tid == 'T1' else 'bye'}.py done {row.attempts} {row.cost_usd:.4f}" in text
        assert row.commit_sha and row.commit_sha[:7] in text
    assert "after T1" in text
    transcript = html[html.index('id="transcript-T1"'):]
    transcript = transcript[:transcript.index("</ol>")]
    assert "tool call</span> <code>Bash</code>" in transcript and "tool call</span> <code>Write</code>" in transcript
    assert "&lt;script&gt;alert(&#39;agent&#39;)&lt;/script&gt;" in transcript and "<script" not in html
    # T2's two attempts, each with its own transcript (the first kept after the retry reset the task row)
    assert db["T2"].attempts == 2
    assert "Attempt 1" in text and "Attempt 2 (the latest)" in text
    first, latest = (html[html.index(f'id="{box}"'):] for box in ("transcript-T2-1", "transcript-T2"))
    assert "Ciao" in first[:first.index("</ol>")] and "Ciao" not in latest[:latest.index("</ol>")]
    with session_scope(procs.database_url) as s:
        kept = {(t.task_id, t.attempt): t.total for t in s.scalars(select(TaskTranscript))}
    assert set(kept) == {("T1", 1), ("T2", 1), ("T2", 2)} and all(kept.values())
    assert fake_github.violations == []
