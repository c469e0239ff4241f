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
from app.db.models import Installation, LLMCall, Spec, SpecStage
from app.db.session import session_scope
from app.web.links import (
    LINK_TTL_SECONDS,
    installation_status_url,
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
